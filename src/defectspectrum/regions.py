"""Connected regions of a class-index mask: the one helper captions, stats, COCO export, quality
control and the click simulator use.

A region is an 8-connected component of the pixels of one class (4-connected on request). Pixels
of two different classes never join one region, even where they touch.

```python
for region in regions(mask):                     # every class but background
    print(region.class_index, region.area, region.bbox, region.centroid)
    binary = region.binary()                     # bool (H, W), only this region
areas = region_areas(mask, 3)                    # just the pixel areas of class 3, fast
```
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from defectspectrum.errors import InputError

CONNECTIVITY = 8


@dataclass(frozen=True)
class Region:
    """One connected region of one class. `bbox` is (x, y, width, height), `centroid` (x, y), in pixels."""

    class_index: int
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    _labels: np.ndarray = field(repr=False, compare=False)
    _label: int = field(repr=False, compare=False)

    def binary(self) -> np.ndarray:
        """This region's pixels as a bool array of the mask's shape."""
        return self._labels == self._label

    def crop(self) -> np.ndarray:
        """This region's pixels inside its bounding box, as a bool array of shape (height, width)."""
        x, y, w, h = self.bbox
        return self._labels[y : y + h, x : x + w] == self._label


def _check(mask: np.ndarray, connectivity: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"regions: a class-index mask must be 2-D, got shape {mask.shape}")
    if connectivity not in (4, 8):
        raise InputError(f"regions: connectivity must be 4 or 8, got {connectivity}")
    if mask.dtype.kind not in "ub":
        raise InputError(f"regions: a class-index mask must hold unsigned integers, got {mask.dtype}")
    return mask


def present_classes(mask: np.ndarray) -> list[int]:
    """The non-zero class indices that occur in `mask`, ascending."""
    mask = _check(mask, CONNECTIVITY)
    if mask.size == 0:
        return []
    return [int(v) for v in np.flatnonzero(np.bincount(mask.ravel())) if v > 0]


def regions(mask: np.ndarray, classes: Iterable[int] | None = None,
            connectivity: int = CONNECTIVITY) -> Iterator[Region]:
    """Every connected region of each class in `classes` (default: every non-zero class present),
    class by class in ascending order, and within a class in label order (top to bottom)."""
    mask = _check(mask, connectivity)
    wanted = present_classes(mask) if classes is None else sorted({int(c) for c in classes})
    for index in wanted:
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(
            (mask == index).astype(np.uint8), connectivity=connectivity)
        for label in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[label, :5])
            yield Region(index, area, (x, y, w, h), (float(centroids[label][0]), float(centroids[label][1])),
                         labels, label)


def region_areas(mask: np.ndarray, index: int, connectivity: int = CONNECTIVITY) -> np.ndarray:
    """Pixel areas (int64) of the connected regions of class `index`, in label order."""
    mask = _check(mask, connectivity)
    count, _, stats, _ = cv2.connectedComponentsWithStats((mask == index).astype(np.uint8),
                                                          connectivity=connectivity)
    return stats[1:count, cv2.CC_STAT_AREA].astype(np.int64)


def areas_by_class(mask: np.ndarray, connectivity: int = CONNECTIVITY) -> dict[int, np.ndarray]:
    """Every present non-zero class -> the pixel areas (int64) of its connected regions, largest first."""
    mask = _check(mask, connectivity)
    return {index: np.sort(region_areas(mask, index, connectivity))[::-1] for index in present_classes(mask)}
