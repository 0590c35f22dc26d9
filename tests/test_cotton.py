"""Cotton-Fabric reader: class = defect name ending the file name, binary masks."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.convert import convert
from defectspectrum.data.formats import detect_format, open_reader
from defectspectrum.data.formats.cotton import CottonReader, defect_token
from defectspectrum.errors import FormatError

H, W = 16, 24


def binary(rows: slice, cols: slice, high: int = 255) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[rows, cols] = high
    return mask


def save_image(path: Path, value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), value, dtype=np.uint8)).save(path)


def save_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)


MASKS = {
    "00960_0001_Slubs": binary(slice(2, 6), slice(3, 9)),
    "00975_0025_End-Out": binary(slice(0, 16), slice(10, 12)),
    "00980_0002_Knots": binary(slice(8, 12), slice(1, 5), high=1),  # a 0/1 mask
    "00981_0003_Knots": binary(slice(12, 14), slice(20, 23)),
}


@pytest.fixture
def cotton(tmp_path: Path) -> Path:
    root = tmp_path / "Cotton-Fabric"
    for stem, mask in MASKS.items():
        save_image(root / "image" / f"{stem}.jpg")
        save_mask(root / "mask" / f"{stem}_mask.png", mask)
    save_image(root / "image" / "00990_0004_Good.jpg")
    return root


def test_defect_token() -> None:
    assert defect_token("00960_0001_Slubs") == "Slubs"
    assert defect_token("00975_0025_End-Out") == "End-Out"
    assert defect_token("12_Broken Pick") == "Broken Pick"
    for stem in ("Slubs_0001", "In_12", "exp1_num_4727", "000", "00960_0001_Slubs_mask2", "00960_0001_"):
        assert defect_token(stem) is None, stem


def test_class_map_is_the_sorted_defect_names(cotton: Path) -> None:
    assert CottonReader(cotton).class_maps() == {"cotton_fabric": ClassMap(("background", "End-Out", "Knots", "Slubs"))}


def test_convert_puts_each_mask_in_its_class(cotton: Path, tmp_path: Path) -> None:
    folder = convert(cotton, tmp_path / "ds", "cotton")
    assert sorted(s.name for s in folder) == sorted([*MASKS, "00990_0004_Good"])
    types = {s.name: s.defect_type for s in folder}
    assert types == {"00960_0001_Slubs": "Slubs", "00975_0025_End-Out": "End-Out", "00980_0002_Knots": "Knots",
                     "00981_0003_Knots": "Knots", "00990_0004_Good": "good"}
    assert all(s.split is None for s in folder)
    index = {"Slubs": 3, "End-Out": 1, "Knots": 2}
    for stem, source in MASKS.items():
        mask = folder.load_mask(folder[f"cotton_fabric/{stem}"])
        assert np.array_equal(mask, (source > 0).astype(np.uint8) * index[types[stem]]), stem
    assert not folder.load_mask(folder["cotton_fabric/00990_0004_Good"]).any()
    assert folder["cotton_fabric/00960_0001_Slubs"].image.endswith(".jpg")  # JPEG kept as is


def test_masks_beside_the_images(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    save_image(root / "00001_0001_Holes.png")
    save_mask(root / "00001_0001_Holes_mask.png", binary(slice(1, 3), slice(1, 3)))
    assert CottonReader.detect(root)
    folder = convert(root, tmp_path / "ds", "cotton", object_name="fabric")
    assert [s.id for s in folder] == ["fabric/00001_0001_Holes"]
    assert np.array_equal(folder.load_mask(folder["fabric/00001_0001_Holes"]), binary(slice(1, 3), slice(1, 3), 1))


def test_masks_in_a_sibling_masks_folder(tmp_path: Path) -> None:
    root = tmp_path / "sib"
    save_image(root / "images" / "00002_0001_Stains.jpg")
    save_mask(root / "masks" / "00002_0001_Stains_mask.png", binary(slice(4, 9), slice(0, 2)))
    folder = convert(root, tmp_path / "ds", "cotton")
    mask = folder.load_mask(folder["cotton_fabric/00002_0001_Stains"])
    assert np.array_equal(mask, binary(slice(4, 9), slice(0, 2), 1))


def test_reader_pickles(cotton: Path) -> None:
    reader = CottonReader(cotton)
    item = next(s for s in reader.samples() if s.mask is not None)
    copy = pickle.loads(pickle.dumps(reader))
    assert np.array_equal(copy.load_mask(pickle.loads(pickle.dumps(item)), (H, W)), reader.load_mask(item, (H, W)))


def test_detect_claims_only_its_layout(cotton: Path, tmp_path: Path) -> None:
    assert CottonReader.detect(cotton)
    assert detect_format(cotton) == "cotton"
    # the DS release's Cotton-Fabric: same names but class-index masks beside rbg_mask/
    release = tmp_path / "DS-Cotton-Fabric"
    save_image(release / "image" / "00960_0001_Slubs.jpg")
    save_mask(release / "mask" / "00960_0001_Slubs_mask.png", binary(slice(0, 2), slice(0, 2), high=2))
    save_image(release / "rbg_mask" / "00960_0001_Slubs_rgb_mask.png")
    assert not CottonReader.detect(release)
    # other names: SD-saliency-900 prefixes, MVTec numbers
    sd = tmp_path / "sd"
    save_image(sd / "image" / "In_12.bmp")
    save_mask(sd / "mask" / "In_12_mask.png", binary(slice(0, 2), slice(0, 2)))
    assert not CottonReader.detect(sd)
    mixed = tmp_path / "mixed"
    save_image(mixed / "image" / "00960_0001_Slubs.jpg")
    save_image(mixed / "image" / "000.png")
    save_mask(mixed / "mask" / "00960_0001_Slubs_mask.png", binary(slice(0, 2), slice(0, 2)))
    assert not CottonReader.detect(mixed)
    no_masks = tmp_path / "no_masks"
    save_image(no_masks / "image" / "00960_0001_Slubs.jpg")
    assert not CottonReader.detect(no_masks)


def test_missing_mask_of_a_defect_image_is_a_format_error(cotton: Path, tmp_path: Path) -> None:
    (cotton / "mask" / "00975_0025_End-Out_mask.png").unlink()
    with pytest.raises(FormatError) as info:
        convert(cotton, tmp_path / "ds", "cotton")
    message = str(info.value)
    assert message.startswith(str(cotton / "image" / "00975_0025_End-Out.jpg"))
    assert "00975_0025_End-Out_mask.png is missing" in message and "\n" not in message
    assert not (tmp_path / "ds").exists()


def test_class_index_mask_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "release_like"
    save_image(root / "image" / "00960_0001_Slubs.jpg")
    save_mask(root / "mask" / "00960_0001_Slubs_mask.png", binary(slice(0, 2), slice(0, 2), high=2))
    with pytest.raises(FormatError, match="class-index mask.*--from ds-release"):
        convert(root, tmp_path / "ds", "cotton")


def test_badly_named_image_is_a_format_error(cotton: Path) -> None:
    save_image(cotton / "image" / "scan_final.jpg")
    with pytest.raises(FormatError, match=r"scan_final\.jpg: the name does not end in a defect name"):
        open_reader("cotton", cotton)


def test_empty_folder_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "image").mkdir(parents=True)
    with pytest.raises(FormatError, match="no cotton images found"):
        open_reader("cotton", tmp_path / "empty")
