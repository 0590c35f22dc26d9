"""The `folder` reader on Pascal VOC trees, and its refusals of layouts whose masks cannot be paired
(every one of which used to convert as "all defect-free", exit 0)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.convert import convert, convert_counted
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats.folder import VOC_CLASSES
from defectspectrum.errors import FormatError

H, W = 8, 10
PERSON, AEROPLANE, CAR = (VOC_CLASSES.index(name) + 1 for name in ("person", "aeroplane", "car"))


def _jpeg(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def _png(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint8)).save(path)
    return path


def _voc_mask(path: Path, index: int) -> np.ndarray:
    """A palette PNG like VOC's: a block of class `index` with a 255 (void) border; returns the
    expected DS mask (void read as background)."""
    indices = np.zeros((H, W), dtype=np.uint8)
    if index:
        indices[1:6, 2:8] = VOC_VOID_BORDER
        indices[2:5, 3:7] = index
    else:
        indices[0, :] = VOC_VOID_BORDER  # void only: nothing labelled
    image = Image.fromarray(indices, mode="P")
    palette = [0, 0, 0] + [(37 * i) % 256 for i in range(3, 256 * 3)]
    palette[255 * 3: 256 * 3] = [224, 224, 192]  # VOC's void colour
    image.putpalette(palette)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return np.where(indices == VOC_VOID_BORDER, 0, indices).astype(np.uint8)


VOC_VOID_BORDER = 255
MASKED = {"2007_000001": AEROPLANE, "2007_000002": PERSON, "2007_000003": CAR, "2007_000004": PERSON,
          "2007_000005": 0}


def _voc_tree(root: Path) -> dict[str, np.ndarray]:
    """A VOC2012-like tree: 8 JPEGs, 5 with SegmentationClass masks (one only void), object masks,
    XML annotations and ImageSets lists (train, val, trainval, a mask-less test list, a Main list)."""
    expected = {}
    for seed, stem in enumerate([*MASKED, "2007_000006", "2008_000100", "2008_000101"]):
        _jpeg(root / "JPEGImages" / f"{stem}.jpg", seed)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><object><name>person</name></object></annotation>")
    for stem, index in MASKED.items():
        expected[stem] = _voc_mask(root / "SegmentationClass" / f"{stem}.png", index)
        _voc_mask(root / "SegmentationObject" / f"{stem}.png", 1 if index else 0)  # instance ids: not classes
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2007_000001\n2007_000002\n")
    (lists / "val.txt").write_text("2007_000003\n2007_000004\n\n")
    (lists / "trainval.txt").write_text("2007_000001\n2007_000002\n2007_000003\n2007_000004\n2007_000005\n")
    (lists / "test.txt").write_text("2007_000006\n")  # no masks: unlabelled, skipped
    (root / "ImageSets" / "Main").mkdir()
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000100  1\n2008_000101 -1\n")
    return expected


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["data", "convert", *args])
    return result.exit_code, " ".join(result.output.split())


def _one_line_error(tmp_path: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["data", "convert", *args, str(tmp_path / "out")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert not (tmp_path / "out").exists()
    return lines[0]


# -- Pascal VOC ------------------------------------------------------------------------------------------------


def test_voc_tree_converts_through_the_cli_with_splits_classes_and_skips(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    expected = _voc_tree(root)
    code, output = _cli("--classes", "voc", "--workers", "2", str(root), str(tmp_path / "ds"))
    assert code == 0, output
    # 5 labelled images; the one whose mask is void only has no defect pixel; 3 images without a mask skipped
    assert "5 samples (4 with defects, 1 defect-free) in 1 object(s); skipped 3 unlabelled image(s)" in output
    folder = DSFolder.open(tmp_path / "ds")
    assert folder.meta["source"]["format"] == "folder"  # detected by --from auto
    assert folder.objects["VOC2012"].names == ("background", *VOC_CLASSES)
    assert {s.name: s.split for s in folder} == {"2007_000001": "train", "2007_000002": "train",
                                                 "2007_000003": "val", "2007_000004": "val",
                                                 "2007_000005": None}  # only in trainval: split unknown
    for sample in folder:
        mask = folder.load_mask(sample)
        np.testing.assert_array_equal(mask, expected[sample.name])
        assert VOC_VOID_BORDER not in mask
        # several classes: unknown per image; a labelled image with nothing but void is defect-free, as counted
        assert sample.defect_type == ("good" if sample.name == "2007_000005" else None)


def test_voc_one_level_down_is_not_a_class_folder(tmp_path: Path) -> None:
    expected = _voc_tree(tmp_path / "VOCdevkit" / "VOC2012")
    result = convert_counted(tmp_path / "VOCdevkit", tmp_path / "ds", "folder", classes=["voc"])
    folder = result.open()
    assert list(folder.objects) == ["VOCdevkit"]
    assert folder.objects["VOCdevkit"].names == ("background", *VOC_CLASSES)
    assert (len(folder), result.with_defects, result.skipped) == (5, 4, 3)
    np.testing.assert_array_equal(folder.load_mask(folder["VOCdevkit/VOC2012_2007_000002"]), expected["2007_000002"])


def test_voc_without_lists_skips_images_without_masks(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    _voc_tree(root)
    for path in (root / "ImageSets" / "Segmentation").iterdir():
        path.unlink()
    result = convert_counted(root, tmp_path / "ds", "folder", classes=["voc"])
    assert sorted(s.name for s in result.open()) == sorted(MASKED)
    assert all(s.split is None for s in result.open())
    assert result.skipped == 3


def test_voc_binary_defect_masks_with_void_need_no_classes(tmp_path: Path) -> None:
    """A defect set stored the VOC way: 0/1 masks with a 255 border, one class by default."""
    root = tmp_path / "cracks"
    _jpeg(root / "JPEGImages" / "a.jpg")
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[2:4, 2:4], mask[1, :] = 1, 255
    _png(root / "SegmentationClass" / "a.png", mask)
    folder = convert(root, tmp_path / "ds", "folder")
    assert folder.objects["cracks"].names == ("background", "defect")
    np.testing.assert_array_equal(folder.load_mask(folder["cracks/a"]), np.where(mask == 255, 0, mask))


def test_voc_without_classes_names_the_mask_and_points_at_classes_voc(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    _voc_tree(root)
    line = _one_line_error(tmp_path, str(root))
    assert re.search(r"SegmentationClass/2007_00000\d\.png: mask index \d+ is outside the classes background, defect",
                     line), line
    assert "--classes" in line and "--classes voc" in line


def test_voc_detection_only_tree_is_an_error_not_all_defect_free(tmp_path: Path) -> None:
    """VOC2007's detection download: JPEGImages + Annotations (XML) + ImageSets/Main, no masks."""
    root = tmp_path / "VOC2007"
    _voc_tree(root)
    for folder in ("SegmentationClass", "SegmentationObject"):
        for path in (root / folder).iterdir():
            path.unlink()
        (root / folder).rmdir()
    line = _one_line_error(tmp_path, str(root))
    assert f"{root / 'Annotations'}: holds no mask images (8 other file(s), e.g. 2007_000001.xml)" in line


@pytest.mark.parametrize(("list_name", "text", "match"), [
    ("val.txt", "2007_000003\n2007_000099\n", r"val\.txt: line 2 names '2007_000099', not found in .*JPEGImages"),
    ("train.txt", "2007_000001\n2008_000100\n", r"train\.txt: line 2 lists '2008_000100', which has no mask in "
                                                r".*SegmentationClass; add the mask or remove the line"),
    ("val.txt", "2007_000001\n2007_000004\n", r"val\.txt: '2007_000001' is also in train\.txt \(train\)"),
])
def test_voc_list_errors_name_the_list_and_line(tmp_path: Path, list_name: str, text: str, match: str) -> None:
    root = tmp_path / "VOC2012"
    _voc_tree(root)
    (root / "ImageSets" / "Segmentation" / list_name).write_text(text)
    with pytest.raises(FormatError, match=match):
        convert(root, tmp_path / "ds", "folder", classes=["voc"])
    assert not (tmp_path / "ds").exists()


# -- masks that cannot be paired are errors --------------------------------------------------------------------


def _images(folder: Path, stems: tuple[str, ...] = ("a", "b")) -> None:
    for seed, stem in enumerate(stems):
        _jpeg(folder / f"{stem}.jpg", seed)


def _blob() -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[2:4, 2:5] = 255
    return mask


def test_the_mask_folder_that_pairs_most_images_wins_over_list_order(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _images(src / "images", ("a", "b", "c"))
    _png(src / "labels" / "a.png", _blob())  # 'labels' comes first in the known names, pairs one image
    for stem in ("a", "b", "c"):
        _png(src / "gt" / f"{stem}_gt.png", _blob())  # pairs all three
    result = convert_counted(src, tmp_path / "ds", "folder")
    assert result.with_defects == 3
    assert all(s.defect_type == "defect" for s in result.open())


def test_mask_folder_inside_the_image_folder_is_used(tmp_path: Path) -> None:
    src = tmp_path / "shots"
    _images(src)
    _png(src / "masks" / "a.png", _blob())
    folder = convert(src, tmp_path / "ds", "folder")
    assert {s.name: s.defect_type for s in folder} == {"a": "defect", "b": "good"}
    assert folder.load_mask(folder["shots/a"]).max() == 1


@pytest.mark.parametrize("name", ["gt_masks", "Segmentations", "ground-truth"])
def test_unknown_mask_folder_name_is_an_error_listing_it(tmp_path: Path, name: str) -> None:
    src = tmp_path / "src"
    _images(src / "images")
    _png(src / name / "a.png", _blob())
    _images(src / "previews", ("x",))  # an unrelated folder of images: not listed
    line = _one_line_error(tmp_path, str(src))
    assert f"{src / 'images'}: no mask folder found, but {src / name} hold(s) images that look like masks" in line
    assert "rename it masks/" in line and "previews" not in line


def test_unknown_folder_whose_names_pair_is_an_error_too(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _images(src / "images")
    _png(src / "annots_v2" / "a_mask.png", _blob())
    line = _one_line_error(tmp_path, str(src))
    assert str(src / "annots_v2") in line


def test_known_folder_that_pairs_nothing_is_reported_with_an_unknown_that_does(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _images(src / "images")
    _png(src / "masks" / "zz.png", _blob())
    _png(src / "segmentations" / "a.png", _blob())
    line = _one_line_error(tmp_path, str(src))
    assert f"({src / 'masks'} pair with none), but {src / 'segmentations'}" in line


@pytest.mark.parametrize(("folder", "file_name"), [("labels", "a.txt"), ("Annotations", "a.xml"),
                                                   ("masks", "a.json")])
def test_mask_folder_without_mask_images_is_an_error(tmp_path: Path, folder: str, file_name: str) -> None:
    src = tmp_path / "src"
    _images(src / "images")
    (src / folder).mkdir()
    (src / folder / file_name).write_text("0 0.5 0.5 0.1 0.1\n")
    line = _one_line_error(tmp_path, str(src))
    assert f"{src / folder}: holds no mask images (1 other file(s), e.g. {file_name})" in line


def test_empty_mask_folder_keeps_every_image_defect_free(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _images(src / "images")
    (src / "masks").mkdir()
    result = convert_counted(src, tmp_path / "ds", "folder")
    assert len(result.open()) == 2 and result.with_defects == 0
    assert all(s.is_good for s in result.open())


def test_masks_nested_differently_from_the_images_are_an_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _images(src / "images")
    _png(src / "masks" / "train" / "a.png", _blob())  # images flat, masks in a split folder
    line = _one_line_error(tmp_path, str(src))
    assert f"{src / 'masks'}: no mask name matches an image in {src / 'images'} (tried suffixes" in line
    assert "--mask-suffix" in line


def test_mask_subfolder_without_its_image_subfolder_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _images(src / "images" / "train")
    _png(src / "masks" / "train" / "a.png", _blob())
    _images(src / "images" / "val", ("c",))
    _png(src / "masks" / "validation" / "c.png", _blob())  # not named like images/val
    line = _one_line_error(tmp_path, str(src))
    assert f"{src / 'masks' / 'validation'}: mask folder without an image folder {src / 'images' / 'validation'}" \
        in line


def test_masks_directly_in_masks_while_images_are_in_subfolders_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _images(src / "images" / "train")
    _png(src / "masks" / "train" / "a.png", _blob())
    _png(src / "masks" / "b.png", _blob())  # b's mask outside masks/train/
    line = _one_line_error(tmp_path, str(src))
    assert f"{src / 'masks'}: holds masks directly, but the images are in subfolders of {src / 'images'}" in line


def test_side_by_side_mask_named_file_without_its_image_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "flat"
    _images(src)
    _png(src / "c_mask.png", _blob())  # no c.*: not an image called c_mask
    line = _one_line_error(tmp_path, str(src))
    assert f"{src / 'c_mask.png'}: named like a mask (suffix '_mask'), but no image c.* is beside it" in line


def test_mask_suffix_that_pairs_nothing_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "flat"
    _images(src)
    _png(src / "a_mask.png", _blob())
    line = _one_line_error(tmp_path, "--mask-suffix", "_m", str(src))
    assert f"{src}: no image has a mask with the suffix '_m'" in line and "check --mask-suffix" in line


def test_mask_like_class_folder_is_an_error_rather_than_a_defect_free_class(tmp_path: Path) -> None:
    """`scratch/` + `scratch_masks/` read as two class folders would make every image defect-free."""
    src = tmp_path / "src"
    _images(src / "scratch")
    _png(src / "scratch_masks" / "a.png", _blob())
    line = _one_line_error(tmp_path, str(src))
    assert f"{src}: no image pairs with a mask, but {src / 'scratch_masks'} looks like masks" in line


def test_summary_counts_masks_written_not_defect_types(tmp_path: Path) -> None:
    """Index masks with several classes give defect_type None; an all-zero mask is still defect-free."""
    src = tmp_path / "src"
    _images(src / "images", ("a", "b", "c"))
    one = np.zeros((H, W), dtype=np.uint8)
    one[1:3, 1:3] = 2
    _png(src / "masks" / "a.png", one)
    _png(src / "masks" / "b.png", np.zeros((H, W), dtype=np.uint8))  # a mask file, but no defect pixel
    code, output = _cli("--classes", "scratch,dent", "-j", "2", str(src), str(tmp_path / "ds"))
    assert code == 0, output
    assert "3 samples (1 with defects, 2 defect-free) in 1 object(s)" in output
    assert "skipped" not in output


def test_image_and_mask_of_one_name_side_by_side_is_an_error(tmp_path: Path) -> None:
    """Magnetic-tile keeps `a.jpg` and its mask `a.png` side by side: not two defect-free images."""
    src = tmp_path / "tiles"
    _images(src / "MT_Crack" / "Imgs")
    _png(src / "MT_Crack" / "Imgs" / "a.png", _blob())
    line = _one_line_error(tmp_path, "--from", "folder", str(src))
    assert f"{src / 'MT_Crack' / 'Imgs' / 'a.png'}: two images named a (a.jpg); if one is the mask" in line


@pytest.mark.parametrize("kind", ["dangling link", "looping link", "folder"])
def test_unreadable_mask_entry_is_an_error_not_a_defect_free_image(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    _images(src / "images")
    _png(src / "masks" / "b.png", _blob())
    bad = src / "masks" / "a.png"
    if kind == "dangling link":
        bad.symlink_to(tmp_path / "nowhere.png")
    elif kind == "looping link":
        bad.symlink_to(bad)
    else:
        bad.mkdir()
    line = _one_line_error(tmp_path, str(src))
    what = {"dangling link": "a dangling symlink", "looping link": "a symlink loop", "folder": "a folder"}[kind]
    assert f"{bad}: named like an image but is {what}" in line


def test_unreadable_image_entry_side_by_side_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "flat"
    _images(src)
    _png(src / "a_mask.png", _blob())
    (src / "c.jpg").symlink_to(tmp_path / "gone.jpg")
    line = _one_line_error(tmp_path, str(src))
    assert f"{src / 'c.jpg'}: named like an image but is a dangling symlink" in line


def test_voc_list_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    _voc_tree(root)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_bytes(b"2007_000003\n\xff\xfe\n")
    line = _one_line_error(tmp_path, "--classes", "voc", str(root))
    assert "val.txt: not UTF-8 text" in line
