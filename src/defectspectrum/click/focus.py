"""The focus crop of FocalClick: where a click's refinement runs and which pixels it may change.

The rule (`focus_box`): take the bounding box of the region whose prediction changed (the pass's
new mask against the previous one) together with the last click; grow it on every side by `margin`
times its longer side (default 0.4: a 50 px box becomes 90 px, context as FocalClick's expanded crops);
then widen each side to at least `focus_min` px (centred on the box) where the image allows; slide
it inside the image and cut what still sticks out. Where nothing changed the box is the click alone
grown the same way (so at least `focus_min` px around it).

`target_box` is the same rule for the region a later click is first looked at in: every click and the
parts of the previous mask near one (each 8-connected part whose bounding box, grown by `focus_min`,
holds a click). Parts far from every click are left out, so fixing one defect of a mask that holds
many (an imported mask) looks at that defect only, at full detail.

Merging (`merge`): inside the box the refined mask replaces the previous one; every pixel outside
the box keeps the previous mask, so a click never changes anything far from where it was made.

Clicked parts only (`keep_clicked_parts`): an object is one connected region, so a click may add only
parts connected to a positive click. Each 8-connected part of the new mask that holds no positive
click (within `CLICK_REACH` px) and overlaps nothing of the previous mask is dropped: the look-alike
spots the coarse pass finds elsewhere in the image, which no later click would look at again. Parts
of the previous mask (an imported mask's other defects) always stay.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from defectspectrum.click.clicks import Click

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), ends excluded

FOCUS_MARGIN = 0.4
FOCUS_MIN = 64
CLICK_REACH = 3


def bounding_box(region: np.ndarray) -> Box | None:
    """(y0, y1, x0, x1) of the True pixels of bool `region`; None where there are none."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def grow_box(shape: tuple[int, int], box: Box, margin: float = FOCUS_MARGIN, focus_min: int = FOCUS_MIN) -> Box:
    """`box` grown by `margin` x its longer side on every side, widened to `focus_min` a side, inside `shape`."""
    y0, y1, x0, x1 = box
    grow = round(margin * max(y1 - y0, x1 - x0))

    def fit(lo: int, hi: int, size: int) -> tuple[int, int]:
        lo, hi = lo - grow, hi + grow
        if hi - lo < focus_min:
            extra = focus_min - (hi - lo)
            lo, hi = lo - extra // 2, hi + extra - extra // 2
        if lo < 0:
            lo, hi = 0, hi - lo
        if hi > size:
            lo, hi = lo - (hi - size), size
        return max(lo, 0), min(hi, size)

    y0, y1 = fit(y0, y1, shape[0])
    x0, x1 = fit(x0, x1, shape[1])
    return y0, y1, x0, x1


def union(a: Box | None, b: Box) -> Box:
    """The smallest box holding `a` (None: nothing) and `b`."""
    if a is None:
        return b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def click_box(click: Click) -> Box:
    return click.y, click.y + 1, click.x, click.x + 1


def focus_box(previous: np.ndarray, new: np.ndarray, click: Click, margin: float = FOCUS_MARGIN,
              focus_min: int = FOCUS_MIN) -> Box:
    """The module's focus crop: the changed region (`new` != `previous`, bool H x W) and `click`, grown."""
    changed = bounding_box(np.asarray(new, bool) != np.asarray(previous, bool))
    return grow_box(previous.shape[:2], union(changed, click_box(click)), margin, focus_min)


def target_box(previous: np.ndarray, clicks: list[Click] | tuple[Click, ...], margin: float = FOCUS_MARGIN,
               focus_min: int = FOCUS_MIN) -> Box:
    """Where a later click is first looked at: every click and the parts of the previous mask near one, grown."""
    box: Box | None = None
    for part in parts_near(np.asarray(previous, bool), clicks, focus_min):
        box = union(box, part)
    for click in clicks:
        box = union(box, click_box(click))
    assert box is not None, "target_box needs a click"
    return grow_box(previous.shape[:2], box, margin, focus_min)


def parts_near(mask: np.ndarray, clicks: list[Click] | tuple[Click, ...], reach: int) -> list[Box]:
    """The bounding boxes of the 8-connected parts of `mask` whose box, grown by `reach` px, holds a click."""
    if not clicks or not mask.any():
        return []
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for x, y, w, h, _area in stats[1:count]:
        box = (int(y), int(y + h), int(x), int(x + w))
        if any(box[0] - reach <= c.y < box[1] + reach and box[2] - reach <= c.x < box[3] + reach for c in clicks):
            boxes.append(box)
    return boxes


def merge(previous: np.ndarray, refined: np.ndarray, box: Box) -> np.ndarray:
    """A copy of `previous` whose pixels inside `box` come from `refined` (full size, or the box's size)."""
    y0, y1, x0, x1 = box
    out = np.array(previous, bool, copy=True)
    part = refined if refined.shape[:2] == (y1 - y0, x1 - x0) and refined.shape != out.shape \
        else refined[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = part
    return out


def keep_clicked_parts(mask: np.ndarray, previous: np.ndarray, clicks: Sequence[Click],
                       reach: int = CLICK_REACH) -> np.ndarray:
    """`mask` (bool H x W) without its 8-connected parts that hold no positive click (within `reach` px)
    and overlap nothing of `previous`; `mask` itself where no part holds a positive click."""
    mask = np.asarray(mask, bool)
    positives = [c for c in clicks if c.positive]
    if not positives or not mask.any():
        return mask
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    clicked = np.zeros(count, bool)
    for c in positives:
        clicked[labels[max(c.y - reach, 0):c.y + reach + 1, max(c.x - reach, 0):c.x + reach + 1]] = True
    if not clicked[1:].any():
        return mask
    clicked[labels[np.asarray(previous, bool)]] = True
    clicked[0] = False  # the background
    return clicked[labels]
