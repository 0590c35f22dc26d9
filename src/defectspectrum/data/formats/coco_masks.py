"""COCO segmentations (polygons, RLE) to binary and class-index masks, for every COCO-based reader.

Rasterising uses pycocotools, so pixels match what COCO tools draw. Accepted `segmentation`s:

- polygons: a list of flat `[x1, y1, x2, y2, ...]` lists (several parts are merged); parts with
  fewer than 3 points cover no area and are ignored;
- uncompressed RLE: `{"size": [h, w], "counts": [int, ...]}` (column-major, as COCO);
- compressed RLE: `{"size": [h, w], "counts": "<string>"}` (str or bytes).

An annotation with no segmentation (missing, `null`, `[]` or `{}`: a bounding box only) has no
pixel shape: `annotation_to_binary` returns None and `rasterize_annotations` skips it.

Overlap rule of `rasterize_annotations`: annotations are painted largest area first (area = the
rasterised pixel count, not the file's `area` field), so a smaller annotation lying on a larger
one stays visible: where two overlap, the smaller one's class wins. Equal areas are painted in
ascending annotation `id` (the list position where an id is missing), so the higher id wins.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from defectspectrum.errors import FormatError


def has_segmentation(annotation: Mapping[str, Any]) -> bool:
    """True where the annotation carries a pixel shape (polygons or RLE), not just a bounding box."""
    segmentation = annotation.get("segmentation")
    return bool(segmentation)


def _label(annotation: Mapping[str, Any], where: str) -> str:
    return f"{where}: annotation {annotation.get('id', '?')}"


def _decode_rle_string(counts: str | bytes, label: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (the format of pycocotools' rleFrString)."""
    text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
    runs: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise FormatError(f"{label}: compressed RLE counts end in the middle of a number; "
                                  "re-export the annotation")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise FormatError(f"{label}: compressed RLE counts hold an invalid character {text[position]!r}; "
                                  "re-export the annotation")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _rle_runs(segmentation: Mapping[str, Any], height: int, width: int, label: str) -> list[int]:
    size = segmentation.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise FormatError(f"{label}: RLE 'size' must be [height, width], found {size!r}; fix the annotation")
    if tuple(size) != (height, width):
        raise FormatError(f"{label}: RLE size {size[1]}x{size[0]} (WxH) differs from the image's {width}x{height}; "
                          "fix the annotation or the image entry's width/height")
    counts = segmentation.get("counts")
    if isinstance(counts, (str, bytes)):
        runs = _decode_rle_string(counts, label)
    elif isinstance(counts, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
        runs = counts
    else:
        raise FormatError(f"{label}: RLE 'counts' must be a string or a list of integers; fix the annotation")
    if any(run < 0 for run in runs) or sum(runs) != height * width:
        raise FormatError(f"{label}: RLE runs cover {sum(runs)} pixels, not {height}x{width}={height * width}; "
                          "re-export the annotation")
    return runs


def _polygons(segmentation: list[Any], label: str) -> list[list[float]]:
    parts = []
    for part in segmentation:
        if not isinstance(part, list) or not all(isinstance(v, Real) and not isinstance(v, bool) for v in part):
            raise FormatError(f"{label}: a polygon must be a flat list of numbers [x1, y1, x2, y2, ...]; "
                              "fix the annotation")
        if len(part) % 2:
            raise FormatError(f"{label}: a polygon has an odd number ({len(part)}) of coordinates; fix the annotation")
        if len(part) >= 6:  # fewer than 3 points cover no area (and 4 numbers would be read as a box)
            parts.append([float(v) for v in part])
    return parts


def annotation_to_binary(annotation: Mapping[str, Any], height: int, width: int, *,
                         where: str = "COCO annotations") -> np.ndarray | None:
    """The annotation's shape as a bool (height, width) array; None for a box-only annotation.

    `where` names the annotation file in errors (FormatError for malformed segmentations).
    """
    label = _label(annotation, where)
    segmentation = annotation.get("segmentation")
    if not segmentation:
        return None
    if isinstance(segmentation, list):
        parts = _polygons(segmentation, label)
        if not parts:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
    elif isinstance(segmentation, dict):
        runs = _rle_runs(segmentation, height, width, label)
        rle = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    else:
        raise FormatError(f"{label}: 'segmentation' must be a list of polygons or an RLE object; fix the annotation")
    with warnings.catch_warnings():  # pycocotools' decode trips a NumPy 2 copy-keyword DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def rasterize_annotations(annotations: Iterable[Mapping[str, Any]], height: int, width: int,
                          category_to_index: Mapping[int, int], *, where: str = "COCO annotations") -> np.ndarray:
    """All annotations of one image as one uint8 (height, width) class-index mask.

    `category_to_index` maps COCO category ids to class indices; an annotation of another
    category is a FormatError naming `where`. Box-only annotations are skipped. Overlaps follow
    the module's rule: largest area painted first, so the smaller annotation wins; equal areas
    by ascending id, so the higher id wins.
    """
    shapes: list[tuple[int, int, int, np.ndarray]] = []  # (-area, id, position, shape), class looked up below
    classes: list[int] = []
    for position, annotation in enumerate(annotations):
        category = annotation.get("category_id")
        if category not in category_to_index:
            raise FormatError(f"{_label(annotation, where)}: category_id {category!r} is not among the categories "
                              f"{sorted(category_to_index)}; fix the annotation or add the category")
        shape = annotation_to_binary(annotation, height, width, where=where)
        if shape is None:
            continue
        ann_id = annotation.get("id")
        order = ann_id if isinstance(ann_id, int) and not isinstance(ann_id, bool) else position
        shapes.append((-int(shape.sum()), order, len(classes), shape))
        classes.append(int(category_to_index[category]))  # type: ignore[index]  # checked above
    mask = np.zeros((height, width), dtype=np.uint8)
    for _, _, slot, shape in sorted(shapes, key=lambda item: item[:3]):
        mask[shape] = classes[slot]
    return mask
