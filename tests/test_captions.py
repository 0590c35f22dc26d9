"""Template captions from masks: classes, counts, sizes, positions; folder captioning keeps existing captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.captions import (
    caption_folder,
    object_phrase,
    plural,
    position_word,
    size_word,
    template_caption,
)
from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import DSFolder

PILL = ClassMap.from_defects(["crack", "color", "scratch"])
H = W = 90  # 8100 px: small < 20.25 px, medium < 121.5 px, large otherwise


def empty() -> np.ndarray:
    return np.zeros((H, W), np.uint8)


def test_defect_free() -> None:
    assert template_caption("wood", ClassMap.from_defects(["hole"]), empty()) == "A defect-free wood surface."
    assert template_caption("metal_nut", PILL, empty()) == "A defect-free metal nut."


def test_two_classes_sizes_and_positions() -> None:
    mask = empty()
    mask[5:7, 5:7] = 1  # crack, 4 px, top-left
    mask[30:60, 30:60] = 2  # color, 900 px (11 %), center
    assert template_caption("pill", PILL, mask) == (
        "A pill with 2 defects: a large color stain near the center and a small crack in the top-left.")


def test_single_medium_region() -> None:
    mask = empty()
    mask[40:45, 70:78] = 3  # 40 px = 0.49 %: medium, centroid (73.5, 42) -> right
    assert template_caption("metal_nut", PILL, mask) == "A metal nut with a medium scratch on the right."


def test_regions_of_one_class_size_and_place_are_counted_together() -> None:
    mask = empty()
    mask[2, 2] = mask[2, 10] = mask[10, 2] = 1  # three 1-px cracks, top-left
    mask[80, 45] = mask[81, 46] = 1  # diagonal pair: one 8-connected region, bottom
    mask[85:88, 80:85] = 3  # 15 px scratch, bottom-right
    assert template_caption("capsule", PILL, mask) == (
        "A capsule with 5 defects: a small scratch in the bottom-right, a small crack at the bottom "
        "and 3 small cracks in the top-left.")


def test_long_lists_end_with_a_count() -> None:
    mask = empty()
    cells = [(5, 5), (5, 45), (5, 85), (45, 5), (45, 85), (85, 5)]  # six grid cells, one crack each
    for area, (y, x) in enumerate(cells, start=1):
        mask[y, x - area // 2: x - area // 2 + area] = 1
    caption = template_caption("pill", PILL, mask)
    assert caption.startswith("A pill with 6 defects: a small crack in the bottom-left, a small crack on the right, ")
    assert caption.endswith(" and 2 more.")


def test_unknown_index_does_not_crash() -> None:
    mask = empty()
    mask[40:50, 40:50] = 9
    assert template_caption("pill", PILL, mask) == "A pill with a medium unknown defect 9 near the center."


@pytest.mark.parametrize(("fraction", "word"), [(0.0, "small"), (0.0024, "small"), (0.0025, "medium"),
                                                (0.0149, "medium"), (0.015, "large"), (0.5, "large")])
def test_size_thresholds(fraction: float, word: str) -> None:
    assert size_word(fraction) == word


def test_positions_and_words() -> None:
    assert position_word(0, 0, 90, 90) == "top-left"
    assert position_word(45, 45, 90, 90) == "center"
    assert position_word(89.9, 89.9, 90, 90) == "bottom-right"
    assert position_word(29.9, 60, 90, 90) == "bottom-left"
    assert position_word(30, 10, 90, 90) == "top"
    assert [plural(w) for w in ("crack", "scratch", "color stain", "broken teeth")] == [
        "cracks", "scratches", "color stains", "broken teeth"]
    assert object_phrase("Capacitor") == "capacitor" and object_phrase("carpet") == "carpet surface"


def _folder(root: Path) -> DSFolder:
    folder = DSFolder.create(root, "c", {"pill": list(PILL.defects)})
    mask = empty()
    mask[30:60, 30:60] = 2
    image = np.full((H, W, 3), 100, np.uint8)
    folder.add_sample("pill", "a", image, mask, defect_type="color")
    folder.add_sample("pill", "b", image, empty(), defect_type="good")
    folder.add_sample("pill", "c", image, mask, defect_type="color", caption="Expert caption from captions.xlsx.")
    folder.save()
    return folder


def test_caption_folder_keeps_existing_captions(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "ds")
    assert caption_folder(folder) == 2
    assert folder["pill/a"].caption == "A pill with a large color stain near the center."
    assert folder["pill/b"].caption == "A defect-free pill."
    assert folder["pill/c"].caption == "Expert caption from captions.xlsx."
    assert caption_folder(folder) == 0
    assert caption_folder(folder, replace_existing=True) == 3
    assert folder["pill/c"].caption == "A pill with a large color stain near the center."


def test_cli_caption_saves(tmp_path: Path) -> None:
    _folder(tmp_path / "ds")
    result = CliRunner().invoke(app, ["data", "caption", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert "captioned 2 of 3" in result.output
    reopened = DSFolder.open(tmp_path / "ds")
    assert reopened["pill/b"].caption == "A defect-free pill."
    assert reopened["pill/c"].caption == "Expert caption from captions.xlsx."
