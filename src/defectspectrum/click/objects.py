"""The objects of the NoC protocol: how a DS mask (one class index a pixel) becomes instances to click on.

The rule: each 8-connected region of each defect class is one object (`defectspectrum.regions`, the
helper captions, stats and COCO export use). Two touching regions of different classes are two
objects; two pixels of one class that touch only at a corner are one. Each object is evaluated alone:
every other pixel, other defects included, is background for it.

- `min_area`: regions of fewer pixels are specks and skipped (default 0: every region is kept).
- Thin: an object is thin where its maximum inscribed width, 2 x the largest value of its distance
  transform (L2, to the nearest pixel outside it, the image border counting as outside), is at most
  `THIN_WIDTH` = 3 px. In pixels: a 1 or 2 px wide scratch has largest distance 1 (width 2, thin); a
  3 px wide one has 2 (width 4, not thin). These are the objects whose error regions are 1-2 px thick,
  the reference's caution for defects.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from defectspectrum.click.simulator import error_depth
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError
from defectspectrum.progress import track
from defectspectrum.regions import regions

THIN_WIDTH = 3.0
T = TypeVar("T")


@dataclass(frozen=True)
class Instance:
    """One object to segment: a region of class `class_index` in sample `sample_id` (None for a bare mask).
    `bbox` is (x, y, width, height) in pixels, `shape` the image's (H, W), `pixels` the region inside the
    box (bool, height x width), `width` its maximum inscribed width."""

    sample_id: str | None
    class_index: int
    class_name: str
    bbox: tuple[int, int, int, int]
    area: int
    width: float
    shape: tuple[int, int]
    pixels: np.ndarray = field(repr=False, compare=False)

    @property
    def thin(self) -> bool:
        """True where the maximum inscribed width is at most THIN_WIDTH px (see the module)."""
        return self.width <= THIN_WIDTH

    def mask(self) -> np.ndarray:
        """This object's pixels as a bool array of the image's shape."""
        full = np.zeros(self.shape, bool)
        x, y, w, h = self.bbox
        full[y : y + h, x : x + w] = self.pixels
        return full


def inscribed_width(region: np.ndarray) -> float:
    """2 x the largest distance from a pixel of bool `region` to the nearest pixel outside it (border is outside)."""
    return 2.0 * float(error_depth(region).max(initial=0.0))


def instances(mask: np.ndarray, class_names: Sequence[str] | None = None, min_area: int = 0,
              sample_id: str | None = None) -> Iterator[Instance]:
    """Every object of class-index `mask` by the module's rule, class by class, then top to bottom.
    `class_names[i]` names index i (default `class i`)."""
    if min_area < 0:
        raise InputError(f"min_area must be at least 0, got {min_area}")
    shape = (int(np.shape(mask)[0]), int(np.shape(mask)[1])) if np.ndim(mask) == 2 else (0, 0)
    for region in regions(mask):
        if region.area < min_area:
            continue
        pixels = region.crop()
        index = region.class_index
        name = class_names[index] if class_names is not None and index < len(class_names) else f"class {index}"
        yield Instance(sample_id, index, name, region.bbox, region.area, inscribed_width(pixels), shape, pixels)


def folder_instances(folder: DSFolder, samples: Sequence[Sample], min_area: int = 0) -> list[Instance]:
    """Every object of the masks of `samples` (each mask read once), in sample order."""
    found: list[Instance] = []
    for sample in track(samples, "finding objects"):
        names = folder.classes(sample.object).names
        found.extend(instances(folder.load_mask(sample), names, min_area, sample.id))
    return found


def spread(items: Sequence[T], limit: int | None) -> list[T]:
    """At most `limit` of `items`, evenly spaced through them (first and last included), so a quick run sees
    every part of a folder sorted by defect type; all of them for None or a limit at least their number."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit <= 0:
        return []
    if limit == 1:
        return [items[0]]
    picks = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[int(i)] for i in picks]
