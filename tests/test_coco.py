"""COCO JSON: reading polygons and RLE into class-index masks, writing RLE exports."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.classes import ClassMap
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import detect_format, open_reader
from defectspectrum.data.formats.coco import CocoReader, export_coco
from defectspectrum.errors import FormatError, InputError

H, W = 10, 12


def _save_image(path: Path, height: int = H, width: int = W) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 120, dtype=np.uint8)).save(path)


def _compressed(binary: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _uncompressed(binary: np.ndarray) -> dict:
    flat = binary.astype(np.uint8).flatten(order="F")
    runs, current, count = [], 0, 0
    for value in flat:
        if value == current:
            count += 1
        else:
            runs.append(count)
            current, count = value, 1
    runs.append(count)
    return {"size": [int(binary.shape[0]), int(binary.shape[1])], "counts": runs}


def _block(rows: slice, cols: slice) -> np.ndarray:
    binary = np.zeros((H, W), dtype=bool)
    binary[rows, cols] = True
    return binary


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """A generic COCO file: categories 7 (dent) and 3 (scratch), polygons + both RLE kinds."""
    root = tmp_path / "plates"
    for name in ("a.png", "b.png"):
        _save_image(root / name)
    _save_image(root / "images" / "c.png")  # found through the images/ subfolder
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": H, "width": W},
            {"id": 2, "file_name": "b.png", "height": H, "width": W},
            {"id": 5, "file_name": "c.png", "height": H, "width": W},
        ],
        "categories": [{"id": 7, "name": "dent"}, {"id": 3, "name": "scratch"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "segmentation": _compressed(_block(slice(1, 4), slice(1, 5)))},
            {"id": 2, "image_id": 1, "category_id": 7, "segmentation": _uncompressed(_block(slice(6, 9), slice(2, 3)))},
            {"id": 3, "image_id": 2, "category_id": 7,
             "segmentation": [[5.0, 5.0, 9.0, 5.0, 9.0, 8.0, 5.0, 8.0]], "iscrowd": 0},
        ],
    }
    (root / "plates.json").write_text(json.dumps(data), encoding="utf-8")
    return root


def test_generic_file_rasterises_every_annotation(coco: Path, tmp_path: Path) -> None:
    folder = convert(coco / "plates.json", tmp_path / "ds", "coco")
    assert folder.objects == {"plates": ClassMap(("background", "scratch", "dent"))}, "categories ordered by id"
    mask_a = folder.load_mask(folder["plates/a"])
    expected = np.zeros((H, W), np.uint8)
    expected[1:4, 1:5] = 1
    expected[6:9, 2:3] = 2
    np.testing.assert_array_equal(mask_a, expected)
    mask_b = folder.load_mask(folder["plates/b"])
    assert mask_b[6, 7] == 2 and mask_b[0, 0] == 0 and mask_b[2, 2] == 0
    assert folder.load_mask(folder["plates/c"]).max() == 0
    assert {s.name: s.defect_type for s in folder} == {"a": "combined", "b": "dent", "c": "good"}


def test_folder_with_one_json_is_detected_and_read(coco: Path, tmp_path: Path) -> None:
    assert detect_format(coco) == "coco"
    assert detect_format(coco / "plates.json") == "coco"
    folder = convert(coco, tmp_path / "ds", object_name="plate")
    assert list(folder.objects) == ["plate"]
    assert len(folder) == 3


def test_folder_with_two_jsons_is_refused(coco: Path) -> None:
    (coco / "other.json").write_text("{}", encoding="utf-8")
    assert not CocoReader.detect(coco)
    with pytest.raises(FormatError, match=r"or exactly one \.json file \(found: other\.json, plates\.json\)"):
        open_reader("coco", coco)


def test_non_json_file_is_not_a_source(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(FormatError, match=r"notes\.txt: is a file"):
        detect_format(path)


def test_missing_image_is_named(coco: Path, tmp_path: Path) -> None:
    (coco / "images" / "c.png").unlink()
    expected = r"plates\.json: image 5: file_name 'c\.png' not found at .*plates/c\.png or .*plates/images/c\.png"
    with pytest.raises(FormatError, match=expected):
        convert(coco / "plates.json", tmp_path / "ds", "coco")
    assert not (tmp_path / "ds").exists()


def test_unknown_category_is_named(coco: Path, tmp_path: Path) -> None:
    path = coco / "plates.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(FormatError, match=r"plates\.json: annotation 1: category_id 99 is not among the categories"):
        open_reader("coco", path)


def test_annotation_of_unknown_image_is_named(coco: Path) -> None:
    path = coco / "plates.json"
    data = json.loads(path.read_text())
    data["annotations"][2]["image_id"] = 42
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(FormatError, match=r"annotation 3: image_id 42 is not among the images"):
        open_reader("coco", path)


def test_boxes_only_are_refused(coco: Path) -> None:
    path = coco / "plates.json"
    data = json.loads(path.read_text())
    for annotation in data["annotations"]:
        annotation.pop("segmentation")
        annotation["bbox"] = [1, 1, 2, 2]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(FormatError, match="bounding boxes only"):
        open_reader("coco", path)


def test_classes_option_sets_the_order(coco: Path) -> None:
    reader = open_reader("coco", coco / "plates.json", classes=["background", "dent", "scratch"])
    assert reader.class_maps() == {"plates": ClassMap(("background", "dent", "scratch"))}
    item = next(s for s in reader.samples() if s.name == "a")
    mask = reader.load_mask(item, (H, W))
    assert mask[2, 2] == 2 and mask[7, 2] == 1
    with pytest.raises(FormatError, match="category 'scratch' is not in --classes"):
        open_reader("coco", coco / "plates.json", classes=["dent"])


def test_background_category_is_index_zero(coco: Path) -> None:
    path = coco / "plates.json"
    data = json.loads(path.read_text())
    data["categories"].append({"id": 0, "name": "Background"})
    data["annotations"].append({"id": 9, "image_id": 1, "category_id": 0,
                                "segmentation": _compressed(_block(slice(2, 3), slice(2, 3)))})
    path.write_text(json.dumps(data), encoding="utf-8")
    reader = open_reader("coco", path)
    assert reader.class_maps() == {"plates": ClassMap(("background", "scratch", "dent"))}
    item = next(s for s in reader.samples() if s.name == "a")
    mask = reader.load_mask(item, (H, W))
    assert mask[2, 2] == 0 and mask[1, 1] == 1, "the smaller background annotation paints over scratch"


def test_duplicate_category_names_are_refused(coco: Path) -> None:
    path = coco / "plates.json"
    data = json.loads(path.read_text())
    data["categories"][0]["name"] = "scratch"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(FormatError, match=r"plates\.json: .*class names must be unique"):
        open_reader("coco", path)


def test_image_size_comes_from_the_file_when_the_json_omits_it(coco: Path) -> None:
    path = coco / "plates.json"
    data = json.loads(path.read_text())
    for image in data["images"]:
        del image["height"], image["width"]
    path.write_text(json.dumps(data), encoding="utf-8")
    reader = open_reader("coco", path)
    item = next(s for s in reader.samples() if s.name == "b")
    assert reader.load_mask(item, (H, W)).shape == (H, W)


def test_reader_pickles_without_the_parsed_file(coco: Path) -> None:
    reader = open_reader("coco", coco / "plates.json")
    items = list(reader.samples())
    clone = pickle.loads(pickle.dumps(reader))
    assert hasattr(reader, "_files") and not hasattr(clone, "_files")
    assert clone.load_mask(items[0], (H, W))[2, 2] == 1


def test_malformed_json_cli_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,, }\n]}', encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "convert", "--from", "coco", str(path), str(tmp_path / "ds")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "broken.json: invalid JSON at line 2 column" in lines[0]
    assert not (tmp_path / "ds").exists()


def test_missing_image_cli_error(coco: Path, tmp_path: Path) -> None:
    (coco / "a.png").unlink()
    args = ["data", "convert", "--from", "coco", str(coco / "plates.json"), str(tmp_path / "ds")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "plates.json: image 1: file_name 'a.png' not found" in " ".join(result.output.split())


# -- writer ----------------------------------------------------------------------------------------


@pytest.fixture
def ds(tmp_path: Path) -> DSFolder:
    folder = DSFolder.create(tmp_path / "ds", objects={"pill": ["crack", "color"], "wood": ["hole"]})
    mask = np.zeros((6, 9), np.uint8)
    mask[1:3, 1:3] = 1
    mask[4, 6:9] = 1
    mask[0, 8] = 2
    folder.add_sample("pill", "p1", np.zeros((6, 9, 3), np.uint8), mask, split="train", caption="cap",
                      defect_type="combined")
    wood = np.zeros((4, 3), np.uint8)
    wood[1, 1] = 1
    folder.add_sample("wood", "w1", np.zeros((4, 3, 3), np.uint8), wood, defect_type="hole")
    folder.add_sample("wood", "w2", np.zeros((4, 3, 3), np.uint8), np.zeros((4, 3), np.uint8), defect_type="good")
    folder.save()
    return folder


def _instances(out: Path, split: str) -> dict:
    return json.loads((out / "annotations" / f"instances_{split}.json").read_text(encoding="utf-8"))


def test_writer_one_rle_annotation_per_region(ds: DSFolder, tmp_path: Path) -> None:
    out = export_coco(ds, tmp_path / "export" / "out")
    assert sorted(p.name for p in (out / "annotations").iterdir()) == ["instances_train.json", "instances_unsplit.json"]
    train, unsplit = _instances(out, "train"), _instances(out, "unsplit")
    for data in (train, unsplit):
        assert [(c["id"], c["name"], c["object"], c["class"]) for c in data["categories"]] == [
            (1, "pill/crack", "pill", "crack"), (2, "pill/color", "pill", "color"), (3, "wood/hole", "wood", "hole")]
    pill = train["annotations"]
    assert {a["image_id"] for a in pill} == {1}
    assert sorted((a["category_id"], a["area"]) for a in pill) == [(1, 3), (1, 4), (2, 1)]
    crack = next(a for a in pill if a["area"] == 4)
    assert crack["bbox"] == [1.0, 1.0, 2.0, 2.0] and crack["iscrowd"] == 0
    assert isinstance(crack["segmentation"]["counts"], str)
    assert [(a["image_id"], a["category_id"]) for a in unsplit["annotations"]] == [(2, 3)], "defect-free w2: none"
    image = train["images"][0]
    assert (image["object"], image["name"], image["split"], image["caption"], image["defect_type"]) == \
        ("pill", "p1", "train", "cap", "combined")
    assert (image["height"], image["width"]) == (6, 9)
    assert image["file_name"] == "pill_p1.png", "just the file name, as COCO does"
    assert (out / "images" / "train" / "pill_p1.png").read_bytes() == ds.image_path(ds["pill/p1"]).read_bytes()
    assert [i["file_name"] for i in unsplit["images"]] == ["wood_w1.png", "wood_w2.png"]
    assert [i["split"] for i in unsplit["images"]] == [None, None]


def test_writer_refuses_existing_or_json_name(ds: DSFolder, tmp_path: Path) -> None:
    existing = tmp_path / "out"
    existing.mkdir()
    (existing / "keep.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(InputError, match="out: exists and is not an empty folder"):
        export_coco(ds, existing)
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    with pytest.raises(InputError, match=r"a COCO export is a folder .*; give a folder name without \.json"):
        export_coco(ds, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_restored_file_rejects_options_and_cross_object_annotations(ds: DSFolder, tmp_path: Path) -> None:
    out = export_coco(ds, tmp_path / "out")
    with pytest.raises(InputError, match="drop --classes and --object"):
        open_reader("coco", out, object_name="x")
    path = out / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 3  # wood/hole on a pill image
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(FormatError, match=r"image 1: annotation 1 \(object 'pill'\) has category 3 of object 'wood'"):
        list(open_reader("coco", out).samples())
