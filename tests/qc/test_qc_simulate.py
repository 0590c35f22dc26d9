"""Truth against prediction: pairing checks, outcomes, rates per object, sweep and calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qc_helpers import blank, rect, write_folder

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.errors import InputError
from defectspectrum.qc.rules import Rules
from defectspectrum.qc.simulate import measure_pairs, pair_samples, simulate
from defectspectrum.qc.sweep import Knob, calibrate, sweep

RULES = Rules.model_validate({"objects": {"plate": {"forbidden": ["hole"], "limits": {"spot": {"max_area": 10}}}}})


def hole() -> np.ndarray:
    return rect(blank(), 3, 4, 4, 2, 2)


def spot(side: int) -> np.ndarray:
    return rect(blank(), 2, 8, 8, side, side)


TRUTH = {"a": hole(), "b": hole(), "c": spot(3), "d": blank(), "e": spot(4), "f": blank()}
PRED = {"a": hole(), "b": blank(), "c": spot(4), "d": blank(), "e": spot(4), "f": blank()}
EXPECTED = {"a": "TP", "b": "FN", "c": "FP", "d": "TN", "e": "TP", "f": "TN"}


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[DSFolder, DSFolder]:
    return write_folder(tmp_path / "truth", TRUTH), write_folder(tmp_path / "pred", PRED)


def test_outcomes_and_rates(pair: tuple[DSFolder, DSFolder]) -> None:
    truth, pred = pair
    result = simulate(measure_pairs(truth, pred), RULES.policies(truth.objects))
    assert {image.sample.name: image.outcome for image in result.images} == EXPECTED
    data = result.to_json()
    assert data["counts"] == {"tp": 2, "fn": 1, "fp": 1, "tn": 2, "defective": 3, "benign": 3}
    assert data["recall"] == pytest.approx(200 / 3) and data["fpr"] == pytest.approx(100 / 3)
    assert data["precision"] == pytest.approx(200 / 3)
    assert data["objects"]["plate"]["counts"] == data["counts"]
    c = next(image for image in data["images"] if image["id"] == "plate/c")
    assert c["truth"] == {"verdict": "benign", "reasons": []}
    assert c["pred"]["reasons"][0]["rule"] == "max_area" and c["pred"]["reasons"][0]["measured"] == 16
    rows = result.csv_rows()
    assert len(rows) == 6 and rows[2][:6] == ["plate/c", "plate", "", "benign", "defective", "FP"]
    assert rows[2][7] == "spot: a region of 16 px > max_area 10 px"


def test_the_prediction_must_hold_the_same_samples(tmp_path: Path, pair: tuple[DSFolder, DSFolder]) -> None:
    truth, _ = pair
    fewer = write_folder(tmp_path / "fewer", {k: v for k, v in PRED.items() if k not in "ab"} | {"z": blank()})
    with pytest.raises(InputError) as info:
        pair_samples(truth, fewer)
    message = str(info.value)
    assert "2 sample(s) missing (plate/a, plate/b)" in message and "1 extra (plate/z)" in message


def test_a_prediction_of_one_split_gets_a_hint(tmp_path: Path) -> None:
    splits = {"a": "train", "b": "val", "c": "val", "d": "train", "e": "val", "f": "val"}
    truth = write_folder(tmp_path / "truth", TRUTH, splits=splits)
    val = write_folder(tmp_path / "pred", {k: PRED[k] for k in PRED if splits[k] == "val"},
                       splits=dict.fromkeys(PRED, "val"))
    with pytest.raises(InputError, match="pass --split val"):
        pair_samples(truth, val)
    assert [s.name for s, _ in pair_samples(truth, val, split="val")] == ["b", "c", "e", "f"]


def test_class_maps_must_agree(tmp_path: Path, pair: tuple[DSFolder, DSFolder]) -> None:
    truth, _ = pair
    other = write_folder(tmp_path / "other", PRED, classes=("scratch", "hole", "spot"))
    with pytest.raises(InputError, match=r"class map of 'plate' differs"):
        pair_samples(truth, other)


def test_masks_of_another_size_are_refused(tmp_path: Path, pair: tuple[DSFolder, DSFolder]) -> None:
    truth, _ = pair
    small = write_folder(tmp_path / "small", {k: v[:16, :16] for k, v in PRED.items()})
    with pytest.raises(InputError, match=r"16x16 px, but the truth mask .* is 32x32"):
        measure_pairs(truth, small)


def test_unknown_object_and_empty_split(pair: tuple[DSFolder, DSFolder]) -> None:
    truth, pred = pair
    with pytest.raises(InputError, match="has no object 'pill'; its objects: plate"):
        pair_samples(truth, pred, objects=["pill"])
    with pytest.raises(InputError, match="no samples in split 'val'"):
        pair_samples(truth, pred, split="val")


def test_sweep_moves_recall_and_fpr_down_together(pair: tuple[DSFolder, DSFolder]) -> None:
    truth, pred = pair
    measured, policies = measure_pairs(truth, pred), RULES.policies(truth.objects)
    knob = Knob("max_area", "spot")
    assert knob.candidates(measured, policies) == [0.0, 16.0]
    points = sweep(measured, policies, knob)
    assert [(p.value, p.counts.tp, p.counts.fp) for p in points] == [(0.0, 2, 1), (16.0, 1, 0)]
    many = sweep(measured, policies, knob, values=[0, 5, 15, 16, 100])
    recalls = [p.counts.recall for p in many]
    fprs = [p.counts.fpr for p in many]
    assert recalls == sorted(recalls, reverse=True) and fprs == sorted(fprs, reverse=True)
    # the truth stays judged by the rules as written: its verdicts never change
    assert {p.counts.defective for p in many} == {3}


def test_sweeping_a_forbidden_class_makes_it_limited(pair: tuple[DSFolder, DSFolder]) -> None:
    truth, pred = pair
    measured, policies = measure_pairs(truth, pred), RULES.policies(truth.objects)
    points = sweep(measured, policies, Knob("max_area", "hole"), values=[3, 4])
    assert [p.counts.tp for p in points] == [2, 1]  # a 4-px hole passes at max_area 4
    specks = sweep(measured, policies, Knob("min_region_area"), values=[0, 5, 17])
    assert [p.counts.tp + p.counts.fp for p in specks] == [3, 2, 0]


def test_calibrate_meets_the_target_or_says_why(pair: tuple[DSFolder, DSFolder]) -> None:
    truth, pred = pair
    measured, policies = measure_pairs(truth, pred), RULES.policies(truth.objects)
    knob = Knob("max_area", "spot")
    points = sweep(measured, policies, knob)
    assert calibrate(points, knob, max_false_reject=0).value == 16.0
    lenient = calibrate(points, knob, max_escape=40)
    assert lenient.value == 0.0 and lenient.point.counts.escape_rate == pytest.approx(100 / 3)
    assert lenient.escape_interval is not None and lenient.escape_interval[1] > 40 and not lenient.confident
    assert "not with 95% confidence" in lenient.summary()
    with pytest.raises(InputError, match="no value of spot.max_area keeps the escape rate at or below 10%"):
        calibrate(points, knob, max_escape=10)
    with pytest.raises(InputError, match="one target"):
        calibrate(points, knob)


def test_calibrate_refuses_sets_that_cannot_decide(tmp_path: Path) -> None:
    only_good = {"d": blank(), "f": blank(), "c": spot(3)}
    truth = write_folder(tmp_path / "t", only_good)
    pred = write_folder(tmp_path / "p", only_good)
    measured, policies = measure_pairs(truth, pred), RULES.policies(truth.objects)
    knob = Knob("max_area", "spot")
    points = sweep(measured, policies, knob)
    with pytest.raises(InputError, match="no defective product"):
        calibrate(points, knob, max_escape=5)
    assert calibrate(points, knob, max_false_reject=0).value == 9.0
    only_bad = {"a": hole(), "e": spot(4)}
    truth, pred = write_folder(tmp_path / "t2", only_bad), write_folder(tmp_path / "p2", only_bad)
    points = sweep(measure_pairs(truth, pred), RULES.policies(truth.objects), knob)
    with pytest.raises(InputError, match="no benign product"):
        calibrate(points, knob, max_false_reject=5)


def test_knob_mistakes() -> None:
    with pytest.raises(InputError, match="choose one of max_area"):
        Knob("max_size", "spot")
    with pytest.raises(InputError, match="--class"):
        Knob("max_area")
    policies = RULES.policies({"plate": ClassMap.from_defects(["scratch", "spot", "hole"])})
    with pytest.raises(InputError, match="no object has class 'dent'; classes: hole, scratch, spot"):
        Knob("max_area", "dent").targets(policies)
    with pytest.raises(InputError, match="object 'lid' is not in the data"):
        Knob("min_region_area", objects=("lid",)).targets(policies)
