"""The mmseg layout: reading plain mmseg folders, writing one from a DS folder, restoring it."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import detect_format, open_reader
from defectspectrum.data.formats.mmseg import MmsegReader, export_mmseg
from defectspectrum.errors import FormatError, InputError


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _image(height: int = 6, width: int = 8, value: int = 90) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


def _mask(height: int = 6, width: int = 8, **cells: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    for key, value in cells.items():  # "r2c3" -> pixel (2, 3)
        row, col = key[1:].split("c")
        mask[int(row), int(col)] = value
    return mask


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    """A plain mmseg tree: train/val labelled, test unlabelled, masks named <stem>_labelTrainIds.png."""
    root = tmp_path / "metal_plates"
    _save(_image(), root / "img_dir" / "train" / "a.jpg")
    _save(_mask(r1c1=1, r2c2=2, r0c0=255), root / "ann_dir" / "train" / "a_labelTrainIds.png")
    _save(_image(value=10), root / "img_dir" / "train" / "b.png")
    _save(_mask(r5c7=2), root / "ann_dir" / "train" / "b_labelTrainIds.png")
    _save(_image(4, 5), root / "img_dir" / "val" / "c.png")
    _save(_mask(4, 5), root / "ann_dir" / "val" / "c_labelTrainIds.png")
    _save(_image(), root / "img_dir" / "test" / "d.png")  # unlabelled split: skipped
    return root


def test_plain_folder_pairs_by_detected_suffix_and_keeps_splits(plain: Path, tmp_path: Path) -> None:
    assert detect_format(plain) == "mmseg"
    folder = convert(plain, tmp_path / "ds", "mmseg")
    assert list(folder.objects) == ["metal_plates"]
    assert folder.objects["metal_plates"] == ClassMap(("background", "class_1", "class_2"))
    assert {s.name: s.split for s in folder} == {"a": "train", "b": "train", "c": "val"}
    mask_a = folder.load_mask(folder["metal_plates/a"])
    assert mask_a[1, 1] == 1 and mask_a[2, 2] == 2
    assert mask_a[0, 0] == 0, "mmseg's ignore index 255 is read as background"
    assert folder["metal_plates/a"].image.endswith(".jpg")
    assert folder.load_mask(folder["metal_plates/c"]).shape == (4, 5)


def test_explicit_mask_suffix_and_object_name(plain: Path, tmp_path: Path) -> None:
    _save(_mask(r1c1=1), plain / "ann_dir" / "train" / "a.png")  # a decoy with the empty suffix
    folder = convert(plain, tmp_path / "ds", "mmseg", mask_suffix="_labelTrainIds.png", object_name="plates")
    assert list(folder.objects) == ["plates"]
    assert folder.load_mask(folder["plates/a"])[2, 2] == 2


def test_wrong_mask_suffix_names_the_missing_annotation(plain: Path, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"a\.jpg: its annotation .*a_mask\.png is missing"):
        convert(plain, tmp_path / "ds", "mmseg", mask_suffix="_mask")
    assert not (tmp_path / "ds").exists()


def test_image_without_annotation_is_refused(plain: Path, tmp_path: Path) -> None:
    _save(_image(), plain / "img_dir" / "val" / "orphan.png")
    with pytest.raises(FormatError, match="orphan.png: its annotation"):
        convert(plain, tmp_path / "ds", "mmseg")


@pytest.mark.parametrize("names", [["scratch", "dent"], ["background", "scratch", "dent"],
                                   ["Background", "scratch", "dent"]])
def test_classes_option_with_or_without_background(plain: Path, names: list[str]) -> None:
    reader = open_reader("mmseg", plain, classes=names)
    assert reader.class_maps() == {"metal_plates": ClassMap(("background", "scratch", "dent"))}


def test_classes_txt_and_classes_json_name_the_classes(plain: Path) -> None:
    (plain / "classes.txt").write_text("background\nscratch\n\ndent\n", encoding="utf-8")
    assert open_reader("mmseg", plain).class_maps()["metal_plates"].defects == ("scratch", "dent")
    (plain / "classes.json").write_text(json.dumps({"classes": [{"name": "pit"}, {"name": "crack"}]}), encoding="utf-8")
    assert open_reader("mmseg", plain).class_maps()["metal_plates"].defects == ("pit", "crack"), "json before txt"
    assert open_reader("mmseg", plain, classes=["x", "y"]).class_maps()["metal_plates"].defects == ("x", "y"), \
        "the --classes option beats the files"


def test_mask_index_beyond_the_named_classes_is_refused(plain: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"a_labelTrainIds\.png: mask index 2 is outside the class map"):
        convert(plain, tmp_path / "ds", "mmseg", classes=["scratch"])


def test_unsplit_and_flat_folders_have_no_split(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _save(_image(), root / "img_dir" / "unsplit" / "a.png")
    _save(_mask(r1c1=1), root / "ann_dir" / "unsplit" / "a.png")
    _save(_image(), root / "img_dir" / "b.png")
    _save(_mask(r2c2=1), root / "ann_dir" / "b.png")
    folder = convert(root, tmp_path / "ds", "mmseg")
    assert {s.name: s.split for s in folder} == {"a": None, "b": None}
    assert folder.load_mask(folder["src/b"])[2, 2] == 1


def test_colour_annotation_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _save(_image(), root / "img_dir" / "train" / "a.png")
    _save(_image(value=1), root / "ann_dir" / "train" / "a.png")
    with pytest.raises(FormatError, match="a.png: expected a single-channel class-index mask"):
        convert(root, tmp_path / "ds", "mmseg", classes=["x"])


def test_not_mmseg_is_not_detected(tmp_path: Path) -> None:
    (tmp_path / "img_dir").mkdir()
    assert not MmsegReader.detect(tmp_path)
    with pytest.raises(FormatError, match="not an mmseg folder"):
        open_reader("mmseg", tmp_path)


# -- writer ----------------------------------------------------------------------------------------


@pytest.fixture
def ds(tmp_path: Path) -> DSFolder:
    folder = DSFolder.create(tmp_path / "ds", objects={"pill": ["crack", "color"], "wood": ["hole"]})
    folder.add_sample("pill", "p1", _image(), _mask(r1c1=1, r1c2=2), split="train", caption="two defects",
                      defect_type="combined")
    folder.add_sample("wood", "p1", _image(5, 3), _mask(5, 3, r4c2=1), split="val", defect_type="hole")
    folder.add_sample("wood", "w2", _image(5, 3), _mask(5, 3), defect_type="good")
    folder.save()
    return folder


def test_writer_uses_global_indices_and_writes_class_metadata(ds: DSFolder, tmp_path: Path) -> None:
    out = export_mmseg(ds, tmp_path / "mm")
    assert out == tmp_path / "mm"
    pill = np.asarray(Image.open(out / "ann_dir" / "train" / "pill__p1.png"))
    wood = np.asarray(Image.open(out / "ann_dir" / "val" / "wood__p1.png"))
    assert pill[1, 1] == 1 and pill[1, 2] == 2
    assert wood[4, 2] == 3, "wood/hole is global class 3 after pill's two classes"
    assert (out / "img_dir" / "unsplit" / "wood__w2.png").is_file(), "no split -> unsplit/"
    classes = json.loads((out / "classes.json").read_text())
    assert [c["label"] for c in classes["classes"]] == ["background", "pill/crack", "pill/color", "wood/hole"]
    assert classes["objects"]["wood"]["classes"] == ["background", "hole"]
    samples = json.loads((out / "samples.json").read_text())["samples"]
    assert [(s["object"], s["name"], s["split"]) for s in samples] == [("pill", "p1", "train"), ("wood", "p1", "val"),
                                                                       ("wood", "w2", None)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder left"


def test_writer_refuses_a_non_empty_destination(ds: DSFolder, tmp_path: Path) -> None:
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="mm: exists and is not an empty folder"):
        export_mmseg(ds, tmp_path / "mm")
    assert (tmp_path / "mm" / "keep.txt").read_text() == "x"
    (tmp_path / "empty").mkdir()
    assert (export_mmseg(ds, tmp_path / "empty") / "classes.json").is_file()


def test_failed_export_leaves_nothing(ds: DSFolder, tmp_path: Path) -> None:
    sample = ds["wood/w2"]
    Image.fromarray(_mask(5, 3, r0c0=7)).save(ds.mask_path(sample))  # index 7 is not a wood class
    with pytest.raises(InputError, match="mask index 7 is outside the class map"):
        export_mmseg(ds, tmp_path / "mm")
    assert not (tmp_path / "mm").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_missing_image_is_an_input_error_naming_it(ds: DSFolder, tmp_path: Path) -> None:
    image = ds.image_path(ds["wood/w2"])
    image.unlink()
    with pytest.raises(InputError, match=f"^{image}: file not found"):
        export_mmseg(ds, tmp_path / "mm")
    assert not (tmp_path / "mm").exists()


def test_restored_folder_rejects_options_and_foreign_indices(ds: DSFolder, tmp_path: Path) -> None:
    out = export_mmseg(ds, tmp_path / "mm")
    with pytest.raises(InputError, match="drop --classes"):
        open_reader("mmseg", out, classes=["x"])
    Image.fromarray(_mask(5, 3, r0c0=1)).save(out / "ann_dir" / "val" / "wood__p1.png")  # pill's crack on wood
    with pytest.raises(FormatError, match=r"wood__p1\.png: class index\(es\) \[1\] do not belong to object 'wood'"):
        convert(out, tmp_path / "back", "mmseg")


def test_restored_folder_checks_samples_json(ds: DSFolder, tmp_path: Path) -> None:
    out = export_mmseg(ds, tmp_path / "mm")
    _save(_image(), out / "img_dir" / "train" / "extra.png")
    _save(_mask(), out / "ann_dir" / "train" / "extra.png")
    with pytest.raises(FormatError, match=r"extra\.png: not listed in .*samples\.json"):
        convert(out, tmp_path / "back", "mmseg")
    (out / "img_dir" / "train" / "extra.png").unlink()
    (out / "img_dir" / "val" / "wood__p1.png").unlink()
    with pytest.raises(FormatError, match=r"wood__p1\.png: listed in .*samples\.json but missing"):
        convert(out, tmp_path / "back", "mmseg")
    (out / "samples.json").unlink()
    with pytest.raises(FormatError, match=r"samples\.json: missing"):
        open_reader("mmseg", out)


def test_reader_pickles(plain: Path) -> None:
    reader = open_reader("mmseg", plain)
    clone = pickle.loads(pickle.dumps(reader))
    item = next(iter(clone.samples()))
    assert clone.load_mask(item, (6, 8))[1, 1] == 1
