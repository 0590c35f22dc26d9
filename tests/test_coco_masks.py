"""COCO segmentation rasterising shared by the COCO-based readers (polygons, RLE, overlap rule)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from defectspectrum.data.formats.coco_masks import (
    annotation_to_binary,
    has_segmentation,
    rasterize_annotations,
)
from defectspectrum.errors import FormatError


def box(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    """A rectangle polygon; pycocotools fills columns x0..x1-1 and rows y0..y1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def region(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    out = np.zeros((h, w), dtype=bool)
    out[rows, cols] = True
    return out


def test_polygon_fills_the_half_open_rectangle() -> None:
    shape = annotation_to_binary({"id": 1, "segmentation": box(2, 3, 6, 5)}, 8, 10)
    assert shape.dtype == bool and shape.shape == (8, 10)
    assert np.array_equal(shape, region(8, 10, slice(3, 5), slice(2, 6)))


def test_multi_part_polygon_is_merged_and_degenerate_parts_ignored() -> None:
    segmentation = box(0, 0, 2, 2) + box(5, 5, 7, 7) + [[1, 1, 3, 3]]  # last part: 2 points, no area
    shape = annotation_to_binary({"segmentation": segmentation}, 8, 8)
    assert np.array_equal(shape, region(8, 8, slice(0, 2), slice(0, 2)) | region(8, 8, slice(5, 7), slice(5, 7)))


def test_uncompressed_and_compressed_rle_decode_exactly() -> None:
    truth = np.zeros((6, 7), dtype=np.uint8)
    truth[1:4, 2:6] = 1
    truth[5, 0] = 1
    encoded = mask_utils.encode(np.asfortranarray(truth))
    flat = truth.flatten(order="F")
    runs, value, count = [], 0, 0
    for pixel in flat:
        if pixel != value:
            runs.append(count)
            value, count = pixel, 0
        count += 1
    runs.append(count)
    uncompressed = {"segmentation": {"size": [6, 7], "counts": runs}, "iscrowd": 1}
    compressed_str = {"segmentation": {"size": [6, 7], "counts": encoded["counts"].decode("ascii")}}
    compressed_bytes = {"segmentation": {"size": [6, 7], "counts": encoded["counts"]}}
    for annotation in (uncompressed, compressed_str, compressed_bytes):
        assert np.array_equal(annotation_to_binary(annotation, 6, 7), truth.astype(bool))


def test_box_only_annotations_have_no_shape() -> None:
    for segmentation in (None, [], {}):
        annotation = {"id": 3, "bbox": [0, 0, 2, 2], "segmentation": segmentation}
        assert not has_segmentation(annotation)
        assert annotation_to_binary(annotation, 4, 4) is None
    assert annotation_to_binary({"id": 3, "bbox": [0, 0, 2, 2]}, 4, 4) is None
    mask = rasterize_annotations([{"id": 1, "category_id": 7, "bbox": [0, 0, 4, 4]}], 4, 4, {7: 1})
    assert not mask.any()


def test_smaller_annotation_wins_whatever_the_file_order() -> None:
    big = {"id": 1, "category_id": 10, "segmentation": box(0, 0, 8, 8)}
    small = {"id": 2, "category_id": 20, "segmentation": box(2, 2, 4, 4)}
    for order in ([big, small], [small, big]):
        mask = rasterize_annotations(order, 8, 8, {10: 1, 20: 2})
        assert mask.dtype == np.uint8
        expected = np.ones((8, 8), dtype=np.uint8)
        expected[2:4, 2:4] = 2
        assert np.array_equal(mask, expected)


def test_equal_areas_are_decided_by_the_higher_id() -> None:
    first = {"id": 9, "category_id": 1, "segmentation": box(0, 0, 4, 2)}
    second = {"id": 4, "category_id": 2, "segmentation": box(2, 0, 6, 2)}  # same area, overlaps columns 2-3
    mask = rasterize_annotations([first, second], 2, 6, {1: 1, 2: 2})
    assert mask.tolist() == [[1, 1, 1, 1, 2, 2]] * 2


def test_unknown_category_names_the_file() -> None:
    with pytest.raises(FormatError, match=r"ann\.json: annotation 5: category_id 3 is not among"):
        rasterize_annotations([{"id": 5, "category_id": 3, "segmentation": box(0, 0, 2, 2)}], 4, 4, {1: 1},
                              where="ann.json")


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ([[0, 0, 2, 0, 2]], "odd number"),
        ([["a", 0, 2, 0, 2, 2]], "flat list of numbers"),
        ({"size": [4, 5], "counts": [20]}, "differs from the image"),
        ({"size": [4, 4], "counts": [3, 4]}, "cover 7 pixels"),
        ({"size": [4, 4], "counts": "zz"}, "compressed RLE"),
        ({"size": [4, 4], "counts": 5}, "'counts' must be"),
        ("polygon", "'segmentation' must be"),
    ],
)
def test_malformed_segmentations_are_format_errors(segmentation: object, message: str) -> None:
    with pytest.raises(FormatError, match=message) as info:
        annotation_to_binary({"id": 8, "segmentation": segmentation}, 4, 4, where="x.json")
    assert str(info.value).startswith("x.json: annotation 8")
