"""`gen sample --onto`: defects generated into given good images; pixels away from the defect stay
the source's, the written mask is the placement's, errors in the masks are one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seg"))

from seg_helpers import split_synth  # noqa: E402

from cli_helpers import invoke, one_line_error  # noqa: E402
from defectspectrum.data.classes import ClassMap  # noqa: E402
from defectspectrum.data.dsfolder import DSFolder  # noqa: E402
from defectspectrum.data.validate import validate  # noqa: E402
from defectspectrum.errors import InputError  # noqa: E402
from defectspectrum.gen.onto import (  # noqa: E402
    MaskPlacements,
    RandomPlacements,
    blend_weights,
    paste,
    square_window,
)
from defectspectrum.gen.sample import load_generator, regenerate, write_samples  # noqa: E402
from defectspectrum.gen.train import GenConfig, train_generator  # noqa: E402

GOOD_SHAPE = (52, 70)  # not square, larger than the training images (40 px): windows of the training scale


@pytest.fixture(scope="module")
def setup(module_tmp) -> tuple[Path, Path, Path]:
    root = module_tmp("onto")
    ds = split_synth(root / "ds", size=40, per_type=3, k=2).root
    train_generator(GenConfig(data=str(ds), object="metal", preset="small", width=8, layers=1, size=16, steps=3,
                              batch_size=2, checkpoint_every=3, ema_decay=0.5), root / "run")
    goods, masks = root / "good", root / "where"
    goods.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        image = rng.integers(0, 256, (*GOOD_SHAPE, 3), dtype=np.uint8)
        Image.fromarray(image).save(goods / f"part{i}.png")
        mask = np.zeros(GOOD_SHAPE, np.uint8)
        mask[20 + i:28 + i, 30 + 3 * i:41 + 3 * i] = 1 + i % 2
        Image.fromarray(mask).save(masks / f"part{i}.png")
    return ds, root / "run", root


def far_from(mask: np.ndarray, blend: int) -> np.ndarray:
    """Pixels more than `blend` px (chessboard) from every defect pixel."""
    import cv2

    grown = cv2.dilate((mask > 0).astype(np.uint8), np.ones((2 * blend + 3, 2 * blend + 3), np.uint8))
    return grown == 0


def test_blend_weights_are_one_on_the_defect_and_exactly_zero_beyond_the_band() -> None:
    mask = np.zeros((30, 30), np.uint8)
    mask[10:14, 10:14] = 2
    weights = blend_weights(mask, 3)
    assert (weights[mask > 0] == 1).all()
    assert (weights[far_from(mask, 3)] == 0).all()
    assert 0 < weights[12, 15] < 1 and weights[12, 15] > weights[12, 16]  # fading with distance
    assert (blend_weights(mask, 0) == (mask > 0)).all()


def test_the_window_holds_the_defect_and_stays_inside_the_image() -> None:
    mask = np.zeros((50, 80), np.uint8)
    mask[2:6, 70:78] = 1
    top, left = square_window(mask, 40, "m.png")
    assert 0 <= top <= 10 and 0 <= left <= 40 and top <= 2 and top + 40 >= 6 and left <= 70 and left + 40 >= 78
    mask[40:48, 1:3] = 1  # a second region far away: the two no longer fit one window
    with pytest.raises(InputError, match="more than the 40 px window"):
        square_window(mask, 40, "m.png")
    with pytest.raises(InputError, match="holds no defect"):
        square_window(np.zeros((50, 80), np.uint8), 40, "m.png")


def test_paste_changes_nothing_where_the_weight_is_zero() -> None:
    rng = np.random.default_rng(1)
    source = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    weights = np.zeros((20, 30), np.float32)
    weights[5:8, 12:16] = 1.0
    weights[4, 12:16] = 0.5
    out = paste(source, np.full((10, 10, 3), 7, np.uint8), 3, 10, weights)
    assert (out[5:8, 12:16] == 7).all()
    untouched = weights == 0
    assert np.array_equal(out[untouched], source[untouched])
    assert np.array_equal(out[4, 12:16], np.rint((source[4, 12:16].astype(float) + 7) / 2))


def test_defects_go_where_the_masks_say_and_the_rest_is_untouched(setup, tmp_path: Path) -> None:
    _, run, root = setup
    generator = load_generator(run)
    placements = MaskPlacements(root / "good", root / "where", ClassMap(generator.classes))
    folder, dropped = write_samples(generator, generator, 0, len(placements), tmp_path / "onto", steps=6, batch=2,
                                    placements=placements, blend=2)
    assert not dropped and len(folder) == 3 and validate(DSFolder.open(tmp_path / "onto")).ok
    for sample in folder:
        recipe = json.loads(sample.source)
        source = np.asarray(Image.open(recipe["onto"]).convert("RGB"))
        given = np.asarray(Image.open(recipe["mask"]))
        image, mask = folder.load_image(sample), folder.load_mask(sample)
        assert image.shape == source.shape and np.array_equal(mask, given)
        away = far_from(given, 2)
        assert np.array_equal(image[away], source[away])  # every pixel away from the defect is the source's
        assert (image[given > 0] != source[given > 0]).any()  # the defect itself was generated
        side = recipe["window"][2]
        assert side == 40 and recipe["blend"] == 2  # the training images' short side: their pixel scale
        assert sample.synthetic and sample.caption and recipe["generator"]["onto"] is True
    with pytest.raises(InputError, match="generated onto"):
        regenerate(folder.samples()[0].source)  # a plain redraw would not be this pair


def test_random_placement_takes_the_wanted_class_from_the_training_masks(setup, tmp_path: Path) -> None:
    _, run, root = setup
    generator = load_generator(run)
    goods = sorted((root / "good").glob("*.png"))
    wanted = generator.classes[2]
    placements = RandomPlacements(goods, generator, wanted, 5, seed=4)
    masks = [placements[i].mask for i in range(5)]
    assert all(set(np.unique(m).tolist()) == {0, 2} for m in masks)
    assert [placements[i].image_path for i in range(5)] == [goods[i % 3] for i in range(5)]
    again = RandomPlacements(goods, generator, wanted, 5, seed=4)
    assert all(np.array_equal(again[i].mask, masks[i]) for i in range(5))  # drawn from (seed, index)
    assert not all(np.array_equal(masks[0], m) for m in masks[1:])
    folder, _ = write_samples(generator, generator, 0, 5, tmp_path / "random", steps=4, batch=5,
                              placements=placements)
    for i, sample in enumerate(folder):
        source = np.asarray(Image.open(goods[i % 3]).convert("RGB"))
        away = far_from(masks[i], json.loads(sample.source)["blend"])
        assert np.array_equal(folder.load_image(sample)[away], source[away])
        assert np.array_equal(folder.load_mask(sample), masks[i])
    with pytest.raises(InputError, match="the generator's classes are"):
        RandomPlacements(goods, generator, "rust", 2)


@pytest.mark.parametrize(("change", "message"), [
    ("missing", "no mask named like part2.png"),
    ("size", "mask is 10 x 10 px but part2.png is 70 x 52"),
    ("binary", "for a binary mask pass --class"),
    ("index", "value 9 is not a class index"),
    ("empty", "holds no defect"),
])
def test_mask_mistakes_are_named(setup, tmp_path: Path, change: str, message: str) -> None:
    _, run, root = setup
    masks = tmp_path / "masks"
    masks.mkdir()
    for path in (root / "where").glob("*.png"):
        (masks / path.name).write_bytes(path.read_bytes())
    bad = masks / "part2.png"
    if change == "missing":
        bad.unlink()
    elif change == "size":
        Image.fromarray(np.ones((10, 10), np.uint8)).save(bad)
    else:
        value = {"binary": 255, "index": 9, "empty": 0}[change]
        mask = np.zeros(GOOD_SHAPE, np.uint8)
        mask[5:9, 5:9] = value
        Image.fromarray(mask).save(bad)
    classes = ClassMap(load_generator(run).classes)
    with pytest.raises(InputError, match=message):
        placements = MaskPlacements(root / "good", masks, classes)
        placements[2]


def test_a_binary_mask_with_a_class_places_that_class(setup, tmp_path: Path) -> None:
    _, run, root = setup
    masks = tmp_path / "masks"
    masks.mkdir()
    for path in (root / "where").glob("*.png"):
        Image.fromarray((np.asarray(Image.open(path)) > 0).astype(np.uint8) * 255).save(masks / path.name)
    classes = ClassMap(load_generator(run).classes)
    placement = MaskPlacements(root / "good", masks, classes, classes.defects[1])[0]
    assert set(np.unique(placement.mask).tolist()) == {0, 2}


def test_cli_onto(setup, tmp_path: Path) -> None:
    _, run, root = setup
    result = invoke("gen", "sample", tmp_path / "out", "--large", run, "--small", run, "--switch", "0",
                    "--steps", "4", "--onto", root / "good", "--masks", root / "where")
    assert result.exit_code == 0, result.output
    assert "3 synthetic pairs" in result.stdout  # --num defaults to one per good image
    result = invoke("gen", "sample", tmp_path / "out2", "--large", run, "--switch", "0", "--steps", "4",
                    "--onto", root / "good", "--num", "4")
    assert result.exit_code == 0, result.output
    assert len(DSFolder.open(tmp_path / "out2")) == 4
    one_line_error(["gen", "sample", tmp_path / "x", "--large", run, "--switch", "0", "--masks", root / "where"],
                   "--masks only apply with --onto")
    one_line_error(["gen", "sample", tmp_path / "x", "--large", run, "--switch", "0", "--onto", root / "good",
                    "--min-area", "4"], "--min-area do not apply with --onto")
    one_line_error(["gen", "sample", tmp_path / "x", "--large", run, "--switch", "0", "--onto", root / "good",
                    "--class", "rust"], "--class 'rust'")
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sampling_and_onto_run_on_a_gpu(setup, tmp_path: Path) -> None:
    _, run, root = setup
    generator = load_generator(run, device="cuda")
    assert next(generator.model.parameters()).device.type == "cuda"
    folder, _ = write_samples(generator, generator, 0, 3, tmp_path / "plain", steps=6, keep_empty=True)
    assert len(folder) == 3
    placements = MaskPlacements(root / "good", root / "where", ClassMap(generator.classes))
    onto, _ = write_samples(generator, generator, 0, 3, tmp_path / "onto", steps=6, placements=placements, blend=2)
    for sample in onto:
        recipe = json.loads(sample.source)
        source = np.asarray(Image.open(recipe["onto"]).convert("RGB"))
        away = far_from(np.asarray(Image.open(recipe["mask"])), 2)
        assert np.array_equal(onto.load_image(sample)[away], source[away])
