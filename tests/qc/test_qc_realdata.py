"""QC on real Magnetic-tile masks: verdicts and counts recomputed independently with OpenCV, the
defect-free and the four empty `Uneven` images benign, and a degraded prediction scored exactly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_helpers import invoke
from conftest import ModuleTmp, real_dataset
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.splits import assign_splits
from defectspectrum.qc.rules import load_rules
from defectspectrum.qc.simulate import measure_pairs, simulate

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

RULES = Path(__file__).resolve().parents[2] / "configs" / "qc" / "magnetic_tile.yaml"
CLASSES = ("background", "Blowhole", "Break", "Crack", "Fray", "Uneven")


def expected_defective(mask: np.ndarray) -> bool:
    """configs/qc/magnetic_tile.yaml written out by hand: specks under 10 px ignored; Break and Crack
    forbidden; one Blowhole of at most 150 px; Fray and Uneven at most 20000 px in all."""
    areas = {}
    for index in range(1, len(CLASSES)):
        stats = cv2.connectedComponentsWithStats((mask == index).astype(np.uint8), connectivity=8)[2]
        found = stats[1:, cv2.CC_STAT_AREA]
        areas[CLASSES[index]] = found[found >= 10]
    blowhole = areas["Blowhole"]
    return bool(areas["Break"].size or areas["Crack"].size or (blowhole > 150).any() or blowhole.size > 1
                or areas["Fray"].sum() > 20000 or areas["Uneven"].sum() > 20000)


def degrade(mask: np.ndarray, index: int) -> np.ndarray:
    """A plausible model error: every region grown by 3 px on odd samples, lost on every fifth."""
    if index % 5 == 0:
        return np.zeros_like(mask)
    if index % 2:
        return cv2.dilate(mask, np.ones((7, 7), np.uint8))
    return mask


@pytest.fixture(scope="module")
def magnetic(shared_data: Path, module_tmp: ModuleTmp) -> tuple[DSFolder, DSFolder]:
    root = module_tmp("qcreal")
    truth = convert(real_dataset(shared_data, "magnetic_tile"), root / "mt", "auto")
    assign_splits(truth, rule="random", val_fraction=0.2, seed=0)
    truth.save()
    pred = DSFolder.create(root / "pred", "pred", truth.objects)
    for i, sample in enumerate(truth.samples(split="val")):
        pred.add_sample(sample.object, sample.name, truth.image_path(sample), degrade(truth.load_mask(sample), i),
                        split="val")
    pred.save()
    return truth, pred


def test_truth_against_itself(magnetic: tuple[DSFolder, DSFolder]) -> None:
    truth, _ = magnetic
    policies = load_rules(RULES).policies(truth.objects, str(truth.root))
    result = simulate(measure_pairs(truth, truth), policies)
    counts = result.counts()
    expected = sum(expected_defective(truth.load_mask(sample)) for sample in truth)
    assert counts.defective == expected and 0 < expected < 392  # some defective tiles are acceptable
    assert (counts.recall, counts.fpr, counts.fn, counts.fp) == (100.0, 0.0, 0, 0)
    good = {s.id for s in truth if s.is_good or not truth.load_mask(s).any()}
    assert len(good) == 952 + 4  # MT_Free and the four empty Uneven masks
    assert all(not image.truth.defective for image in result.images if image.sample.id in good)


def test_a_degraded_prediction_is_scored_exactly(magnetic: tuple[DSFolder, DSFolder], tmp_path: Path) -> None:
    truth, pred = magnetic
    result = invoke("qc", "simulate", "-r", RULES, "-t", truth.root, "-p", pred.root, "--split", "val",
                    "--json", tmp_path / "qc.json", "--report", tmp_path / "qc.html")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "qc.json").read_text())
    want = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
    for sample in truth.samples(split="val"):
        t = expected_defective(truth.load_mask(sample))
        p = expected_defective(pred.load_mask(pred[sample.id]))
        want[{(True, True): "tp", (True, False): "fn", (False, True): "fp", (False, False): "tn"}[(t, p)]] += 1
    assert {key: data["counts"][key] for key in want} == want
    assert want["fn"] > 0 and want["fp"] > 0  # the degradation both misses and over-draws
    assert (tmp_path / "qc.html").is_file()
