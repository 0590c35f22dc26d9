"""The generic `folder` reader: every supported tree, mask kind and error, on tiny fixture trees."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import detect_format, open_reader
from defectspectrum.data.formats.folder import FolderReader
from defectspectrum.errors import FormatError, InputError

H, W = 6, 8


def _image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _mask(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint8)).save(path)
    return path


def _blob(value: int, row: int = 1) -> np.ndarray:
    """A mask with a 2x3 block of `value` at `row`."""
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[row:row + 2, 2:5] = value
    return mask


def _convert(src: Path, tmp_path: Path, **options: object) -> DSFolder:
    return convert(src, tmp_path / "ds", "folder", **options)


def _masks(folder: DSFolder) -> dict[str, np.ndarray]:
    return {s.name: folder.load_mask(s) for s in folder}


# -- trees -------------------------------------------------------------------------------------------------


def test_images_and_masks_folders_pair_by_stem(tmp_path: Path) -> None:
    src = tmp_path / "My Parts"
    _image(src / "images" / "a.png")
    _image(src / "images" / "b.jpg", 1)
    _image(src / "images" / "c.png", 2)  # no mask: defect-free
    _mask(src / "masks" / "a.png", _blob(255))
    _mask(src / "masks" / "b.png", _blob(255, row=3))
    folder = _convert(src, tmp_path)
    assert list(folder.objects) == ["My_Parts"]  # root folder name, made safe
    assert folder.objects["My_Parts"].names == ("background", "defect")
    masks = _masks(folder)
    np.testing.assert_array_equal(masks["a"], _blob(1))
    np.testing.assert_array_equal(masks["b"], _blob(1, row=3))
    assert not masks["c"].any()
    types = {s.name: s.defect_type for s in folder}
    assert types == {"a": "defect", "b": "defect", "c": "good"}
    assert folder["My_Parts/b"].image.endswith(".jpg")


@pytest.mark.parametrize(("images", "masks", "suffix"), [
    ("img", "mask", "_mask"), ("imgs", "labels", "_label"), ("Images", "GT", "_gt"), ("image", "annotations", "")])
def test_folder_name_variants_and_suffix_auto_detection(tmp_path: Path, images: str, masks: str, suffix: str) -> None:
    src = tmp_path / "src"
    for stem in ("p1", "p2"):
        _image(src / images / f"{stem}.png")
        _mask(src / masks / f"{stem}{suffix}.png", _blob(255))
    folder = _convert(src, tmp_path)
    assert len(folder) == 2 and all(not s.is_good for s in folder)
    assert all(m.max() == 1 for m in _masks(folder).values())


def test_explicit_mask_suffix_overrides_detection(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    _mask(src / "masks" / "a-m.png", _blob(255))
    with pytest.raises(FormatError, match=r"masks: no mask name matches an image .*--mask-suffix"):
        _convert(src, tmp_path)
    folder = _convert(src, tmp_path, mask_suffix="-m")
    np.testing.assert_array_equal(_masks(folder)["a"], _blob(1))


def test_images_and_masks_side_by_side(tmp_path: Path) -> None:
    src = tmp_path / "flat"
    _image(src / "x.png")
    _mask(src / "x_mask.png", _blob(255))
    _image(src / "y.bmp", 1)
    _mask(src / "y_mask.png", _blob(1))  # 0/1 binary
    _image(src / "z.png", 2)  # defect-free
    folder = _convert(src, tmp_path)
    assert sorted(s.name for s in folder) == ["x", "y", "z"]
    masks = _masks(folder)
    np.testing.assert_array_equal(masks["x"], _blob(1))
    np.testing.assert_array_equal(masks["y"], _blob(1))
    assert folder["flat/z"].is_good
    # the same with the suffix given; an empty suffix cannot work side by side
    assert len(convert(src, tmp_path / "ds2", "folder", mask_suffix="_mask")) == 3
    with pytest.raises(InputError, match="must not be empty"):
        convert(src, tmp_path / "ds3", "folder", mask_suffix="")


def test_folder_per_class_with_images_and_masks_inside(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for seed, cls in enumerate(("scratch", "dent")):
        _image(src / cls / "images" / "001.png", seed)
        _mask(src / cls / "masks" / "001.png", _blob(255))
    _image(src / "scratch" / "images" / "002.png", 5)  # no mask
    folder = _convert(src, tmp_path)
    class_map = folder.objects["src"]
    assert class_map.names == ("background", "dent", "scratch")  # sorted folder names
    masks = _masks(folder)
    np.testing.assert_array_equal(masks["dent_001"], _blob(class_map.index("dent")))
    np.testing.assert_array_equal(masks["scratch_001"], _blob(class_map.index("scratch")))
    assert {s.name: s.defect_type for s in folder} == {"dent_001": "dent", "scratch_001": "scratch",
                                                       "scratch_002": "good"}


def test_folder_per_class_inside_images_and_masks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for seed, cls in enumerate(("crack", "hole")):
        _image(src / "images" / cls / "a.png", seed)
        _mask(src / "masks" / cls / "a_mask.png", _blob(255))
    folder = _convert(src, tmp_path, classes=["hole", "crack"])  # --classes sets the order
    assert folder.objects["src"].names == ("background", "hole", "crack")
    masks = _masks(folder)
    np.testing.assert_array_equal(masks["hole_a"], _blob(1))
    np.testing.assert_array_equal(masks["crack_a"], _blob(2))


def test_class_folder_missing_from_classes_option_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "crack" / "a.png")
    with pytest.raises(InputError, match=r"class folder\(s\) crack not in --classes"):
        _convert(src, tmp_path, classes=["hole"])


def test_split_folders_set_the_split(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "train" / "images" / "a.png")
    _mask(src / "train" / "masks" / "a.png", _blob(255))
    _image(src / "valid" / "images" / "a.png", 1)  # same stem in another split: names stay apart
    _image(src / "Test" / "b.png", 2)
    _mask(src / "Test" / "b_label.png", _blob(255))
    folder = _convert(src, tmp_path)
    splits = {s.name: (s.split, s.defect_type) for s in folder}
    assert splits == {"train_a": ("train", "defect"), "valid_a": ("val", "good"), "Test_b": ("test", "defect")}
    assert folder.objects["src"].names == ("background", "defect")


def test_split_then_class_folders(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "train" / "scratch" / "images" / "a.png")
    _mask(src / "train" / "scratch" / "masks" / "a.png", _blob(255))
    _image(src / "val" / "dent" / "a.png", 1)
    _mask(src / "val" / "dent" / "a_mask.png", _blob(255))
    folder = _convert(src, tmp_path)
    assert folder.objects["src"].names == ("background", "dent", "scratch")
    assert {s.name: (s.split, s.defect_type) for s in folder} == {
        "train_scratch_a": ("train", "scratch"), "val_dent_a": ("val", "dent")}
    masks = _masks(folder)
    np.testing.assert_array_equal(masks["train_scratch_a"], _blob(2))
    np.testing.assert_array_equal(masks["val_dent_a"], _blob(1))


def test_split_folders_inside_images_and_masks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "train" / "a.png")
    _mask(src / "masks" / "train" / "a.png", _blob(255))
    _image(src / "images" / "test" / "b.png", 1)
    _mask(src / "masks" / "test" / "b.png", _blob(255, row=2))
    folder = _convert(src, tmp_path, object_name="part 7")
    assert list(folder.objects) == ["part_7"]
    assert {s.name: s.split for s in folder} == {"train_a": "train", "test_b": "test"}
    np.testing.assert_array_equal(_masks(folder)["test_b"], _blob(1, row=2))


# -- mask kinds --------------------------------------------------------------------------------------------


def test_index_masks_with_classes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    mixed = _blob(1)
    mixed[4:6, 0:2] = 3
    _mask(src / "masks" / "a.png", mixed)
    _image(src / "images" / "b.png", 1)
    _mask(src / "masks" / "b.png", _blob(1))  # {0, 1} with several classes: index 1
    folder = _convert(src, tmp_path, classes=["scratch", "dent", "stain"])
    assert folder.objects["src"].names == ("background", "scratch", "dent", "stain")
    masks = _masks(folder)
    np.testing.assert_array_equal(masks["a"], mixed)
    np.testing.assert_array_equal(masks["b"], _blob(1))
    assert all(s.defect_type is None for s in folder)  # several classes, no folder: unknown per image


def test_index_outside_classes_names_the_mask_and_fix(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    mask = _mask(src / "masks" / "a.png", _blob(3))
    with pytest.raises(FormatError, match=rf"{re.escape(str(mask))}: mask index 3 is outside .* pass --classes"):
        _convert(src, tmp_path, classes=["scratch", "dent"])
    assert not (tmp_path / "ds").exists()


def test_binary_masks_with_several_classes_and_no_class_folder_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    mask = _mask(src / "masks" / "a.png", _blob(255))
    with pytest.raises(FormatError, match=rf"{re.escape(str(mask))}: a binary 0/255 mask, but there are 2 classes"):
        _convert(src, tmp_path, classes=["scratch", "dent"])


def test_anti_aliased_single_class_mask_is_thresholded_at_128(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    soft = _blob(255)
    soft[1, 2], soft[2, 4] = 127, 128  # edge pixels: 127 -> background, 128 -> defect
    _mask(src / "masks" / "a.png", soft)
    expected = _blob(1)
    expected[1, 2] = 0
    np.testing.assert_array_equal(_masks(_convert(src, tmp_path))["a"], expected)


def test_small_values_with_one_class_are_indices_not_thresholded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    _mask(src / "masks" / "a.png", _blob(2))  # index 2 with one class: an error, not an empty mask
    with pytest.raises(FormatError, match="mask index 2 is outside"):
        _convert(src, tmp_path)


def test_grey_mask_stored_as_rgb_is_accepted_and_colour_needs_a_palette(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    (src / "masks").mkdir()
    Image.fromarray(np.stack([_blob(255)] * 3, axis=-1)).save(src / "masks" / "a.png")
    np.testing.assert_array_equal(_masks(_convert(src, tmp_path))["a"], _blob(1))
    colour = np.zeros((H, W, 3), dtype=np.uint8)
    colour[1:3, 2:5] = (255, 0, 0)
    Image.fromarray(colour).save(src / "masks" / "a.png")
    with pytest.raises(FormatError, match=r"a\.png: a colour mask; pass --palette"):
        _convert(src, tmp_path / "again")


def _colour_tree(src: Path) -> np.ndarray:
    """One image with a colour mask: red scratch block, green dent block, black background."""
    _image(src / "images" / "a.png")
    colour = np.zeros((H, W, 3), dtype=np.uint8)
    colour[0:2, 0:3] = (255, 0, 0)
    colour[4:6, 5:8] = (0, 255, 0)
    (src / "masks").mkdir()
    Image.fromarray(colour).save(src / "masks" / "a.png")
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[0:2, 0:3] = 1
    expected[4:6, 5:8] = 2
    return expected


def test_palette_json_colour_masks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    expected = _colour_tree(src)
    palette = tmp_path / "palette.json"
    palette.write_text('{"scratch": [255, 0, 0], "dent": [0, 255, 0]}')
    folder = _convert(src, tmp_path, palette=palette)
    assert folder.objects["src"].names == ("background", "scratch", "dent")
    np.testing.assert_array_equal(_masks(folder)["a"], expected)


def test_palette_yaml_with_classes_order_and_background_entry(tmp_path: Path) -> None:
    src = tmp_path / "src"
    expected = _colour_tree(src)
    palette = tmp_path / "palette.yaml"
    palette.write_text("background: [0, 0, 0]\nscratch: [255, 0, 0]\ndent: [0, 255, 0]\n")
    folder = convert(src, tmp_path / "ds", "folder", workers=2, palette=palette, classes=["dent", "scratch"])
    assert folder.objects["src"].names == ("background", "dent", "scratch")
    swapped = np.choose(expected, [0, 2, 1]).astype(np.uint8)
    np.testing.assert_array_equal(_masks(folder)["a"], swapped)


def test_palette_mode_png_is_read_as_colours(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    indices = _blob(1)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    (src / "masks").mkdir()
    image.save(src / "masks" / "a.png")
    palette = tmp_path / "p.json"
    palette.write_text('{"stain": [10, 20, 30]}')
    np.testing.assert_array_equal(_masks(_convert(src, tmp_path, palette=palette))["a"], _blob(1))


def test_unknown_colour_names_the_mask_and_colour(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _colour_tree(src)
    palette = tmp_path / "palette.json"
    palette.write_text('{"scratch": [255, 0, 0]}')
    mask = src / "masks" / "a.png"
    with pytest.raises(FormatError, match=rf"{re.escape(str(mask))}: colour \[0, 255, 0\] is not in the palette"):
        _convert(src, tmp_path, palette=palette)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(("text", "match"), [
    ('{"scratch": [255, 0]}', r"class 'scratch' needs a colour \[r, g, b\]"),
    ('{"scratch": [255, 0, 0], "dent": [255, 0, 0]}', "given to two classes"),
    ("[1, 2, 3]", "a palette maps class names"),
])
def test_bad_palette_contents(tmp_path: Path, text: str, match: str) -> None:
    _image(tmp_path / "src" / "a.png")
    palette = tmp_path / "palette.json"
    palette.write_text(text)
    with pytest.raises(InputError, match=match):
        FolderReader(tmp_path / "src", palette=palette)


def test_palette_class_not_in_classes(tmp_path: Path) -> None:
    _image(tmp_path / "src" / "a.png")
    palette = tmp_path / "palette.json"
    palette.write_text('{"scratch": [255, 0, 0]}')
    with pytest.raises(InputError, match=r"palette class\(es\) scratch not among the classes dent"):
        FolderReader(tmp_path / "src", palette=palette, classes=["dent"])


def test_palette_yaml_syntax_error_is_one_cli_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _colour_tree(src)
    palette = tmp_path / "palette.yaml"
    palette.write_text("scratch: [255, 0, 0]\ndent: [0, 255\n")
    result = CliRunner().invoke(app, ["data", "convert", "--from", "folder", "--palette", str(palette),
                                      str(src), str(tmp_path / "ds")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and str(palette) in lines[0]
    assert "invalid YAML at line" in lines[0] and "fix the file" in lines[0]
    assert not (tmp_path / "ds").exists()


def test_palette_json_syntax_error_names_line(tmp_path: Path) -> None:
    _image(tmp_path / "src" / "a.png")
    palette = tmp_path / "palette.json"
    palette.write_text('{\n  "scratch": [255, 0, 0],\n}\n')
    with pytest.raises(InputError, match=rf"{re.escape(str(palette))}: invalid JSON at line 3"):
        FolderReader(tmp_path / "src", palette=palette)


# -- mismatched trees and detection ---------------------------------------------------------------------------


def test_mask_without_image_is_a_format_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    _mask(src / "masks" / "a.png", _blob(255))
    orphan = _mask(src / "masks" / "zz.png", _blob(255))
    with pytest.raises(FormatError, match=rf"{re.escape(str(orphan))}: mask without an image named zz\.\*"):
        _convert(src, tmp_path)


def test_two_masks_for_one_image_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    _mask(src / "masks" / "a.png", _blob(255))
    _mask(src / "masks" / "a.bmp", _blob(255))
    with pytest.raises(FormatError, match="two masks named a"):
        _convert(src, tmp_path)


def test_no_images_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "src" / "images").mkdir(parents=True)
    (tmp_path / "src" / "notes.txt").write_text("nothing here")
    with pytest.raises(FormatError, match=r"src: no images found"):
        FolderReader(tmp_path / "src")
    assert not FolderReader.detect(tmp_path / "src")


def test_detect_finds_nested_images_and_auto_picks_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "train" / "images" / "a.png")
    assert FolderReader.detect(src)
    assert detect_format(src) == "folder"
    deep = tmp_path / "deep"
    _image(deep / "a" / "b" / "c" / "d" / "x.png")
    assert not FolderReader.detect(deep)  # deeper than the tree variants reach


def test_reader_is_picklable_with_its_palette(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _colour_tree(src)
    palette = tmp_path / "palette.json"
    palette.write_text('{"scratch": [255, 0, 0], "dent": [0, 255, 0]}')
    reader = open_reader("folder", src, palette=palette)
    clone = pickle.loads(pickle.dumps(reader))
    item = next(iter(clone.samples()))
    np.testing.assert_array_equal(clone.load_mask(item, (H, W)), reader.load_mask(item, (H, W)))
