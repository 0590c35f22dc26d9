"""Drawing (class colours, the blend + outline, shrink) and `data show` (sample selection, files, contact sheet)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.show import CONTACT_SHEET, overlay_file_name, select_samples, write_overlays
from defectspectrum.data.synth import write_ds_folder
from defectspectrum.draw import class_colors, overlay, shrink
from defectspectrum.errors import InputError

OBJECTS = {"bolt": ["bent", "rust", "scratch"], "cloth": ["hole", "stain"]}


def test_class_colors_distinct_stable_background_black():
    colors = class_colors(256)
    assert colors.shape == (256, 3) and colors.dtype == np.uint8
    assert tuple(colors[0]) == (0, 0, 0)
    assert len({tuple(c) for c in colors}) == 256
    np.testing.assert_array_equal(class_colors(6), colors[:6])
    np.testing.assert_array_equal(class_colors(6), class_colors(6))
    # the first colours are clearly apart (not just different by one level)
    first = colors[1:8].astype(int)
    gaps = [np.abs(a - b).sum() for i, a in enumerate(first) for b in first[i + 1:]]
    assert min(gaps) > 60


def _scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[10:20, 10:30] = 1  # a block
    mask[30, 5:60] = 2  # a one-pixel scratch
    return image, mask


def test_overlay_changes_only_masked_and_outline_pixels():
    image, mask = _scene()
    colors = class_colors(3)
    out = overlay(image, mask, colors, alpha=0.45)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    # the block's border is drawn in the full class colour, its inside is blended
    assert tuple(out[10, 15]) == tuple(colors[1])
    assert tuple(out[15, 9]) == tuple(image[15, 9])
    expected = np.clip(0.55 * image[15, 20].astype(float) + 0.45 * colors[1] + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out[15, 20], expected)
    # a hair-thin defect is entirely outline: full colour, so it stays visible
    assert (out[30, 5:60] == colors[2]).all()


def test_overlay_without_outline_only_blends():
    image, mask = _scene()
    colors = class_colors(3)
    out = overlay(image, mask, colors, alpha=1.0, outline=False)
    np.testing.assert_array_equal(out[mask == 1], np.broadcast_to(colors[1], out[mask == 1].shape))
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    assert overlay(image, np.zeros_like(mask), colors).tobytes() == image.tobytes()


def test_overlay_accepts_grey_images():
    image, mask = _scene()
    grey = image[..., 0]
    out = overlay(grey, mask, class_colors(3))
    assert out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out[mask == 0], np.repeat(grey[mask == 0][:, None], 3, axis=1))


def test_overlay_rejects_bad_input():
    image, mask = _scene()
    with pytest.raises(InputError, match="does not match"):
        overlay(image, mask[:10], class_colors(3))
    with pytest.raises(InputError, match="no colour"):
        overlay(image, mask, class_colors(2))


def test_shrink_keeps_thin_regions():
    mask = np.zeros((512, 512), dtype=np.uint8)
    mask[100, 20:500] = 3
    mask[300:400, 300:400] = 1
    image = np.full((512, 512, 3), 128, dtype=np.uint8)
    small_image, small_mask = shrink(image, mask, 64)
    assert small_image.shape == (64, 64, 3) and small_mask.shape == (64, 64)
    assert set(np.unique(small_mask)) == {0, 1, 3}
    assert (small_mask == 3).sum() >= 55  # the scratch still runs across
    assert shrink(image, mask, 1024)[1] is mask


def _folder(root: Path, per_type: int = 2, good: int = 2) -> DSFolder:
    folder = DSFolder.create(root, "toy", OBJECTS)
    rng = np.random.default_rng(1)
    for object_name, classes in OBJECTS.items():
        for index, defect in enumerate(classes, start=1):
            for i in range(per_type):
                image = rng.integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
                mask = np.zeros((32, 40), dtype=np.uint8)
                mask[4 + i: 12 + i, 5:15] = index
                folder.add_sample(object_name, f"{defect}_{i}", image, mask, defect_type=defect)
        for i in range(good):
            image = rng.integers(0, 256, size=(32, 40), dtype=np.uint8)  # grey
            folder.add_sample(object_name, f"good_{i}", image, np.zeros((32, 40), np.uint8), defect_type="good")
    folder.save()
    return DSFolder.open(root)


def test_write_overlays_covers_every_object_and_defect_type(tmp_path):
    folder = _folder(tmp_path / "ds")
    result = write_overlays(folder, tmp_path / "show", limit=5)
    groups = {(s.object, s.defect_type) for s in result.samples}
    assert groups == {(o, d) for o, classes in OBJECTS.items() for d in classes}
    assert len(result.overlays) == 5 and all(p.is_file() for p in result.overlays)
    assert [p.name for p in result.overlays] == [overlay_file_name(s) for s in result.samples]
    assert not any(s.is_good for s in result.samples)
    # each overlay file: the image on the left, its overlay on the right
    sample = result.samples[0]
    drawn = np.asarray(Image.open(result.overlays[0]))
    image = folder.load_image(sample)
    np.testing.assert_array_equal(drawn[:, : image.shape[1]], image)
    assert not np.array_equal(drawn[:, -image.shape[1]:], image)
    sheet = Image.open(result.contact_sheet)
    assert result.contact_sheet == tmp_path / "show" / CONTACT_SHEET
    assert sheet.format == "PNG" and sheet.width > 300 and sheet.height > 200
    assert result.contact_sheet.stat().st_size < 3_000_000


def test_selection_spreads_over_objects_and_puts_defective_first(tmp_path):
    folder = _folder(tmp_path / "ds")
    two = select_samples(folder, 2)
    assert {s.object for s in two} == {"bolt", "cloth"}
    everything = select_samples(folder, 100, include_good=True)
    assert len(everything) == len(folder)
    five = select_samples(folder, 5, include_good=True)
    assert not any(s.is_good for s in five)
    seven = select_samples(folder, 7, include_good=True)
    assert sum(s.is_good for s in seven) == 2 and {s.object for s in seven if s.is_good} == {"bolt", "cloth"}
    only = select_samples(folder, 100, object_name="cloth")
    assert {s.object for s in only} == {"cloth"} and len(only) == 4


def test_write_overlays_refuses_the_ds_root_and_empty_selections(tmp_path):
    folder = _folder(tmp_path / "ds", per_type=1)
    with pytest.raises(InputError, match="DS folder itself"):
        write_overlays(folder, tmp_path / "ds")
    images = sorted((tmp_path / "ds" / "bolt" / "images").iterdir())
    (tmp_path / "ds" / "bolt" / "images" / "show.json").write_text(json.dumps({"overlays": [images[0].name]}))
    with pytest.raises(InputError, match="inside the DS folder"):  # its show.json could name DS files
        write_overlays(folder, tmp_path / "ds" / "bolt" / "images")
    assert images[0].is_file()
    with pytest.raises(InputError, match="unknown object"):
        write_overlays(folder, tmp_path / "show", object_name="nope")
    empty = DSFolder.create(tmp_path / "empty", "e", {"plate": ["dent"]})
    empty.add_sample("plate", "g", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), defect_type="good")
    with pytest.raises(InputError, match="include-good"):
        write_overlays(empty, tmp_path / "show2")
    result = write_overlays(empty, tmp_path / "show2", include_good=True)
    assert len(result.overlays) == 1


def test_a_second_run_replaces_the_first_runs_overlays_only(tmp_path):
    folder = write_ds_folder(tmp_path / "ds", materials=["metal"], n_defective_per_type=2, n_good=1, size=(48, 48))
    out = tmp_path / "show"
    out.mkdir()
    (out / "notes.png").write_bytes(b"mine")
    first = write_overlays(folder, out, limit=6)
    second = write_overlays(folder, out, limit=2)
    assert len(first.overlays) == 6 and len(second.overlays) == 2
    assert sorted(p.name for p in out.glob("*__*.png")) == sorted(p.name for p in second.overlays)
    assert (out / "notes.png").read_bytes() == b"mine"
    assert json.loads((out / "show.json").read_text())["overlays"] == [p.name for p in second.overlays]


def test_files_of_the_users_are_never_replaced(tmp_path):
    folder = _folder(tmp_path / "ds", per_type=1)
    out = tmp_path / "show"
    out.mkdir()
    mine = out / CONTACT_SHEET
    mine.write_bytes(b"my own picture")
    with pytest.raises(InputError, match="exists and was not written by `data show`"):
        write_overlays(folder, out)
    assert mine.read_bytes() == b"my own picture" and sorted(p.name for p in out.iterdir()) == [CONTACT_SHEET]
    mine.unlink()
    first = write_overlays(folder, out, limit=2)
    clash = out / overlay_file_name(next(s for s in folder if s not in first.samples and not s.is_good))
    clash.write_bytes(b"mine too")
    with pytest.raises(InputError, match=clash.name):
        write_overlays(folder, out, limit=24)
    assert clash.read_bytes() == b"mine too" and all(p.is_file() for p in first.overlays)
    again = write_overlays(folder, out, limit=2)  # the run's own files are replaced
    assert [p.name for p in again.overlays] == [p.name for p in first.overlays]
