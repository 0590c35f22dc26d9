"""Tests of the embedded procedural defect data (defectspectrum.data.synth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectspectrum.data.synth import (
    DEFAULT_MATERIALS,
    MATERIALS,
    render_sample,
    render_surface,
    write_ds_folder,
    write_mvtec_layout,
    write_release_layout,
)

DEFECT_NAMES = {"scratch", "crack", "spot", "hole", "stain", "streak", "patch", "inclusion"}


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_materials_catalogue() -> None:
    assert len(MATERIALS) >= 4 and set(DEFAULT_MATERIALS) < set(MATERIALS)
    for material, classes in MATERIALS.items():
        assert 3 <= len(classes) <= 5, material
        assert set(classes) <= DEFECT_NAMES, material
        assert len(set(classes)) == len(classes), material


@pytest.mark.parametrize("material", sorted(MATERIALS))
def test_same_seed_same_arrays_different_seed_different(material: str) -> None:
    a_img, a_mask = render_sample(material, (64, 80), rng(7))
    b_img, b_mask = render_sample(material, (64, 80), rng(7))
    c_img, _ = render_sample(material, (64, 80), rng(8))
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert not np.array_equal(a_img, c_img)
    surface = render_surface(material, (64, 80), rng(3))
    np.testing.assert_array_equal(surface, render_surface(material, (64, 80), rng(3)))
    assert not np.array_equal(surface, render_surface(material, (64, 80), rng(4)))


@pytest.mark.parametrize("size", [(64, 64), (48, 96), (120, 72), (33, 257)])
def test_shapes_and_dtypes(size: tuple[int, int]) -> None:
    for material in MATERIALS:
        surface = render_surface(material, size, rng(0))
        img, mask = render_sample(material, size, rng(0))
        assert surface.shape == img.shape == (*size, 3)
        assert mask.shape == size
        assert surface.dtype == img.dtype == mask.dtype == np.uint8


@pytest.mark.parametrize("material", sorted(MATERIALS))
@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
def test_every_requested_class_present_and_no_other(material: str, size: tuple[int, int]) -> None:
    classes = MATERIALS[material]
    for seed in range(4):
        for defects in ([classes[seed % len(classes)]], list(classes), [classes[0], classes[-1], classes[0]]):
            _, mask = render_sample(material, size, rng(seed), defects=defects)
            wanted = {classes.index(d) + 1 for d in defects}
            assert set(np.unique(mask)) - {0} == wanted, (seed, defects)
            for index in wanted:
                assert np.count_nonzero(mask == index) >= 20, (seed, defects, index)


def test_random_defects_are_of_the_material() -> None:
    for material, classes in MATERIALS.items():
        for seed in range(5):
            _, mask = render_sample(material, (64, 64), rng(seed), max_defects=2)
            present = set(np.unique(mask)) - {0}
            assert 1 <= len(present) <= 2
            assert present <= set(range(1, len(classes) + 1))


def test_defect_free_gives_empty_mask_and_the_surface() -> None:
    for material in MATERIALS:
        img, mask = render_sample(material, (64, 72), rng(5), defects=[])
        assert not mask.any()
        np.testing.assert_array_equal(img, render_surface(material, (64, 72), rng(5)))


@pytest.mark.parametrize("material", sorted(MATERIALS))
def test_mask_marks_the_changed_pixels(material: str) -> None:
    for seed in range(3):
        img, mask = render_sample(material, (128, 128), rng(seed), defects=MATERIALS[material])
        clean = render_surface(material, (128, 128), rng(seed))
        diff = np.abs(img.astype(np.int16) - clean.astype(np.int16)).max(axis=2)
        inside, outside = diff[mask > 0], diff[mask == 0]
        assert inside.mean() > 10 * max(outside.mean(), 0.1)
        assert np.median(inside) >= 10  # labelled pixels are visibly changed
        # outside the mask only a thin anti-aliased fringe changes
        assert np.count_nonzero(outside) < 0.6 * inside.size


def test_unknown_material_or_class_is_rejected() -> None:
    with pytest.raises(Exception, match="unknown material"):
        render_sample("cheese", (64, 64), rng(0))
    with pytest.raises(Exception, match="no defect class"):
        render_sample("fabric", (64, 64), rng(0), defects=["crack"])


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_mvtec_layout_tree(tmp_path: Path) -> None:
    dst = tmp_path / "mvtec"
    out = write_mvtec_layout(dst, materials=["metal", "fabric"], n_defective_per_type=2, n_good=1,
                             n_train_good=3, size=(48, 64), seed=1)
    assert out == dst
    assert sorted(p.name for p in dst.iterdir()) == ["fabric", "metal"]
    for material in ("metal", "fabric"):
        root = dst / material
        assert sorted(p.name for p in (root / "train" / "good").iterdir()) == ["000.png", "001.png", "002.png"]
        assert sorted(p.name for p in (root / "test" / "good").iterdir()) == ["000.png"]
        folders = [*MATERIALS[material], "combined"]
        assert sorted(p.name for p in (root / "test").iterdir()) == sorted(["good", *folders])
        assert sorted(p.name for p in (root / "ground_truth").iterdir()) == sorted(folders)
        for folder in folders:
            assert sorted(p.name for p in (root / "test" / folder).iterdir()) == ["000.png", "001.png"]
            for i in range(2):
                with Image.open(root / "test" / folder / f"{i:03d}.png") as im:
                    assert im.mode == "RGB" and im.size == (64, 48)
                with Image.open(root / "ground_truth" / folder / f"{i:03d}_mask.png") as m:
                    assert m.mode == "L" and m.size == (64, 48)
                    values = set(np.unique(np.asarray(m)))
                assert values == {0, 255}


def test_write_mvtec_layout_is_deterministic_and_order_independent(tmp_path: Path) -> None:
    kwargs = {"n_defective_per_type": 1, "n_good": 1, "n_train_good": 1, "size": (40, 40), "seed": 3}
    a = _tree(write_mvtec_layout(tmp_path / "a", materials=["wood", "tile"], **kwargs))
    b = _tree(write_mvtec_layout(tmp_path / "b", materials=["wood", "tile"], **kwargs))
    c = _tree(write_mvtec_layout(tmp_path / "c", materials=["tile"], **kwargs))
    assert a == b
    assert c == {k: v for k, v in a.items() if k.startswith("tile/")}
    d = _tree(write_mvtec_layout(tmp_path / "d", materials=["tile"], **{**kwargs, "seed": 4}))
    assert d["tile/train/good/000.png"] != c["tile/train/good/000.png"]


def test_write_mvtec_layout_refuses_non_empty_dst(tmp_path: Path) -> None:
    dst = tmp_path / "busy"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        write_mvtec_layout(dst, materials=["metal"], n_defective_per_type=1, n_good=1, n_train_good=1,
                           size=(32, 32))
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_mvtec_layout(empty, materials=["metal"], n_defective_per_type=0, n_good=1, n_train_good=0, size=(32, 32))
    assert (empty / "metal" / "test" / "good" / "000.png").is_file()


def test_release_layout_converts_back_with_multi_class_masks(tmp_path):
    from defectspectrum.data.convert import convert

    src = write_release_layout(tmp_path / "src", materials=["tile", "wood"], n_defective_per_type=2, n_good=1,
                               size=(48, 64), seed=3)
    folder = convert(src, tmp_path / "ds")  # --from auto: ds-release, class maps from classes.json
    assert folder.meta["source"]["format"] == "ds-release"
    assert {name: cm.defects for name, cm in folder.objects.items()} == {m: MATERIALS[m] for m in ("tile", "wood")}
    direct = write_ds_folder(tmp_path / "direct", materials=["tile", "wood"], n_defective_per_type=2, n_good=1,
                             size=(48, 64), seed=3)
    assert sorted(s.id for s in folder) == sorted(s.id for s in direct)
    for sample in direct:
        assert np.array_equal(folder.load_mask(folder[sample.id]), direct.load_mask(sample))
    combined = [folder.load_mask(s) for s in folder if s.defect_type == "combined"]
    assert combined and all(len(np.unique(m)) >= 3 for m in combined)  # background + 2-3 classes


def test_steel_is_asked_for_by_name_and_its_streaks_run_off_the_edge(tmp_path: Path) -> None:
    folder = write_ds_folder(tmp_path / "default", n_defective_per_type=1, n_good=0, size=(48, 48), seed=0)
    assert set(folder.objects) == set(DEFAULT_MATERIALS) and "steel" not in folder.objects
    touching = 0
    for seed in range(12):
        img, mask = render_sample("steel", (96, 96), rng(seed), defects=["streak"])
        streak = mask == MATERIALS["steel"].index("streak") + 1
        assert streak.any() and img.dtype == np.uint8
        rows, cols = np.nonzero(streak)
        touching += rows.min() == 0 or cols.min() == 0 or rows.max() == 95 or cols.max() == 95
        grey = img.astype(int)
        assert np.abs(grey[..., 0] - grey[..., 1]).mean() < 8, "steel is seen in grey"
    assert touching == 12, "every streak runs off at least one edge of the strip"
