"""Verdicts on hand-built masks: every rule kind, its boundary, per region vs total, specks, empty masks."""

from __future__ import annotations

import numpy as np
import pytest
from qc_helpers import blank, rect

from defectspectrum.data.classes import ClassMap
from defectspectrum.qc.rules import Rules
from defectspectrum.qc.verdict import judge
from defectspectrum.regions import areas_by_class

PLATE = ClassMap.from_defects(["scratch", "spot", "hole"])  # 1, 2, 3


def policy(**plate: object):
    rules = Rules.model_validate({"objects": {"plate": plate}})
    return rules.policies({"plate": PLATE})["plate"]


def verdict(mask: np.ndarray, **plate: object):
    return judge(areas_by_class(mask), policy(**plate))


def test_empty_mask_is_benign() -> None:
    result = verdict(blank(), forbidden=["hole"])
    assert not result.defective and result.label == "benign" and result.reasons == ()


def test_forbidden_class_rejects_any_region() -> None:
    result = verdict(rect(blank(), 3, 0, 0, 1, 1), forbidden=["hole"])
    assert result.defective
    (reason,) = result.reasons
    assert (reason.class_name, reason.rule, reason.measured, reason.regions) == ("hole", "forbidden", 1, 1)


@pytest.mark.parametrize(("side", "defective"), [(4, False), (5, True)])  # 16 px (at the limit), 20 px
def test_max_area_is_inclusive(side: int, defective: bool) -> None:
    mask = rect(blank(), 2, 2, 2, 4, side)  # 16 or 20 px
    result = verdict(mask, limits={"spot": {"max_area": 16}})
    assert result.defective is defective
    if defective:
        assert result.reasons[0].rule == "max_area" and result.reasons[0].measured == 20
        assert result.reasons[0].limit == 16


def test_max_area_applies_per_region_and_max_total_area_to_the_sum() -> None:
    mask = rect(rect(blank(), 2, 0, 0, 3, 3), 2, 10, 10, 3, 3)  # two separate 9-px spots: 18 px in all
    assert not verdict(mask, limits={"spot": {"max_area": 9}}).defective
    assert verdict(mask, limits={"spot": {"max_total_area": 17}}).defective
    assert not verdict(mask, limits={"spot": {"max_total_area": 18}}).defective  # at the limit: accepted
    (reason,) = verdict(mask, limits={"spot": {"max_total_area": 17}}).reasons
    assert (reason.rule, reason.measured, reason.limit, reason.regions) == ("max_total_area", 18, 17, 2)


def test_max_count_counts_connected_regions() -> None:
    mask = blank()
    for x in (0, 4, 8):
        rect(mask, 1, 0, x, 2, 2)  # three separate scratches
    assert not verdict(mask, limits={"scratch": {"max_count": 3}}).defective
    (reason,) = verdict(mask, limits={"scratch": {"max_count": 2}}).reasons
    assert (reason.rule, reason.measured) == ("max_count", 3)


def test_diagonal_pixels_form_one_region() -> None:
    mask = blank()
    mask[0, 0] = mask[1, 1] = mask[2, 2] = 1  # 8-connected: one region of 3 px
    assert not verdict(mask, limits={"scratch": {"max_count": 1}}).defective
    assert verdict(mask, limits={"scratch": {"max_area": 2}}).defective


def test_touching_classes_stay_separate_regions() -> None:
    mask = rect(rect(blank(), 1, 0, 0, 2, 4), 2, 2, 0, 2, 4)  # scratch above spot, touching
    result = verdict(mask, limits={"scratch": {"max_area": 8}, "spot": {"max_area": 8}})
    assert not result.defective  # 8 px each, not one 16-px region


def test_specks_below_the_minimum_are_ignored() -> None:
    mask = rect(rect(blank(), 3, 0, 0, 1, 2), 3, 10, 10, 2, 2)  # holes of 2 px and 4 px
    assert verdict(mask, forbidden=["hole"], min_region_area=3).reasons[0].measured == 4  # only the 4-px one
    assert not verdict(mask, forbidden=["hole"], min_region_area=5).defective
    assert verdict(mask, forbidden=["hole"], min_region_area=4).defective  # a region at the minimum counts


def test_class_speck_size_overrides_the_objects() -> None:
    mask = rect(rect(blank(), 2, 0, 0, 2, 2), 2, 10, 10, 2, 2)  # two 4-px spots
    limits = {"spot": {"max_count": 1, "min_region_area": 5}}
    assert not verdict(mask, limits=limits, min_region_area=0).defective
    assert verdict(mask, limits={"spot": {"max_count": 1}}, min_region_area=0).defective


def test_accept_and_other_classes() -> None:
    mask = rect(blank(), 1, 0, 0, 8, 8)
    assert not verdict(mask, accept=["scratch"]).defective
    (reason,) = verdict(mask, forbidden=["hole"]).reasons  # scratch is named nowhere: rejected by default
    assert reason.rule == "other_classes" and "no rule accepts" in reason.text
    assert not verdict(mask, forbidden=["hole"], other_classes="accept").defective


def test_several_reasons_are_all_reported() -> None:
    mask = rect(rect(blank(), 3, 0, 0, 2, 2), 2, 10, 10, 5, 5)
    result = verdict(mask, forbidden=["hole"], limits={"spot": {"max_area": 10, "max_total_area": 10}})
    assert [r.rule for r in result.reasons] == ["max_area", "max_total_area", "forbidden"]  # by class index
    assert "hole: forbidden (1 region, 4 px)" in result.text
    assert result.to_json()["verdict"] == "defective"


def test_square_millimetre_limits_at_the_boundary() -> None:
    rules = Rules.model_validate({"pixel_size_mm": 0.5, "objects": {"plate": {"limits": {"spot": {
        "max_area": "4 mm2"}}}}})  # 4 mm2 / 0.25 mm2 per px = 16 px
    plate = rules.policies({"plate": PLATE})["plate"]
    assert not judge(areas_by_class(rect(blank(), 2, 0, 0, 4, 4)), plate).defective
    assert judge(areas_by_class(rect(blank(), 2, 0, 0, 4, 5)), plate).defective
