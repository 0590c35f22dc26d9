"""VISION V1 reader: COCO files per data set and split, every annotation rasterised into one mask."""

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
from defectspectrum.data.formats.vision import VisionReader
from defectspectrum.errors import FormatError, InputError

H, W = 16, 20
ROBOFLOW_DUMMY = {"id": 0, "name": "defects", "supercategory": "none"}


def box(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    """Rectangle polygon: pycocotools fills columns x0..x1-1 and rows y0..y1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def category(cid: int, name: str) -> dict:
    return {"id": cid, "name": name, "supercategory": "defects"}


def write_split(folder: Path, images: list[str], annotations: list[dict], categories: list[dict],
                size: tuple[int, int] = (H, W)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, name in enumerate(images, start=1):
        Image.fromarray(np.full((*size, 3), 40 * index % 255, dtype=np.uint8)).save(folder / name)
        entries.append({"id": index, "file_name": name, "height": size[0], "width": size[1]})
    data = {"info": {}, "images": entries, "annotations": annotations, "categories": categories}
    (folder / "_annotations.coco.json").write_text(json.dumps(data, indent=1))


def rle_counts(binary: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE (column-major runs, starting with background)."""
    runs, value, count = [], 0, 0
    for pixel in binary.flatten(order="F"):
        if pixel != value:
            runs.append(count)
            value, count = pixel, 0
        count += 1
    runs.append(count)
    return runs


CAPACITOR_CATEGORIES = [ROBOFLOW_DUMMY, category(1, "scratch"), category(2, "crush"), category(3, "crack")]


@pytest.fixture
def vision(tmp_path: Path) -> Path:
    root = tmp_path / "VISION"
    cap = root / "Capacitor"
    crush_region = np.zeros((H, W), dtype=np.uint8)
    crush_region[13:16, 15:20] = 1
    compressed = mask_utils.encode(np.asfortranarray(crush_region))["counts"].decode("ascii")
    write_split(
        cap / "train",
        ["multi.jpg.png", "clean.png", "boxonly.png", "ties.png", "compressed.png"],
        [
            # image 1: a big scratch with a small crack on it (crack must stay visible), an RLE crush,
            # and a box-only crush that must not paint anything
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": box(0, 0, 12, 12), "bbox": [0, 0, 12, 12]},
            {"id": 11, "image_id": 1, "category_id": 3, "segmentation": box(4, 4, 8, 8), "bbox": [4, 4, 4, 4]},
            {"id": 12, "image_id": 1, "category_id": 2, "iscrowd": 1,
             "segmentation": {"size": [H, W], "counts": rle_counts(crush_region)}},
            {"id": 13, "image_id": 1, "category_id": 2, "segmentation": [], "bbox": [14, 0, 4, 4]},
            # image 3: box only -> no pixel label, left out
            {"id": 14, "image_id": 3, "category_id": 1, "segmentation": [], "bbox": [0, 0, 5, 5]},
            # image 4: equal areas overlapping in columns 4-5; the higher id (21, crack) wins though listed first
            {"id": 21, "image_id": 4, "category_id": 3, "segmentation": box(4, 0, 10, 4)},
            {"id": 20, "image_id": 4, "category_id": 1, "segmentation": box(0, 0, 6, 4)},
            # image 5: compressed RLE string
            {"id": 30, "image_id": 5, "category_id": 2, "segmentation": {"size": [H, W], "counts": compressed}},
        ],
        CAPACITOR_CATEGORIES,
    )
    # val knows one more category (id 4): the class map is the union over splits, in id order
    write_split(cap / "val", ["v1.png"], [{"id": 1, "image_id": 1, "category_id": 4, "segmentation": box(1, 2, 3, 5)}],
                [*CAPACITOR_CATEGORIES, category(4, "dent")])
    # inference: unlabelled, never converted
    write_split(cap / "inference", ["u1.png", "u2.png"], [], CAPACITOR_CATEGORIES)
    write_split(root / "Console" / "train", ["c1.png"],
                [{"id": 1, "image_id": 1, "category_id": 2, "segmentation": box(0, 0, 3, 3)}],
                [{"id": 1, "name": "scratch", "supercategory": "none"},
                 {"id": 2, "name": "gap", "supercategory": "none"}])
    return root


def load(folder: DSFolder, sample_id: str) -> np.ndarray:
    return folder.load_mask(folder[sample_id])


def test_class_maps_union_over_splits_without_the_roboflow_dummy(vision: Path) -> None:
    reader = VisionReader(vision)
    assert reader.class_maps() == {
        "Capacitor": ClassMap(("background", "scratch", "crush", "crack", "dent")),
        "Console": ClassMap(("background", "scratch", "gap")),
    }


def test_convert_keeps_labelled_splits_and_skips_inference_and_box_only(vision: Path, tmp_path: Path) -> None:
    folder = convert(vision, tmp_path / "ds", "vision")
    ids = sorted(s.id for s in folder)
    assert ids == [
        "Capacitor/train_clean", "Capacitor/train_compressed", "Capacitor/train_multi.jpg",
        "Capacitor/train_ties", "Capacitor/val_v1", "Console/train_c1",
    ]
    splits = {s.id: s.split for s in folder}
    assert splits["Capacitor/val_v1"] == "val" and splits["Capacitor/train_ties"] == "train"
    types = {s.id: s.defect_type for s in folder}
    assert types["Capacitor/train_clean"] == "good"
    assert types["Capacitor/train_multi.jpg"] == "combined"
    assert types["Capacitor/train_ties"] == "combined"
    assert types["Capacitor/train_compressed"] == "crush"
    assert types["Capacitor/val_v1"] == "dent"
    assert folder["Capacitor/train_clean"].is_good and not load(folder, "Capacitor/train_clean").any()
    reopened = DSFolder.open(tmp_path / "ds")
    assert reopened.objects["Capacitor"].names == ("background", "scratch", "crush", "crack", "dent")
    assert reopened.meta["source"]["format"] == "vision"


def test_every_annotation_is_rasterised_smaller_on_top(vision: Path, tmp_path: Path) -> None:
    folder = convert(vision, tmp_path / "ds", "vision")
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[0:12, 0:12] = 1  # scratch
    expected[4:8, 4:8] = 3  # crack, smaller, on top of the scratch
    expected[13:16, 15:20] = 2  # crush from uncompressed RLE; the box-only crush paints nothing
    assert np.array_equal(load(folder, "Capacitor/train_multi.jpg"), expected)


def test_equal_areas_higher_id_wins_and_compressed_rle(vision: Path, tmp_path: Path) -> None:
    folder = convert(vision, tmp_path / "ds", "vision")
    ties = np.zeros((H, W), dtype=np.uint8)
    ties[0:4, 0:6] = 1
    ties[0:4, 4:10] = 3
    assert np.array_equal(load(folder, "Capacitor/train_ties"), ties)
    crush = np.zeros((H, W), dtype=np.uint8)
    crush[13:16, 15:20] = 2
    assert np.array_equal(load(folder, "Capacitor/train_compressed"), crush)
    dent = np.zeros((H, W), dtype=np.uint8)
    dent[2:5, 1:3] = 4
    assert np.array_equal(load(folder, "Capacitor/val_v1"), dent)
    gap = np.zeros((H, W), dtype=np.uint8)
    gap[0:3, 0:3] = 2
    assert np.array_equal(load(folder, "Console/train_c1"), gap)


def test_one_dataset_folder_as_root_and_two_workers(vision: Path, tmp_path: Path) -> None:
    folder = convert(vision / "Capacitor", tmp_path / "ds", "vision", workers=2)
    assert list(folder.objects) == ["Capacitor"]
    assert len(folder) == 5
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[0:12, 0:12] = 1
    expected[4:8, 4:8] = 3
    expected[13:16, 15:20] = 2
    assert np.array_equal(load(folder, "Capacitor/train_multi.jpg"), expected)


def test_reader_and_recipes_pickle(vision: Path) -> None:
    reader = VisionReader(vision)
    items = list(reader.samples())
    copy = pickle.loads(pickle.dumps(reader))
    item = pickle.loads(pickle.dumps(items[0]))
    assert np.array_equal(copy.load_mask(item, (H, W)), reader.load_mask(items[0], (H, W)))


def test_detect_is_specific(vision: Path, tmp_path: Path) -> None:
    assert VisionReader.detect(vision) and VisionReader.detect(vision / "Console")
    assert detect_format(vision) == "vision"
    assert detect_format(vision / "Capacitor") == "vision"
    mvtec = tmp_path / "mvtec" / "bottle"
    (mvtec / "test" / "good").mkdir(parents=True)
    (mvtec / "ground_truth").mkdir()
    assert not VisionReader.detect(tmp_path / "mvtec")
    lone_json = tmp_path / "plain"
    lone_json.mkdir()
    (lone_json / "_annotations.coco.json").write_text("{}")
    assert not VisionReader.detect(lone_json)


def test_folder_without_vision_data_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "Capacitor" / "train").mkdir(parents=True)
    with pytest.raises(FormatError, match="no VISION data set"):
        open_reader("vision", tmp_path / "empty")


def test_unknown_category_id_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "Screw"
    write_split(root / "train", ["a.png"],
                [{"id": 7, "image_id": 1, "category_id": 9, "segmentation": box(0, 0, 2, 2)}],
                [category(1, "bump")])
    with pytest.raises(FormatError) as info:
        convert(root, tmp_path / "ds", "vision")
    message = str(info.value)
    assert str(root / "train" / "_annotations.coco.json") in message and "category_id 9" in message
    assert "\n" not in message
    assert not (tmp_path / "ds").exists()


def test_same_category_id_with_two_names_is_a_format_error(tmp_path: Path) -> None:
    root = tmp_path / "Ring"
    write_split(root / "train", ["a.png"], [], [category(1, "friction")])
    write_split(root / "val", ["b.png"], [], [category(1, "texture")])
    with pytest.raises(FormatError, match="category id 1 is 'texture' here but 'friction'"):
        VisionReader(root).class_maps()


def test_listed_image_missing_is_a_format_error(tmp_path: Path) -> None:
    root = tmp_path / "Wood"
    write_split(root / "train", ["a.png"], [], [category(1, "point")])
    (root / "train" / "a.png").unlink()
    with pytest.raises(FormatError, match=r"_annotations\.coco\.json: file_name 'a\.png' not found at .*train/a\.png"):
        convert(root, tmp_path / "ds", "vision")


def test_rle_of_another_size_is_a_format_error(tmp_path: Path) -> None:
    root = tmp_path / "Groove"
    write_split(root / "train", ["a.png"],
                [{"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"size": [4, 4], "counts": [16]}}],
                [category(1, "scratch")])
    with pytest.raises(FormatError, match=r"_annotations\.coco\.json \(image a\.png\): annotation 3: RLE size"):
        convert(root, tmp_path / "ds", "vision")


def test_malformed_json_is_an_input_error_with_line_and_column(tmp_path: Path) -> None:
    root = tmp_path / "Cable"
    write_split(root / "train", ["a.png"], [], [category(1, "break")])
    path = root / "train" / "_annotations.coco.json"
    path.write_text('{\n  "images": [\n    {"id": 1,, "file_name": "a.png"}\n  ]\n}\n')
    with pytest.raises(InputError, match=r"invalid JSON at line 3 column"):
        VisionReader(root).class_maps()


def test_cli_reports_malformed_json_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "VISION" / "Cable"
    write_split(root / "train", ["a.png"], [], [category(1, "break")])
    path = root / "train" / "_annotations.coco.json"
    path.write_text('{"images": [}\n')
    result = CliRunner().invoke(app, ["data", "convert", "--from", "vision", str(tmp_path / "VISION"),
                                      str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and str(path) in lines[0] and "line 1 column" in lines[0]
    assert not (tmp_path / "out").exists()
