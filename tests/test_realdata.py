"""Convert the three real data sets in ../shared/data and check counts, classes and mask pixels exactly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ModuleTmp, real_dataset
from defectspectrum.cli import app
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import detect_format
from defectspectrum.io import binarize, read_mask_pixels, read_rgb

pytestmark = pytest.mark.realdata

MVTEC, MAGNETIC, SD900 = "mvtec_ad_subset", "magnetic_tile", "sd_saliency_900"
MT_CLASSES = ("background", "Blowhole", "Break", "Crack", "Fray", "Uneven")
SD_CLASSES = ("background", "inclusion", "patches", "scratches")


@pytest.fixture(scope="module")
def mvtec_ds(shared_data: Path, module_tmp: ModuleTmp) -> DSFolder:
    return convert(real_dataset(shared_data, MVTEC), module_tmp("real") / "mvtec", "auto")


@pytest.fixture(scope="module")
def magnetic_ds(shared_data: Path, module_tmp: ModuleTmp) -> DSFolder:
    return convert(real_dataset(shared_data, MAGNETIC), module_tmp("real") / "mt", "auto")


@pytest.fixture(scope="module")
def sd900_ds(shared_data: Path, module_tmp: ModuleTmp) -> DSFolder:
    """Converted through the CLI with two worker processes (exercises the process pool)."""
    dst = module_tmp("real") / "sd900"
    result = CliRunner().invoke(app, ["data", "convert", str(real_dataset(shared_data, SD900)), str(dst),
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "900 samples (900 with defects, 0 defect-free) in 1 object(s)" in " ".join(result.output.split())
    return DSFolder.open(dst)


def _mask_values(folder: DSFolder) -> dict[str, set[int]]:
    return {s.id: set(np.unique(folder.load_mask(s)).tolist()) for s in folder}


def _assert_masks_match_classes(folder: DSFolder, values: dict[str, set[int]]) -> None:
    """Every defective sample's mask holds only background and its own class index."""
    for sample in folder:
        if sample.is_good:
            assert values[sample.id] == {0}, sample.id
        else:
            expected = folder.objects[sample.object].index(sample.defect_type)
            assert values[sample.id] <= {0, expected}, (sample.id, values[sample.id], expected)


def _assert_exact(folder: DSFolder, sample_id: str, source_mask: Path, index: int) -> None:
    """The DS mask equals the source's binary mask (threshold 128) times the class index, pixel for pixel."""
    expected = binarize(read_mask_pixels(source_mask)).astype(np.uint8) * index
    got = folder.load_mask(folder[sample_id])
    assert expected.any()
    np.testing.assert_array_equal(got, expected)


def test_auto_detects_the_three_layouts(shared_data: Path) -> None:
    assert detect_format(real_dataset(shared_data, MVTEC)) == "mvtec"
    assert detect_format(real_dataset(shared_data, MAGNETIC)) == "magnetic-tile"
    assert detect_format(real_dataset(shared_data, SD900)) == "sd900"


@pytest.mark.slow
def test_mvtec_subset_counts_and_classes(mvtec_ds: DSFolder, shared_data: Path) -> None:
    source = real_dataset(shared_data, MVTEC)
    assert mvtec_ds.meta["source"]["format"] == "mvtec"
    assert len(mvtec_ds) == 219
    assert all(not s.is_good for s in mvtec_ds)
    assert len(mvtec_ds.objects) == 15
    assert sum(len(cm.defects) for cm in mvtec_ds.objects.values()) == 73
    assert len(mvtec_ds.global_classes()) == 74
    per_type = Counter((s.object, s.defect_type) for s in mvtec_ds)
    assert len(per_type) == 73 and set(per_type.values()) == {3}
    for object_name, class_map in mvtec_ds.objects.items():
        folders = sorted(p.name for p in (source / object_name / "test").iterdir() if p.is_dir())
        assert class_map.defects == tuple(folders)
    values = _mask_values(mvtec_ds)
    _assert_masks_match_classes(mvtec_ds, values)
    assert all(len(v) == 2 for v in values.values())  # every MVTec test mask has a defect


@pytest.mark.slow
def test_mvtec_subset_exact_pixels(mvtec_ds: DSFolder, shared_data: Path) -> None:
    source = real_dataset(shared_data, MVTEC)
    bottle, screw = mvtec_ds.objects["bottle"], mvtec_ds.objects["screw"]
    _assert_exact(mvtec_ds, "bottle/contamination_000", source / "bottle/ground_truth/contamination/000_mask.png",
                  bottle.index("contamination"))
    _assert_exact(mvtec_ds, "screw/thread_top_" + _first_stem(source / "screw/test/thread_top"),
                  source / f"screw/ground_truth/thread_top/{_first_stem(source / 'screw/test/thread_top')}_mask.png",
                  screw.index("thread_top"))
    sample = mvtec_ds["bottle/contamination_000"]
    assert mvtec_ds.image_path(sample).read_bytes() == (source / "bottle/test/contamination/000.png").read_bytes()


def _first_stem(folder: Path) -> str:
    return sorted(p.stem for p in folder.iterdir())[0]


@pytest.mark.slow
def test_magnetic_tile_counts_and_classes(magnetic_ds: DSFolder) -> None:
    assert magnetic_ds.meta["source"]["format"] == "magnetic-tile"
    assert len(magnetic_ds) == 1344
    assert list(magnetic_ds.objects) == ["magnetic_tile"]
    assert magnetic_ds.objects["magnetic_tile"].names == MT_CLASSES
    assert Counter(s.defect_type for s in magnetic_ds) == {
        "good": 952, "Blowhole": 115, "Break": 85, "Crack": 57, "Fray": 32, "Uneven": 103}
    assert sum(1 for s in magnetic_ds if s.defect_type != "good") == 392
    values = _mask_values(magnetic_ds)
    _assert_masks_match_classes(magnetic_ds, values)
    empty = sorted(s.defect_type for s in magnetic_ds if not s.is_good and values[s.id] == {0})
    assert empty == ["Uneven"] * 4  # the four empty Uneven masks of the source are kept


@pytest.mark.slow
def test_magnetic_tile_exact_pixels(magnetic_ds: DSFolder, shared_data: Path) -> None:
    source = real_dataset(shared_data, MAGNETIC)
    for class_name in MT_CLASSES[1:]:
        imgs = source / f"MT_{class_name}" / "Imgs"
        stem = sorted(p.stem for p in imgs.glob("*.jpg") if read_mask_pixels(imgs / f"{p.stem}.png").max() >= 128)[0]
        sample_id = f"magnetic_tile/{class_name}_{stem}"
        _assert_exact(magnetic_ds, sample_id, imgs / f"{stem}.png", MT_CLASSES.index(class_name))
        # anti-aliased source edges: the DS mask is binary per class, never grey
        assert set(np.unique(read_mask_pixels(imgs / f"{stem}.png")).tolist()) - {0, 255}
        assert magnetic_ds.image_path(magnetic_ds[sample_id]).read_bytes() == (imgs / f"{stem}.jpg").read_bytes()


@pytest.mark.slow
def test_sd900_counts_classes_and_pixels(sd900_ds: DSFolder, shared_data: Path) -> None:
    source = real_dataset(shared_data, SD900)
    assert sd900_ds.meta["source"]["format"] == "sd900"
    assert len(sd900_ds) == 900
    assert sd900_ds.objects["sd900"].names == SD_CLASSES
    assert Counter(s.defect_type for s in sd900_ds) == {"inclusion": 300, "patches": 300, "scratches": 300}
    values = _mask_values(sd900_ds)
    _assert_masks_match_classes(sd900_ds, values)
    present = Counter(max(v) for v in values.values())
    assert present == {1: 300, 2: 300, 3: 300}  # every SD-900 mask has a defect of its prefix's class
    for stem, index in (("In_1", 1), ("Pa_17", 2), ("Sc_300", 3)):
        _assert_exact(sd900_ds, f"sd900/{stem}", source / "Ground truth" / f"{stem}.png", index)
        sample = sd900_ds[f"sd900/{stem}"]
        assert sample.image.endswith(".bmp")  # BMP kept byte for byte, like PNG and JPEG
        assert sd900_ds.image_path(sample).read_bytes() == (source / "Source Images" / f"{stem}.bmp").read_bytes()
        np.testing.assert_array_equal(sd900_ds.load_image(sample), read_rgb(source / "Source Images" / f"{stem}.bmp"))
