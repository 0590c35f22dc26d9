"""DAGM 2007 reader: ClassN/{Train,Test}, Label/NNNN_label.PNG ellipses and Labels.txt."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import detect_format, open_reader
from defectspectrum.data.formats.dagm import DAGMReader
from defectspectrum.errors import FormatError

S = 24


def ellipse(center: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
    """A coarse 0/255 ellipse label as DAGM ships them."""
    label = np.zeros((S, S), dtype=np.uint8)
    cv2.ellipse(label, center, axes, 30, 0, 360, 255, -1)
    return label


def write_split(folder: Path, images: dict[str, np.ndarray | None], labels_txt: str | None) -> None:
    """`images`: file name -> its 0/255 label (None: no label file)."""
    (folder / "Label").mkdir(parents=True, exist_ok=True)
    for index, (name, label) in enumerate(images.items()):
        Image.fromarray(np.full((S, S), 30 + 20 * index, dtype=np.uint8), mode="L").save(folder / name)
        if label is not None:
            Image.fromarray(label, mode="L").save(folder / "Label" / f"{Path(name).stem}_label.PNG")
    if labels_txt is not None:
        (folder / "Label" / "Labels.txt").write_text(labels_txt)


LABEL_A = ellipse((8, 10), (6, 3))
LABEL_B = ellipse((15, 12), (4, 7))
LABEL_C = ellipse((12, 12), (9, 5))
LABEL_D = ellipse((5, 18), (3, 3))


@pytest.fixture
def dagm(tmp_path: Path) -> Path:
    root = tmp_path / "DAGM"
    # the original Labels.txt: a lone first line, then tab-separated rows; "0" where no label
    write_split(root / "Class1" / "Train",
                {"0001.PNG": None, "0002.PNG": LABEL_A, "0003.PNG": LABEL_B, "0004.PNG": None,
                 "0005.PNG": LABEL_C},
                "1\n1\t0\t0001.PNG\t0\t0\n2\t1\t0002.PNG\t0\t0002_label.PNG\n"
                "5\t0\t0005.PNG\t0\t0\n")  # 0003: no row but a label -> defective; 0005: row says 0 -> good
    # a header line with column names; space separated; a defective row naming no label file
    write_split(root / "Class1" / "Test", {"0001.PNG": LABEL_D, "0002.PNG": None},
                "ID Defective Filename Unknown Label\n1 1 0001.PNG 0 0\n2 0 0002.PNG 0 0\n")
    # nested copy, no Labels.txt at all: the label file decides
    write_split(root / "Class10" / "Class10" / "Train", {"0100.PNG": LABEL_B, "0101.PNG": None}, None)
    write_split(root / "Class2" / "Test", {"0001.PNG": LABEL_C}, "1\n1\t1\t0001.PNG\t0\t0001_label.PNG\n")
    (root / "Class2" / "Train").mkdir()
    (root / "notes").mkdir()
    return root


def test_class_map_is_the_dagm_classes_in_numeric_order(dagm: Path) -> None:
    assert DAGMReader(dagm).class_maps() == {"dagm": ClassMap(("background", "Class1", "Class2", "Class10"))}


def test_convert_samples_splits_and_types(dagm: Path, tmp_path: Path) -> None:
    folder = convert(dagm, tmp_path / "ds", "dagm")
    records = {s.name: (s.split, s.defect_type) for s in folder}
    assert records == {
        "Class1_train_0001": ("train", "good"),
        "Class1_train_0002": ("train", "Class1"),
        "Class1_train_0003": ("train", "Class1"),
        "Class1_train_0004": ("train", "good"),
        "Class1_train_0005": ("train", "good"),
        "Class1_test_0001": ("test", "Class1"),
        "Class1_test_0002": ("test", "good"),
        "Class2_test_0001": ("test", "Class2"),
        "Class10_train_0100": ("train", "Class10"),
        "Class10_train_0101": ("train", "good"),
    }
    assert list(folder.objects) == ["dagm"]


def test_ellipse_labels_land_in_their_class_index(dagm: Path, tmp_path: Path) -> None:
    folder = convert(dagm, tmp_path / "ds", "dagm")

    def mask(name: str) -> np.ndarray:
        return folder.load_mask(folder[f"dagm/{name}"])

    assert np.array_equal(mask("Class1_train_0002"), (LABEL_A == 255).astype(np.uint8))
    assert np.array_equal(mask("Class1_train_0003"), (LABEL_B == 255).astype(np.uint8))
    assert np.array_equal(mask("Class1_test_0001"), (LABEL_D == 255).astype(np.uint8))
    assert np.array_equal(mask("Class2_test_0001"), (LABEL_C == 255).astype(np.uint8) * 2)
    assert np.array_equal(mask("Class10_train_0100"), (LABEL_B == 255).astype(np.uint8) * 3)
    assert not mask("Class1_train_0005").any()  # a label file exists but the row says defect-free
    assert not mask("Class1_train_0001").any()


def test_one_class_folder_as_root_and_object_option(dagm: Path, tmp_path: Path) -> None:
    folder = convert(dagm / "Class10", tmp_path / "ds", "dagm", object_name="textures")
    assert folder.objects == {"textures": ClassMap(("background", "Class10"))}
    assert sorted(s.id for s in folder) == ["textures/Class10_train_0100", "textures/Class10_train_0101"]
    assert np.array_equal(folder.load_mask(folder["textures/Class10_train_0100"]), (LABEL_B == 255).astype(np.uint8))


def test_reader_pickles(dagm: Path) -> None:
    reader = DAGMReader(dagm)
    item = next(s for s in reader.samples() if s.mask is not None)
    copy = pickle.loads(pickle.dumps(reader))
    assert np.array_equal(copy.load_mask(pickle.loads(pickle.dumps(item)), (S, S)), reader.load_mask(item, (S, S)))


def test_detect(dagm: Path, tmp_path: Path) -> None:
    assert DAGMReader.detect(dagm) and DAGMReader.detect(dagm / "Class1") and DAGMReader.detect(dagm / "Class10")
    assert detect_format(dagm) == "dagm"
    assert detect_format(dagm / "Class10") == "dagm"
    other = tmp_path / "other"
    (other / "Class_A" / "Train").mkdir(parents=True)
    (other / "bottle" / "test").mkdir(parents=True)
    assert not DAGMReader.detect(other)


def test_defective_row_with_missing_label_names_it(tmp_path: Path) -> None:
    root = tmp_path / "Class3"
    write_split(root / "Train", {"0007.PNG": None}, "1\n7\t1\t0007.PNG\t0\t0007_label.PNG\n")
    with pytest.raises(FormatError) as info:
        convert(root, tmp_path / "ds", "dagm")
    message = str(info.value)
    assert str(root / "Train" / "Label" / "0007_label.PNG") in message and "line 2" in message
    assert "Labels.txt" in message and "\n" not in message


def test_row_listing_a_missing_image_is_a_format_error(tmp_path: Path) -> None:
    root = tmp_path / "Class4"
    write_split(root / "Test", {"0001.PNG": None}, "1\n1\t0\t0001.PNG\t0\t0\n2\t0\t0002.PNG\t0\t0\n")
    with pytest.raises(FormatError, match=r"Labels\.txt: line 3 lists '0002\.PNG'"):
        list(DAGMReader(root).samples())


def test_malformed_labels_line_is_a_format_error(tmp_path: Path) -> None:
    root = tmp_path / "Class5"
    write_split(root / "Train", {"0001.PNG": None}, "1\n1\t0\t0001.PNG\t0\t0\ngarbage here\n")
    with pytest.raises(FormatError, match=r"Labels\.txt: line 3 is not"):
        list(DAGMReader(root).samples())


def test_folder_without_dagm_classes_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "Class1").mkdir(parents=True)  # no Train/Test
    with pytest.raises(FormatError, match="no DAGM class folder"):
        open_reader("dagm", tmp_path / "empty")
    empty_class = tmp_path / "hollow" / "Class1"
    (empty_class / "Train").mkdir(parents=True)
    with pytest.raises(FormatError, match="no dagm images found"):
        convert(tmp_path / "hollow", tmp_path / "ds", "dagm")
    assert not (tmp_path / "ds").exists()


def test_reopened_folder_keeps_class_map(dagm: Path, tmp_path: Path) -> None:
    convert(dagm, tmp_path / "ds", "dagm")
    folder = DSFolder.open(tmp_path / "ds")
    assert folder.objects["dagm"].names == ("background", "Class1", "Class2", "Class10")
    assert len(folder.samples(split="test")) == 3
