"""Flawed start masks for the "fix an existing mask" evaluation (`click eval --from-degraded`).

The rule, per object, from a generator seeded by (seed, object index), so every model gets the same
start masks: one of two flaws an imported or quickly drawn mask has, alternating by object index,
each made to have IoU `target` (default 0.7) with the object:

- even index, too much: the object and the background pixels nearest to it, ordered by distance with up
  to 2 px of noise (a rough, coarse outline), as many as give IoU `target`;
- odd index, too little: the object's pixels beyond a random straight cut are dropped, the cut placed
  so that the share `target` of them is kept (a missed end of a scratch, a missed side of a blob).

An object too small for either (a few pixels) starts from an empty mask.
"""

from __future__ import annotations

import cv2
import numpy as np

DEGRADED_IOU = 0.7


def too_much(truth: np.ndarray, rng: np.random.Generator, target: float = DEGRADED_IOU) -> np.ndarray:
    """The object and the pixels nearest to it (distance plus up to 2 px of noise: a rough outline), as many
    as give IoU `target`."""
    extra = round(np.count_nonzero(truth) * (1 / target - 1))
    distance = cv2.distanceTransform((~truth).astype(np.uint8), cv2.DIST_L2, 5)
    order = np.argsort((distance + rng.uniform(0, 2, truth.shape)).ravel(), kind="stable")
    outside = order[~truth.ravel()[order]][:extra]
    out = truth.copy()
    out.ravel()[outside] = True
    return out


def too_little(truth: np.ndarray, rng: np.random.Generator, target: float = DEGRADED_IOU) -> np.ndarray:
    """The object's pixels on one side of a random straight cut, the share `target` of them."""
    rows, cols = np.nonzero(truth)
    angle = rng.uniform(0, 2 * np.pi)
    along = rows * np.sin(angle) + cols * np.cos(angle)
    keep = round(target * rows.size)
    order = np.argsort(along, kind="stable")[:keep]
    out = np.zeros(truth.shape, bool)
    out[rows[order], cols[order]] = True
    return out


def degraded_mask(truth: np.ndarray, index: int, seed: int = 0, target: float = DEGRADED_IOU) -> np.ndarray:
    """The module's flawed start mask for object number `index` (bool H x W `truth`)."""
    truth = np.asarray(truth, bool)
    if np.count_nonzero(truth) < 4:
        return np.zeros(truth.shape, bool)
    rng = np.random.default_rng([seed, index])
    return too_much(truth, rng, target) if index % 2 == 0 else too_little(truth, rng, target)
