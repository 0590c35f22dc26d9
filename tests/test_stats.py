"""Statistics of a hand-made DS folder whose numbers are computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.stats import compute_stats, stats_table
from defectspectrum.io import save_png_atomic


def _image(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def build(root: Path) -> DSFolder:
    """pill (crack=1, color=2) with four samples, wood (hole=1) with one.

    pill/a 40x50: crack 2x2 + crack 3x3 (separate), color 5x4    -> train
    pill/b 40x50: crack of two diagonal pixels (one 8-region)    -> val
    pill/c 40x50: empty, good                                    -> val
    pill/d 30x20: color 10 px, synthetic                         -> train
    wood/e 16x16: hole 1 px, no split
    """
    folder = DSFolder.create(root, "tiny", {"pill": ["crack", "color"], "wood": ["hole"]})
    a = np.zeros((40, 50), np.uint8)
    a[1:3, 1:3] = 1
    a[10:13, 20:23] = 1
    a[30:35, 40:44] = 2
    folder.add_sample("pill", "a", _image((40, 50), 1), a, split="train", defect_type="crack")
    b = np.zeros((40, 50), np.uint8)
    b[5, 5] = b[6, 6] = 1
    folder.add_sample("pill", "b", _image((40, 50), 2), b, split="val", defect_type="crack")
    folder.add_sample("pill", "c", _image((40, 50), 3), np.zeros((40, 50), np.uint8), split="val", defect_type="good")
    d = np.zeros((30, 20), np.uint8)
    d[0:2, 0:5] = 2
    folder.add_sample("pill", "d", _image((30, 20), 4), d, split="train", synthetic=True, defect_type="color")
    e = np.zeros((16, 16), np.uint8)
    e[8, 8] = 1
    folder.add_sample("wood", "e", _image((16, 16), 5), e, defect_type="hole")
    folder.save()
    return folder


def test_object_counts_splits_and_sizes(tmp_path: Path) -> None:
    stats = compute_stats(build(tmp_path / "ds"))
    assert stats.samples == 5
    assert stats.splits == {"train": 2, "unassigned": 1, "val": 2}
    pill = stats.objects["pill"]
    assert (pill.samples, pill.defective, pill.defect_free, pill.synthetic) == (4, 3, 1, 1)
    assert pill.splits == {"train": 2, "val": 2}
    assert pill.defect_types == {"color": 1, "crack": 2, "good": 1}
    assert pill.image_sizes == [{"height": 40, "width": 50, "count": 3}, {"height": 30, "width": 20, "count": 1}]
    assert pill.min_size == [30, 20] and pill.max_size == [40, 50]
    assert stats.objects["wood"].splits == {"unassigned": 1}


def test_class_regions_and_area_percentiles(tmp_path: Path) -> None:
    pill = compute_stats(build(tmp_path / "ds")).objects["pill"]
    crack, color = pill.classes
    assert (crack.name, crack.images, crack.regions, crack.pixels) == ("crack", 2, 3, 15)
    # areas 2, 4, 9: numpy linear percentiles
    assert crack.area_px == {"p5": 2.2, "p25": 3.0, "p50": 4.0, "p75": 6.5, "p95": 8.5}
    assert crack.area_pct["p50"] == pytest.approx(4 / 2000 * 100)
    assert (color.images, color.regions) == (2, 2)
    # 20 px of 2000 = 1 %, 10 px of 600 = 1.667 %
    assert color.area_pct["p50"] == pytest.approx((1.0 + 10 / 6) / 2, abs=1e-4)
    assert color.area_px["p50"] == 15.0


def test_class_without_regions_has_no_percentiles(tmp_path: Path) -> None:
    folder = DSFolder.create(tmp_path / "ds", "x", {"pill": ["crack", "color"]})
    mask = np.zeros((8, 8), np.uint8)
    mask[2, 2] = 1
    folder.add_sample("pill", "a", _image((8, 8), 0), mask, defect_type="crack")
    color = compute_stats(folder).objects["pill"].classes[1]
    assert (color.images, color.regions, color.area_px, color.area_pct) == (0, 0, None, None)


def test_unreadable_and_out_of_map_masks_are_reported(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    (folder.root / folder["pill/b"].mask).write_bytes(b"not a png")
    bad = np.zeros((40, 50), np.uint8)
    bad[0, 0] = 7
    save_png_atomic(bad, folder.root / folder["pill/a"].mask)
    stats = compute_stats(folder)
    pill = stats.objects["pill"]
    assert stats.unreadable == ["pill/b"]
    assert pill.out_of_map == {7: 1}
    assert (pill.samples, pill.defective, pill.defect_free) == (4, 2, 1)
    assert pill.classes[0].images == 0  # crack now nowhere readable
    text = _render(stats)
    assert "outside the class map" in text and "could not be read" in text


def _render(stats: object) -> str:
    console = Console(record=True, width=200)
    console.print(stats_table(stats))  # type: ignore[arg-type]
    return console.export_text()


def test_json_and_table(tmp_path: Path) -> None:
    stats = compute_stats(build(tmp_path / "ds"))
    data = json.loads(json.dumps(stats.to_json()))
    assert data["objects"]["pill"]["classes"][0]["regions"] == 3
    assert data["objects"]["wood"]["classes"][0]["area_px"]["p50"] == 1.0
    text = _render(stats)
    assert "crack" in text and "hole" in text and "40x50" in text


def test_cli_stats_writes_json(tmp_path: Path) -> None:
    build(tmp_path / "ds")
    result = CliRunner().invoke(app, ["data", "stats", str(tmp_path / "ds"), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["samples"] == 5 and data["objects"]["pill"]["defective"] == 3


def test_workers_give_the_same_statistics(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    (folder.root / folder["pill/b"].mask).write_bytes(b"not a png")
    one = compute_stats(folder).to_json()
    assert one["unreadable"] == ["pill/b"] and one["objects"]["pill"]["classes"][0]["regions"] == 2
    assert compute_stats(folder, workers=3).to_json() == one
    result = CliRunner().invoke(app, ["data", "stats", str(folder.root), "-j", "2", "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text()) == one
