"""Does a generated mask match its generated defect? (`gen sample --filter`, `gen eval --seg-model`)

- **Agreement**: a segmentation model trained on the real pairs (`seg train`) looks at the
  generated image; the IoU of its defect pixels (any class) with the generated mask's. Where the
  model finds the defect the mask claims, the pair is consistent. `class_agreement` also asks for
  the same class.
- **On the object**: the share of the mask's defect pixels on the object's foreground. The
  foreground is what differs from the image's border colour (holes filled); where the border is not
  one colour (a texture fills the image) everything is foreground. The estimate is first tried on
  the real training pairs (`on_object_applies`): where their own masks do not lie on it (a uniform
  texture, an object the estimate misses), the check is off rather than wrong.

`SampleFilter` turns both into a reason to drop a sample, or none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from defectspectrum.data.classes import ClassMap
from defectspectrum.progress import track

BORDER = 0.04  # share of the short side read as the border ring
TEXTURE_SPREAD = 40.0  # border colours this far (90th percentile, RGB distance) from their median: a texture
MIN_STEP = 20.0  # the least colour distance from the border that counts as the object


def defect_iou(predicted: np.ndarray, mask: np.ndarray) -> float | None:
    """IoU of the defect pixels (index > 0) of `predicted` and `mask`; None where both are empty."""
    a, b = predicted > 0, mask > 0
    union = int(np.count_nonzero(a | b))
    return None if union == 0 else int(np.count_nonzero(a & b)) / union


def class_agreement(predicted: np.ndarray, mask: np.ndarray) -> float | None:
    """As `defect_iou`, counting a pixel as shared only where both give it the same class."""
    union = int(np.count_nonzero((predicted > 0) | (mask > 0)))
    return None if union == 0 else int(np.count_nonzero((predicted == mask) & (mask > 0))) / union


def foreground(image: np.ndarray) -> np.ndarray:
    """Where the object is in an (H, W, 3) image: bool (H, W), see the module docstring."""
    height, width = image.shape[:2]
    ring = max(1, round(BORDER * min(height, width)))
    pixels = image.astype(np.float32)
    border = np.concatenate([pixels[:ring].reshape(-1, 3), pixels[-ring:].reshape(-1, 3),
                             pixels[:, :ring].reshape(-1, 3), pixels[:, -ring:].reshape(-1, 3)])
    reference = np.median(border, axis=0)
    spread = float(np.percentile(np.linalg.norm(border - reference, axis=1), 90))
    if spread > TEXTURE_SPREAD:
        return np.ones((height, width), bool)
    distance = np.linalg.norm(pixels - reference, axis=2)
    found = (distance > max(MIN_STEP, 3 * spread)).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    found = cv2.morphologyEx(found, cv2.MORPH_CLOSE, kernel)
    # holes in the object (a hole defect the colour of the background) are the object: the background
    # is only what is connected to the border
    background = np.ones((height + 2, width + 2), np.uint8)  # a frame of background joins every border pixel
    background[1:-1, 1:-1] = 1 - found
    reached = background.copy()
    cv2.floodFill(reached, None, (0, 0), 2)
    return reached[1:-1, 1:-1] != 2


def share_on_object(image: np.ndarray, mask: np.ndarray) -> float | None:
    """The share of `mask`'s defect pixels on `image`'s foreground; None for an empty mask."""
    defect = mask > 0
    total = int(np.count_nonzero(defect))
    return None if total == 0 else int(np.count_nonzero(defect & foreground(image))) / total


def on_object_applies(train_pairs: Sequence[tuple[np.ndarray, np.ndarray]], min_on_object: float = 0.5) -> bool:
    """Whether the foreground estimate fits this object: at least 90% of the real training masks lie
    on it (`min_on_object` of their pixels)."""
    shares = [v for v in (share_on_object(image, mask) for image, mask in train_pairs) if v is not None]
    return bool(shares) and float(np.mean([v >= min_on_object for v in shares])) >= 0.9


@dataclass(frozen=True)
class SampleFilter:
    """Reasons to drop a generated pair: its mask mostly off the object, or (with `segment`, a
    function image -> the object's class-index mask) too little agreement with a segmentation model."""

    min_on_object: float = 0.5
    min_agreement: float = 0.3
    segment: Callable[[np.ndarray], np.ndarray] | None = None
    check_on_object: bool = True  # off where `on_object_applies` says the estimate does not fit the object

    def measure(self, image: np.ndarray, mask: np.ndarray) -> dict[str, float | None]:
        measures = {"on_object": share_on_object(image, mask) if self.check_on_object else None}
        if self.segment is not None:
            measures["agreement"] = defect_iou(self.segment(image), mask)
        return measures

    def reason(self, measures: dict[str, float | None]) -> str:
        """Why a pair with these measures is dropped, or ""."""
        on_object, agreement = measures.get("on_object"), measures.get("agreement")
        if on_object is not None and on_object < self.min_on_object:
            return f"mask off the object ({100 * on_object:.0f}% of it on the object, under " \
                   f"{100 * self.min_on_object:.0f}%)"
        if agreement is not None and agreement < self.min_agreement:
            return f"the segmentation model does not see the mask's defect (IoU {agreement:.2f}, under " \
                   f"{self.min_agreement:.2f})"
        return ""


def segmenter(run: Path, object_name: str, classes: ClassMap) -> Callable[[np.ndarray], np.ndarray]:
    """image -> `object_name`'s class-index mask, by the segmentation run in `run` (`seg train`),
    which must have been trained on this object with these classes."""
    from defectspectrum.seg.evaluate import load_run
    from defectspectrum.seg.labels import check_same_objects

    loaded = load_run(run)
    labels = loaded.info.labels
    check_same_objects(labels, {object_name: classes}, f"--seg-model {run}")
    predictor = loaded.predictor()
    return lambda image: labels.to_object_mask(predictor.predict(image), object_name)


def consistency(pairs: Sequence[tuple[np.ndarray, np.ndarray]], segment: Callable[[np.ndarray], np.ndarray] | None,
                min_on_object: float = 0.5, min_agreement: float = 0.3,
                train_pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """How well generated masks match their images, over a set of (image, mask) pairs: the share of
    masks mostly off the object (where `train_pairs`, if given, show the estimate fits the object)
    and, with `segment`, the agreement of a segmentation model (mean and median defect IoU, mean
    class-aware IoU, share under `min_agreement`). Empty masks are left out."""
    applies = train_pairs is None or on_object_applies(train_pairs, min_on_object)
    on_object = [v for v in (share_on_object(image, mask) for image, mask in pairs) if v is not None] \
        if applies else []
    result: dict[str, Any] = {"on_object_check": applies,
                              "on_object_mean": float(np.mean(on_object)) if on_object else None,
                              "off_object_share": float(np.mean([v < min_on_object for v in on_object]))
                              if on_object else None}
    if segment is not None:
        ious, classes = [], []
        for image, mask in track(pairs, "agreement"):
            if mask.any():
                predicted = segment(image)
                ious.append(defect_iou(predicted, mask) or 0.0)
                classes.append(class_agreement(predicted, mask) or 0.0)
        result["agreement"] = {"mean": float(np.mean(ious)), "median": float(np.median(ious)),
                               "class_mean": float(np.mean(classes)),
                               "under_min": float(np.mean([v < min_agreement for v in ious])),
                               "min_agreement": min_agreement} if ious else None
    return result
