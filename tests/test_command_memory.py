"""Memory a sample that `data validate`, `data stats` and the exports hold beyond the open folder
(issue 17: at most ~0.5 KiB a sample): the growth of the tracemalloc peak from 200 to 1200 tiny
samples, divided by the 1000 samples between, so without timing anything. Measured when written:
validate ~220 bytes (529 before: a Python digest, lists per image, a dict of digests), stats ~40
(100: region areas as Python lists), COCO ~170 (231: name lists, a 1 MiB copy buffer), mmseg ~290
(591: every sample's paths planned up front); each test allows some room."""

from __future__ import annotations

import shutil
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import ModuleTmp
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.export import export
from defectspectrum.data.stats import compute_stats
from defectspectrum.data.validate import validate

SIZES = (200, 1200)


def _folder(root: Path, count: int) -> DSFolder:
    """`count` 16 x 16 samples of distinct noise; two of three defective (three regions of two classes)."""
    folder = DSFolder.create(root, "memory", {"pill": ["crack", "color"]})
    rng = np.random.default_rng(count)
    for index in range(count):
        mask = np.zeros((16, 16), np.uint8)
        if index % 3:
            mask[2:5, 2:5] = 1
            mask[9:12, 9:14] = 2
            mask[13:15, 1:3] = 1
        folder.add_sample("pill", f"s{index:05d}", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), mask,
                          split="val" if index % 5 == 0 else "train", defect_type="crack" if index % 3 else "good")
    folder.save()
    return DSFolder.open(root)


@pytest.fixture(scope="module")
def folders(module_tmp: ModuleTmp) -> dict[int, DSFolder]:
    root = module_tmp("memory")
    return {count: _folder(root / f"ds{count}", count) for count in SIZES}


def _bytes_a_sample(folders: dict[int, DSFolder], run: Callable[[DSFolder, str], object]) -> float:
    """The growth of `run`'s tracemalloc peak per sample between the two folders (opened before: the
    folder's own index is not counted), after a first run for first-time imports and caches."""
    run(folders[SIZES[0]], "warm-up")
    peaks = []
    for count in SIZES:
        tracemalloc.start()
        try:
            run(folders[count], str(count))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return (peaks[1] - peaks[0]) / (SIZES[1] - SIZES[0])


def test_open_folder_holds_under_400_bytes_a_sample(folders: dict[int, DSFolder]) -> None:
    """The open folder itself: the Sample (its strings and slots) and its place in the id index;
    378 bytes for these short paths when written (442 while each sample had an empty `extra` dict of its own)."""
    per_sample = _bytes_a_sample(folders, lambda folder, _: DSFolder.open(folder.root))
    assert per_sample < 400, f"{per_sample:.0f} bytes a sample"


def test_validate_holds_little_memory_a_sample(folders: dict[int, DSFolder]) -> None:
    def run(folder: DSFolder, _: str) -> None:
        assert validate(folder).ok

    per_sample = _bytes_a_sample(folders, run)
    assert per_sample < 384, f"{per_sample:.0f} bytes a sample"


def test_stats_holds_little_memory_a_sample(folders: dict[int, DSFolder]) -> None:
    def run(folder: DSFolder, _: str) -> None:
        defective = sum(1 for index in range(len(folder)) if index % 3)
        assert compute_stats(folder).objects["pill"].classes[0].regions == 2 * defective

    per_sample = _bytes_a_sample(folders, run)
    assert per_sample < 80, f"{per_sample:.0f} bytes a sample"


@pytest.mark.parametrize(("to", "bound"), [("coco", 320), ("mmseg", 448)])
def test_export_holds_little_memory_a_sample(folders: dict[int, DSFolder], tmp_path: Path, to: str,
                                             bound: int) -> None:
    def run(folder: DSFolder, name: str) -> None:
        dst = tmp_path / name
        export(folder, dst, to)
        shutil.rmtree(dst)

    per_sample = _bytes_a_sample(folders, run)
    assert per_sample < bound, f"{per_sample:.0f} bytes a sample"
