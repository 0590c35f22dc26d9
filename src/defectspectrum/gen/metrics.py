"""Weight-free measures of generated pairs against the training pairs (`gen eval`); no download.

- **Feature**: each image area-resized to 32 x 32 RGB, standardised (zero mean, unit norm), so the
  distance sees layout and texture at a coarse scale and ignores brightness offsets.
- **Memorisation**: each sample's distance to its nearest training image; a sample is a near-copy
  where that distance is under `copy_fraction` x the median distance between training images and
  their own nearest other training image (the scale of "different images" in this set).
- **Diversity** (the IC-LPIPS protocol, Ojha et al. 2021, with this feature instead of LPIPS):
  samples are grouped by their nearest training image; the mean pairwise distance within each
  group of two or more, averaged over groups. Copies of one image score near 0.
- **Mask sanity**: share of empty masks; per class, the share of masks holding it and the median
  region area (as a fraction of the image), generated beside training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from defectspectrum.data.classes import ClassMap
from defectspectrum.regions import areas_by_class

FEATURE_SIDE = 32


def image_feature(image: np.ndarray) -> np.ndarray:
    """The coarse appearance vector of one (H, W, 3) uint8 image (unit norm)."""
    small = cv2.resize(image, (FEATURE_SIDE, FEATURE_SIDE), interpolation=cv2.INTER_AREA).astype(np.float64)
    small -= small.mean()
    norm = np.linalg.norm(small)
    return (small / norm if norm > 0 else small).ravel()


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of `a` and of `b`."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


@dataclass(frozen=True)
class GenMetrics:
    """Memorisation, diversity and mask sanity of a set of generated pairs."""

    samples: int
    train: int
    nearest: np.ndarray  # per sample: distance to its nearest training image
    nearest_index: np.ndarray  # per sample: which training image
    train_scale: float  # median nearest-other-training-image distance
    near_copies: float  # share of samples under copy_fraction x train_scale
    diversity: float | None  # IC protocol; None where no group holds two samples
    masks: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "train": self.train,
                "memorisation": {"nearest_median": float(np.median(self.nearest)),
                                 "nearest_mean": float(self.nearest.mean()), "train_scale": self.train_scale,
                                 "nearest_over_scale": float(np.median(self.nearest)) / self.train_scale
                                 if self.train_scale > 0 else None,
                                 "near_copies": self.near_copies},
                "diversity": self.diversity, "masks": self.masks}


def _mask_summary(masks: Sequence[np.ndarray], classes: ClassMap) -> dict[str, Any]:
    present = dict.fromkeys(classes.defects, 0)
    areas: dict[str, list[float]] = {name: [] for name in classes.defects}
    empty = 0
    for mask in masks:
        found = areas_by_class(mask)
        if not found:
            empty += 1
        for index, region_areas in found.items():
            if 0 < index < len(classes):
                present[classes[index]] += 1
                areas[classes[index]].extend((region_areas / mask.size).tolist())
    n = max(1, len(masks))
    summary = {name: {"share": present[name] / n, "median_area": float(np.median(areas[name])) if areas[name] else None}
               for name in classes.defects}
    return {"empty": empty / n, "classes": summary}


def evaluate(generated: Sequence[tuple[np.ndarray, np.ndarray]], train: Sequence[tuple[np.ndarray, np.ndarray]],
             classes: ClassMap, copy_fraction: float = 0.5) -> GenMetrics:
    """Measure `generated` (image, mask) pairs against the `train` pairs of the same object."""
    if not generated or len(train) < 2:
        raise ValueError("evaluate needs at least one generated pair and two training pairs")
    gen = np.stack([image_feature(image) for image, _ in generated])
    ref = np.stack([image_feature(image) for image, _ in train])
    to_train = pairwise(gen, ref)
    nearest_index = to_train.argmin(1)
    nearest = to_train[np.arange(len(gen)), nearest_index]
    within = pairwise(ref, ref)
    np.fill_diagonal(within, np.inf)
    scale = float(np.median(within.min(1)))
    groups = [np.flatnonzero(nearest_index == k) for k in range(len(ref))]
    spreads = []
    for members in groups:
        if len(members) >= 2:
            d = pairwise(gen[members], gen[members])
            spreads.append(float(d[np.triu_indices(len(members), 1)].mean()))
    masks = {"generated": _mask_summary([m for _, m in generated], classes),
             "train": _mask_summary([m for _, m in train], classes)}
    return GenMetrics(len(gen), len(ref), nearest, nearest_index, scale,
                      float((nearest < copy_fraction * scale).mean()), float(np.mean(spreads)) if spreads else None,
                      masks)
