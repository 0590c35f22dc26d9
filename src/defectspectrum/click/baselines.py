"""Two classical segmenters driven by the same clicks as the learned model: GrabCut and random walker.

Both implement `noc.Segmenter` and share three rules:

- The window (crop rule): they work on a window of the image, the bounding box of the clicks and of
  the previous mask, grown on every side by 32 px plus half its longer side, then to at least
  `MIN_WINDOW` (256) px a side where the image allows, kept inside the image. Images up to 256 px a
  side are therefore used whole. A window longer than `MAX_WINDOW` (512) px is shrunk to that (area
  interpolation; the clicks scaled with it) and its mask enlarged back (nearest). Outside the window
  the mask is background. This keeps a click on a 4096 px line-scan frame as fast as on a thumbnail.
- Click disks: a click marks the pixels within `radius` (5) of it, later clicks over earlier ones.
- Connectivity: only the 8-connected parts of the result that touch a positive disk are kept, so a
  look-alike patch elsewhere on the surface is not added to the object.

Where an algorithm cannot run (GrabCut without any background or foreground sample, random walker
without background seeds) the answer falls back to the previous mask plus the positive disks minus
the negative disks, so an evaluation never stops on a degenerate image.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import cv2
import numpy as np

from defectspectrum.click.clicks import CLICK_RADIUS, Click, disk

MIN_WINDOW = 256
MAX_WINDOW = 512
WINDOW_MARGIN = 32


def window(shape: tuple[int, int], clicks: Sequence[Click], previous: np.ndarray | None = None,
           min_side: int = MIN_WINDOW) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), ends excluded: the crop rule of the module for an image of `shape` (H, W)."""
    height, width = shape
    ys = [c.y for c in clicks]
    xs = [c.x for c in clicks]
    if previous is not None and previous.any():
        rows, cols = np.flatnonzero(previous.any(axis=1)), np.flatnonzero(previous.any(axis=0))
        ys += [int(rows[0]), int(rows[-1])]
        xs += [int(cols[0]), int(cols[-1])]
    if not ys:
        return 0, height, 0, width
    y0, y1, x0, x1 = min(ys), max(ys) + 1, min(xs), max(xs) + 1
    grow = WINDOW_MARGIN + max(y1 - y0, x1 - x0) // 2
    y0, y1, x0, x1 = y0 - grow, y1 + grow, x0 - grow, x1 + grow

    def fit(lo: int, hi: int, size: int) -> tuple[int, int]:
        if hi - lo < min_side:  # grow to min_side, centred
            extra = min_side - (hi - lo)
            lo, hi = lo - extra // 2, hi + extra - extra // 2
        if lo < 0:  # slide inside the image, then cut what still sticks out
            lo, hi = 0, hi - lo
        if hi > size:
            lo, hi = lo - (hi - size), size
        return max(lo, 0), min(hi, size)

    (y0, y1), (x0, x1) = fit(y0, y1, height), fit(x0, x1, width)
    return y0, y1, x0, x1


def _disks(shape: tuple[int, int], clicks: Sequence[Click], radius: int, positive: bool) -> np.ndarray:
    found = np.zeros(shape, bool)
    for click in clicks:
        if click.positive == positive:
            found |= disk(shape, click.y, click.x, radius)
    return found


def fallback(shape: tuple[int, int], clicks: Sequence[Click], previous: np.ndarray, radius: int) -> np.ndarray:
    """The previous mask plus the positive disks minus the negative disks (later clicks win)."""
    mask = np.asarray(previous, bool).copy()
    for click in clicks:
        mask[disk(shape, click.y, click.x, radius)] = click.positive
    return mask


def parts_at_positive_clicks(mask: np.ndarray, clicks: Sequence[Click], radius: int) -> np.ndarray:
    """Only the 8-connected parts of bool `mask` that touch a positive click's disk."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    touched = np.unique(labels[_disks(mask.shape, clicks, radius, True) & mask])
    return np.isin(labels, touched[touched > 0])


class _Windowed:
    """The shared window, scaling and connectivity rules; subclasses segment one window in `_segment`."""

    name = "windowed"

    def __init__(self, radius: int = CLICK_RADIUS) -> None:
        self.radius = radius

    def predict(self, image: np.ndarray, clicks: Sequence[Click], previous: np.ndarray) -> np.ndarray:
        """The object's bool mask of the image's size (see the module)."""
        shape = (int(image.shape[0]), int(image.shape[1]))
        previous = np.asarray(previous, bool)
        result = np.zeros(shape, bool)
        if not clicks:
            return result
        y0, y1, x0, x1 = window(shape, clicks, previous)
        crop, before = image[y0:y1, x0:x1], previous[y0:y1, x0:x1]
        local = [Click(c.y - y0, c.x - x0, c.positive) for c in clicks]
        scale = min(1.0, MAX_WINDOW / max(y1 - y0, x1 - x0))
        radius = self.radius
        if scale < 1.0:
            size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))  # (w, h) for cv2
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            before = cv2.resize(before.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
            local = [Click(min(int(c.y * scale), size[1] - 1), min(int(c.x * scale), size[0] - 1), c.positive)
                     for c in local]
            radius = max(1, round(radius * scale))
        mask = parts_at_positive_clicks(self._segment(np.ascontiguousarray(crop), local, before, radius), local, radius)
        if scale < 1.0:
            mask = cv2.resize(mask.astype(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST) > 0
        result[y0:y1, x0:x1] = mask
        return result

    def _segment(self, image: np.ndarray, clicks: Sequence[Click], previous: np.ndarray, radius: int) -> np.ndarray:
        raise NotImplementedError


class GrabCut(_Windowed):
    """cv2.grabCut initialised from the clicks (mask mode).

    In the window: the previous mask and a disk of `around` x radius about each positive click are probable
    foreground, every other pixel probable background; positive disks are definite foreground and negative
    disks definite background. The colour models are re-estimated `iterations` times. OpenCV's random
    generator is seeded before each call, so a mask does not depend on what GrabCut ran before.
    """

    name = "grabcut"

    def __init__(self, radius: int = CLICK_RADIUS, iterations: int = 3, around: int = 4) -> None:
        super().__init__(radius)
        self.iterations = iterations
        self.around = around

    def _segment(self, image: np.ndarray, clicks: Sequence[Click], previous: np.ndarray, radius: int) -> np.ndarray:
        shape = previous.shape
        labels = np.full(shape, cv2.GC_PR_BGD, np.uint8)
        labels[previous] = cv2.GC_PR_FGD
        labels[_disks(shape, clicks, self.around * radius, True)] = cv2.GC_PR_FGD
        for click in clicks:
            labels[disk(shape, click.y, click.x, radius)] = cv2.GC_FGD if click.positive else cv2.GC_BGD
        if not np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():  # no background sample: GrabCut cannot start
            return fallback(shape, clicks, previous, radius)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # its colour models start from k-means on OpenCV's global RNG: same input, same mask
        try:
            cv2.grabCut(_rgb8(image), labels, (0, 0, 0, 0), bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # degenerate input (e.g. too few distinct colours for its mixture models)
            return fallback(shape, clicks, previous, radius)
        return np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))


class RandomWalker(_Windowed):
    """skimage.segmentation.random_walker with the click disks as seeds.

    Positive disks seed the object, negative disks the background. Background seeds are also needed
    before the first negative click, and a walker with only far-away negatives floods the surface, so
    the window's outer 1 px frame always seeds background too, except within `clear` x radius of a
    positive click (an object touching the frame keeps its clicked end). The walker is memoryless: it
    sees the clicks, not the previous mask.
    """

    name = "random-walker"

    def __init__(self, radius: int = CLICK_RADIUS, beta: float = 130.0, clear: int = 3) -> None:
        super().__init__(radius)
        self.beta = beta
        self.clear = clear

    def _segment(self, image: np.ndarray, clicks: Sequence[Click], previous: np.ndarray, radius: int) -> np.ndarray:
        from skimage.segmentation import random_walker

        shape = previous.shape
        seeds = np.zeros(shape, np.int32)
        frame = np.ones(shape, bool)
        frame[1:-1, 1:-1] = False
        seeds[frame & ~_disks(shape, clicks, self.clear * radius, True)] = 2
        for click in clicks:
            seeds[disk(shape, click.y, click.x, radius)] = 1 if click.positive else 2
        if not (seeds == 2).any() or not (seeds == 1).any() or (seeds > 0).all():
            return fallback(shape, clicks, previous, radius)
        data = _rgb8(image).astype(np.float32) / 255.0
        with warnings.catch_warnings():  # isolated unseeded pixels and slow convergence only warn
            warnings.simplefilter("ignore")
            try:
                labels = random_walker(data, seeds, beta=self.beta, mode="cg_j", tol=1e-3, channel_axis=-1)
            except (ValueError, np.linalg.LinAlgError):
                return fallback(shape, clicks, previous, radius)
        return np.asarray(labels == 1)


def _rgb8(image: np.ndarray) -> np.ndarray:
    """`image` as contiguous (H, W, 3) uint8 (a grey (H, W) image is repeated into three channels)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[:, :, :3])


BASELINES: dict[str, type[_Windowed]] = {"grabcut": GrabCut, "random-walker": RandomWalker}


def make_baseline(name: str, radius: int = CLICK_RADIUS) -> _Windowed:
    """A new baseline segmenter by name (`BASELINES`); KeyError for another name."""
    return BASELINES[name](radius)


def split_refined(name: str) -> tuple[str, str | None]:
    """(model, refinement) of a model name: `default+grabcut` is the model `default` with every mask it
    gives refined by GrabCut (`grabcut_refiner`); a name without such a suffix has no refinement."""
    base, plus, suffix = str(name).rpartition("+")
    if plus and base and suffix in REFINEMENTS:
        return base, suffix
    return str(name), None


def grabcut_refiner(radius: int = CLICK_RADIUS) -> GrabCut:
    """GrabCut as a refinement of a learned model's mask: given that mask as `previous`, the mask is its
    probable foreground and the clicks are its definite labels, with no extra probable disk about positive
    clicks (`around=0`): the colour models move the mask's edge to the object's."""
    return GrabCut(radius, around=0)


REFINEMENTS = {"grabcut": grabcut_refiner}  # a refinement's name (a model name's suffix) -> its maker
