"""Connected regions of class-index masks: the one helper behind captions, stats and the COCO export."""

from __future__ import annotations

import numpy as np
import pytest

from defectspectrum.errors import InputError
from defectspectrum.regions import present_classes, region_areas, regions


def test_regions_use_8_connectivity_by_default_and_4_on_request() -> None:
    mask = np.zeros((5, 5), np.uint8)
    mask[0, 0] = mask[1, 1] = 1  # diagonal neighbours: one region with 8-connectivity
    mask[3, 3] = 1
    mask[0, 4] = 2
    assert sorted((r.class_index, r.area) for r in regions(mask)) == [(1, 1), (1, 2), (2, 1)]
    assert sorted((r.class_index, r.area) for r in regions(mask, connectivity=4)) == [(1, 1), (1, 1), (1, 1), (2, 1)]


def test_touching_regions_of_two_classes_stay_apart() -> None:
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 0:3] = 1
    mask[1:3, 3:6] = 2
    found = list(regions(mask))
    assert [(r.class_index, r.area, r.bbox) for r in found] == [(1, 6, (0, 1, 3, 2)), (2, 6, (3, 1, 3, 2))]


def test_region_binary_crop_and_centroid() -> None:
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 5:8] = 3
    (region,) = regions(mask)
    assert region.binary().sum() == 6 and region.binary()[2:4, 5:8].all()
    assert region.crop().shape == (2, 3) and region.crop().all()
    assert region.centroid == pytest.approx((6.0, 2.5))


def test_only_the_requested_classes() -> None:
    mask = np.array([[1, 0, 2], [0, 0, 2]], np.uint8)
    assert [r.class_index for r in regions(mask, classes=[2])] == [2]
    assert list(regions(mask, classes=[5])) == []
    assert present_classes(mask) == [1, 2]
    assert present_classes(np.zeros((0, 0), np.uint8)) == []


def test_region_areas() -> None:
    mask = np.zeros((6, 6), np.uint8)
    mask[0, 0] = mask[1, 1] = 1
    mask[4, 4] = mask[4, 5] = 1
    assert sorted(region_areas(mask, 1).tolist()) == [2, 2]
    assert region_areas(mask, 2).size == 0


@pytest.mark.parametrize("mask", [np.zeros((2, 2, 3), np.uint8), np.zeros((3, 3), np.float32)])
def test_bad_masks_are_refused(mask: np.ndarray) -> None:
    with pytest.raises(InputError, match="regions:"):
        list(regions(mask))
