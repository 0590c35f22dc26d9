"""NoC arithmetic on hand-written IoU curves, the evaluation loop with scripted segmenters, and how a
DS mask becomes objects (8-connected regions per class, the thin flag)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from defectspectrum.click.clicks import Click, disk
from defectspectrum.click.noc import (
    ModelResult,
    ObjectRun,
    evaluate,
    iou,
    iou_after,
    mean_curve,
    noc,
    reached,
    run_object,
    summarize,
)
from defectspectrum.click.objects import Instance, inscribed_width, instances, spread

RISING = [0.5, 0.8, 0.86, 0.88, 0.91, 0.95]  # 0.85 at click 3, 0.90 at click 5
NEVER = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_noc_is_the_first_click_that_reaches_the_threshold() -> None:
    assert noc(RISING, 0.85, 6) == 3
    assert noc(RISING, 0.90, 6) == 5
    assert noc([0.9], 0.85, 20) == 1
    assert noc([0.85], 0.85, 20) == 1  # reaching is >=, as in RITM


def test_never_reaching_costs_max_clicks_and_counts_as_a_failure() -> None:
    assert noc(NEVER, 0.85, 6) == 6 and not reached(NEVER, 0.85, 6)
    assert noc(RISING, 0.90, 4) == 4 and not reached(RISING, 0.90, 4)  # only within max_clicks
    s = summarize([RISING, NEVER], max_clicks=6)
    assert s.noc85 == pytest.approx((3 + 6) / 2)
    assert s.noc90 == pytest.approx((5 + 6) / 2)
    assert (s.nof85, s.nof90, s.objects) == (1, 1, 2)


def test_reaching_at_the_last_click_counts_in_nof_as_ritm_counts_it() -> None:
    late = [0.1, 0.2, 0.3, 0.4, 0.5, 0.9]
    s = summarize([late], max_clicks=6)
    assert s.noc90 == 6 and s.nof90 == 1  # reached exactly at the last click: counted, as RITM counts it


def test_iou_at_k_is_the_mean_after_k_clicks() -> None:
    s = summarize([RISING, NEVER], max_clicks=6)
    assert s.iou_at[1] == pytest.approx((0.5 + 0.1) / 2)
    assert s.iou_at[3] == pytest.approx((0.86 + 0.3) / 2)
    assert s.iou_at[5] == pytest.approx((0.91 + 0.5) / 2)
    data = s.to_json()
    assert list(data) == ["NoC85", "NoC90", "NoF85", "NoF90", "IoU@1", "IoU@3", "IoU@5", "objects"]
    assert data["IoU@3"] == pytest.approx(0.58)


def test_a_short_curve_holds_its_last_value_and_k_beyond_max_clicks_is_none() -> None:
    assert iou_after([0.4, 0.7], 5) == 0.7
    s = summarize([[0.4, 0.7]], max_clicks=3)
    assert s.iou_at[3] == pytest.approx(0.7) and s.iou_at[5] is None
    assert mean_curve([[0.4, 0.7], [0.2, 0.2, 0.5]], max_clicks=3) == pytest.approx([0.3, 0.45, 0.6])


def test_no_objects_give_no_means() -> None:
    s = summarize([], max_clicks=20)
    assert s.noc85 is None and s.iou_at[1] is None and s.nof85 == 0 and s.objects == 0
    assert s.to_json()["NoC90"] is None


def test_iou() -> None:
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[0:2, 0:2] = True
    b[0:2, 1:3] = True
    assert iou(a, b) == pytest.approx(2 / 6)
    assert iou(a, a) == 1.0 and iou(b & False, a & False) == 1.0


class DiskPainter:
    """A scripted segmenter: the previous mask plus the disk (radius 4) of a positive click, minus a negative one."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, image: np.ndarray, clicks: Sequence[Click], previous: np.ndarray) -> np.ndarray:
        self.calls.append(len(clicks))
        mask = previous.copy()
        last = clicks[-1]
        mask[disk(previous.shape, last.y, last.x, 4)] = last.positive
        return mask


def test_the_loop_clicks_predicts_and_records_iou_after_every_click() -> None:
    truth = disk((40, 40), 20, 20, 4)
    painter = DiskPainter()
    run = run_object(painter, np.zeros((40, 40, 3), np.uint8), truth, max_clicks=5)
    assert run.clicks == [Click(20, 20, True)]  # one click paints the object exactly; then nothing is left
    assert painter.calls == [1]
    assert run.ious == [1.0] * 5  # the rest of the curve keeps the last IoU


def test_the_loop_starts_from_a_given_mask_and_stops_at_max_clicks() -> None:
    truth = np.zeros((30, 60), bool)
    truth[10:20, 5:55] = True  # 10 x 50: a radius-4 disk a click covers only part of it
    initial = np.zeros_like(truth)
    initial[0:5, 0:5] = True  # a false positive to remove
    run = run_object(DiskPainter(), np.zeros((30, 60, 3), np.uint8), truth, max_clicks=3, initial=initial)
    assert len(run.ious) == 3 and len(run.clicks) == 3
    assert run.clicks[0].positive  # the band (depth 5) reaches deeper than the corner false positive (depth 3)
    assert all(b >= a for a, b in zip(run.ious, run.ious[1:]))


def test_evaluate_runs_every_model_on_every_object_and_keeps_the_thin_flag() -> None:
    mask = np.zeros((30, 30), np.uint8)
    mask[2:12, 2:12] = 1
    mask[20, 3:27] = 2  # a 1 px scratch
    found = list(instances(mask, ["background", "dent", "scratch"]))
    loads: list[str | None] = []

    def load(instance: Instance) -> np.ndarray:
        loads.append(instance.sample_id)
        return np.zeros((30, 30, 3), np.uint8)

    results = evaluate({"a": DiskPainter(), "b": DiskPainter()}, found, load, max_clicks=4)
    assert set(results) == {"a", "b"} and len(results["a"].runs) == 2
    assert results["a"].thin == [False, True]
    data = results["a"].to_json()
    assert data["objects"] == 2 and data["thin"]["objects"] == 1 and len(data["mean_iou_curve"]) == 4


def test_model_result_without_thin_objects_has_no_thin_entry() -> None:
    result = ModelResult([ObjectRun([0.9, 0.95])], [False], max_clicks=2)
    assert "thin" not in result.to_json() and result.summary().noc90 == 1


def test_each_connected_region_of_each_class_is_one_object() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = 1
    mask[2:6, 6:10] = 2  # touches class 1: a second object
    mask[10, 10] = mask[11, 11] = 1  # corner-touching pixels: one object (8-connectivity)
    mask[15:18, 15:18] = 1
    found = list(instances(mask, ["background", "dent", "stain"], sample_id="plate/a"))
    assert [(o.class_name, o.area) for o in found] == [("dent", 16), ("dent", 2), ("dent", 9), ("stain", 16)]
    assert found[0].sample_id == "plate/a" and found[0].shape == (20, 20)
    assert found[3].mask().sum() == 16 and found[3].mask()[2:6, 6:10].all()
    assert [o.area for o in instances(mask, min_area=5)] == [16, 9, 16]  # specks skipped


def test_thin_means_a_maximum_inscribed_width_of_at_most_3_px() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[2, 2:38] = 1  # 1 px wide
    mask[6:8, 2:38] = 2  # 2 px
    mask[12:15, 2:38] = 3  # 3 px: width 4, not thin
    mask[20:30, 5:15] = 4  # a 10 x 10 blob
    found = {o.class_index: o for o in instances(mask)}
    assert found[1].thin and found[2].thin and not found[3].thin and not found[4].thin
    assert (found[1].width, found[2].width, found[3].width, found[4].width) == (2.0, 2.0, 4.0, 10.0)
    diagonal = np.eye(12, dtype=bool)
    assert inscribed_width(diagonal) == 2.0


def test_spread_picks_evenly_through_the_objects() -> None:
    items = [Instance(str(i), 1, "c", (0, 0, 1, 1), 1, 1.0, (1, 1), np.ones((1, 1), bool)) for i in range(10)]
    assert [o.sample_id for o in spread(items, 4)] == ["0", "3", "6", "9"]
    assert spread(items, None) == items and spread(items, 50) == items
    assert [o.sample_id for o in spread(items, 1)] == ["0"]


# -- fixing a flawed mask --------------------------------------------------------------------------


def test_degraded_start_masks_have_the_target_iou_and_both_flaws() -> None:
    from defectspectrum.click.degrade import degraded_mask

    blob = disk((60, 60), 30, 30, 12)
    scratch = np.zeros((60, 60), bool)
    scratch[30, 5:55] = True  # 1 px wide
    for truth in (blob, scratch):
        over, under = degraded_mask(truth, 0), degraded_mask(truth, 1)
        assert (over >= truth).all() and over.sum() > truth.sum()  # too much: holds the object and more
        assert (under <= truth).all() and under.sum() < truth.sum()  # too little: part of the object only
        assert abs(iou(truth, over) - 0.7) < 0.03
        assert abs(iou(truth, under) - 0.7) < 0.03
        assert np.array_equal(degraded_mask(truth, 1), under) and np.array_equal(degraded_mask(truth, 0), over)
    assert not degraded_mask(disk((9, 9), 4, 4, 0), 0).any()  # a speck starts empty


def test_evaluate_from_degraded_reports_the_fix_row() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[5:25, 5:25] = 1
    found = list(instances(mask, ["background", "dent"]))
    results = evaluate({"a": DiskPainter()}, found, lambda _i: np.zeros((40, 40, 3), np.uint8), max_clicks=6,
                       from_degraded=True)
    data = results["a"].to_json()
    fix = data["degraded"]
    assert fix["objects"] == 1 and abs(fix["start_IoU"] - 0.7) < 0.03
    assert fix["IoU@1"] != data["IoU@1"]  # another start gives another curve
    assert "degraded" not in evaluate({"a": DiskPainter()}, found, lambda _i: np.zeros((40, 40, 3), np.uint8),
                                      max_clicks=2)["a"].to_json()
