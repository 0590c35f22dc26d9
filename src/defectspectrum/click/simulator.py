"""The simulated user of the NoC protocol, as RITM and FocalClick implement it (`Clicker._get_next_click`).

After each prediction the user looks at the two error regions: false negatives (object pixels
predicted background) and false positives (background predicted object). Each is distance-transformed
(`cv2.distanceTransform`, L2, exact mask) and the next click goes to the error pixel farthest from
the region's boundary, in the region that reaches deeper:

- positive (in the false negatives) where their largest distance is strictly greater than the false
  positives', else negative (a tie goes to the false positives, as in RITM). "Larger" is this depth,
  not the pixel count: a long 2 px sliver of many pixels loses to a compact blob.
- The image border counts as a boundary. RITM pads both error maps with a 1 px frame of zeros before
  the transform (OpenCV alone treats the outside of the image as part of the region, so a region
  touching the border would be clicked at the border). A region touching the border is therefore
  clicked at its own centre, as a user would: a 10 px band along the left edge gets its click in
  column 4 or 5, not column 0.
- Pixels clicked before are skipped (their distance is set to 0), as RITM does.
- Ties go to the first pixel in row-major order (top row first, then leftmost), as RITM's `np.where`.
- Thin regions need nothing special: every pixel of a 1 or 2 px wide scratch has distance 1, so the
  click lands on the scratch (on its first pixel in row-major order).
- No error, or none left that was not clicked: no click (`None`). RITM would click (0, 0) here.

The first click of an object (empty prediction) is the false-negative case: the centre of the object.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from defectspectrum.click.clicks import Click
from defectspectrum.errors import InputError


def error_depth(region: np.ndarray) -> np.ndarray:
    """float32 (H, W): each pixel of bool `region`'s distance to its nearest pixel outside it, the image
    border counting as outside (the RITM padding); 0 outside the region."""
    padded = np.pad(region.astype(np.uint8), 1, mode="constant")
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def next_click(truth: np.ndarray, prediction: np.ndarray, previous: Iterable[Click] = ()) -> Click | None:
    """The simulated user's next click for the object `truth` (bool H x W) given the current `prediction`
    (bool H x W), never on a pixel of `previous` clicks; None where nothing is left to correct."""
    truth, prediction = np.asarray(truth, bool), np.asarray(prediction, bool)
    if truth.shape != prediction.shape or truth.ndim != 2:
        raise InputError(f"simulator: truth {truth.shape} and prediction {prediction.shape} must be the same 2-D shape")
    fn_depth = error_depth(truth & ~prediction)
    fp_depth = error_depth(prediction & ~truth)
    for click in previous:
        fn_depth[click.y, click.x] = 0.0
        fp_depth[click.y, click.x] = 0.0
    fn_max, fp_max = float(fn_depth.max(initial=0.0)), float(fp_depth.max(initial=0.0))
    if max(fn_max, fp_max) <= 0.0:
        return None
    positive = fn_max > fp_max
    depth, deepest = (fn_depth, fn_max) if positive else (fp_depth, fp_max)
    index = int(np.flatnonzero(depth.ravel() == deepest)[0])  # row-major first, as np.where(...)[0]
    y, x = divmod(index, truth.shape[1])
    return Click(y, x, positive)
