"""Transforms that move a mask with its image: `(image, mask, rng) -> (image, mask)`.

`image` is uint8 RGB (H, W, 3), `mask` uint8 label indices (H, W) (255 = ignore); every random
choice is drawn from the explicit `rng` (a `numpy.random.Generator`, never torch's global RNG),
so an item's augmentation depends on (seed, epoch, index) only (see `dataset.DSDataset`).

Resampling runs through torchvision v2 (`tv_tensors.Image` / `tv_tensors.Mask`): images bilinear
(antialiased when shrinking), masks nearest neighbour with pixel centres aligned
(`NEAREST_EXACT`: an output pixel takes the label of the input pixel under its centre, the grid
the bilinear image uses; plain `NEAREST` would shift masks by up to half an input pixel). Masks
never get values their input did not have.

Policy for image sizes and shapes:
- training crops are square (`crop_size` x `crop_size`); images are never stretched: a random
  rescale keeps the aspect ratio (up to rounding to whole pixels);
- where an image (after rescaling) is smaller than the crop, the crop window extends past it and
  the rest is padding: image 0, mask 255 (ignored by the loss and the metric);
- `defect_crop` centres a share of the crops near a random defect pixel, so small defects in
  large images are seen (the idea of mmseg's `cat_max_ratio`); a defect thinner than 1/scale
  pixels can vanish when the image is shrunk;
- evaluation and prediction run on the whole image at native size (tiled where it is larger than
  the training crop), with no transform; `ResizeLong` is for users whose images are too large
  even for that: use the same `ResizeLong` in training and prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from defectspectrum.errors import InputError
from defectspectrum.seg.labels import IGNORE_INDEX

Pair = tuple[np.ndarray, np.ndarray]


class Transform(Protocol):
    """What DSDataset calls on each item: uint8 image (H, W, 3) and mask (H, W) in, the same out."""

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair: ...


# -- conversions and the geometric primitives --------------------------------------------------


def check_pair(image: np.ndarray, mask: np.ndarray) -> None:
    """InputError unless `image` is uint8 (H, W, 3) and `mask` uint8 (H, W) of the same size."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if mask.dtype != np.uint8 or mask.shape != image.shape[:2]:
        raise InputError(f"expected a uint8 mask of shape {image.shape[:2]}, got {mask.dtype} {mask.shape}")


def _to_tv(image: np.ndarray, mask: np.ndarray) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Views, no copies: the image as (3, H, W) with its pixels stored channels-last (torchvision's
    fast uint8 resize works in that layout)."""
    image_t = torch.from_numpy(_writable(image)).permute(2, 0, 1)
    return tv_tensors.Image(image_t), tv_tensors.Mask(torch.from_numpy(_writable(mask)))


def _writable(array: np.ndarray) -> np.ndarray:
    """`array` as torch.from_numpy takes it without a warning: C-contiguous and writable (copied if not)."""
    return np.require(array, requirements=["C", "W"])


def _from_tv(image: torch.Tensor, mask: torch.Tensor) -> Pair:
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy()), np.ascontiguousarray(mask.numpy())


def resize_pair(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> Pair:
    """Both resized to `size` (height, width): image bilinear (antialiased), mask nearest, centres aligned."""
    if tuple(size) == mask.shape:
        return image, mask
    image_t, mask_t = _to_tv(image, mask)
    image_t = F.resize(image_t, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)
    mask_t = F.resize(mask_t, list(size), interpolation=InterpolationMode.NEAREST_EXACT)
    return _from_tv(image_t, mask_t)


def crop_pair(image: np.ndarray, mask: np.ndarray, top: int, left: int, height: int, width: int) -> Pair:
    """The window (top, left, height, width); where it extends past the image (negative offsets
    included), image 0 and mask IGNORE_INDEX fill it."""
    h, w = mask.shape
    pads = [max(0, -left), max(0, -top), max(0, left + width - w), max(0, top + height - h)]  # l, t, r, b
    image_t, mask_t = _to_tv(image, mask)
    if any(pads):
        image_t = F.pad(image_t, pads, fill=0)
        mask_t = F.pad(mask_t, pads, fill=IGNORE_INDEX)
    top, left = top + pads[1], left + pads[0]
    return _from_tv(F.crop(image_t, top, left, height, width), F.crop(mask_t, top, left, height, width))


def rescaled_crop(image: np.ndarray, mask: np.ndarray, size: tuple[int, int], top: int, left: int,
                  crop_size: int) -> Pair:
    """The `crop_size` square at (top, left) of the pair resized to `size` (padded as `crop_pair`
    pads), resampling only the source window the crop needs plus a margin for the image filter.

    Where that window is smaller than the image, its grid may sit up to half an output pixel off the
    whole image's (the same shift for image and mask: they stay aligned); a 4000 px image then costs
    about what a crop-sized one does.
    """
    rows = _window(top, crop_size, size[0], mask.shape[0])
    cols = _window(left, crop_size, size[1], mask.shape[1])
    window = (slice(rows[0], rows[1]), slice(cols[0], cols[1]))
    image, mask = resize_pair(image[window], mask[window], (rows[3] - rows[2], cols[3] - cols[2]))
    return crop_pair(image, mask, top - rows[2], left - cols[2], crop_size, crop_size)


def flip_pair(image: np.ndarray, mask: np.ndarray, horizontal: bool) -> Pair:
    """Mirrored left-right (`horizontal`) or top-bottom."""
    flip = F.horizontal_flip if horizontal else F.vertical_flip
    image_t, mask_t = _to_tv(image, mask)
    return _from_tv(flip(image_t), flip(mask_t))


def rot90_pair(image: np.ndarray, mask: np.ndarray, k: int) -> Pair:
    """Rotated by k quarter turns counter-clockwise (exact: no resampling)."""
    return np.ascontiguousarray(np.rot90(image, k, axes=(0, 1))), np.ascontiguousarray(np.rot90(mask, k))


# -- transforms ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compose:
    """Apply `transforms` in order, each drawing from the same rng."""

    transforms: Sequence[Transform]

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        for transform in self.transforms:
            image, mask = transform(image, mask, rng)
        return image, mask


@dataclass(frozen=True)
class ResizeLong:
    """Shrink so that the longer side is at most `max_side`, aspect kept (smaller images unchanged)."""

    max_side: int

    def __post_init__(self) -> None:
        if self.max_side < 1:
            raise InputError(f"ResizeLong: max_side must be at least 1, not {self.max_side}")

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None = None) -> Pair:
        check_pair(image, mask)
        h, w = mask.shape
        if max(h, w) <= self.max_side:
            return image, mask
        factor = self.max_side / max(h, w)
        return resize_pair(image, mask, (max(1, round(h * factor)), max(1, round(w * factor))))

    def to_json(self) -> dict[str, Any]:
        return {"name": "resize-long", **asdict(self)}


@dataclass(frozen=True)
class TrainTransform:
    """Random rescale (factor uniform in `scale`, relative to the native size, aspect kept), a
    random `crop_size` square crop (padded where the image is smaller: image 0, mask 255), with
    probability `defect_crop` placed so that a random defect pixel lies in its middle half; then
    random flips and, with `rotate90`, a random number of quarter turns.

    Only the part of the image the crop needs is resampled (`rescaled_crop`).
    """

    crop_size: int = 256
    scale: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    vflip: bool = False
    rotate90: bool = False
    defect_crop: float = 0.5

    def __post_init__(self) -> None:
        low, high = self.scale
        if self.crop_size < 1:
            raise InputError(f"crop size must be at least 1, not {self.crop_size}")
        if not 0 < low <= high:
            raise InputError(f"scale range {self.scale}: needs 0 < low <= high")
        if not 0.0 <= self.defect_crop <= 1.0:
            raise InputError(f"defect_crop {self.defect_crop}: a probability, between 0 and 1")

    def to_json(self) -> dict[str, Any]:
        return {"name": "train", **asdict(self), "scale": list(self.scale)}

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        check_pair(image, mask)
        h, w = mask.shape
        factor = float(rng.uniform(*self.scale))
        out_h, out_w = max(1, round(h * factor)), max(1, round(w * factor))
        top, left = self._place(mask, out_h, out_w, rng)
        image, mask = rescaled_crop(image, mask, (out_h, out_w), top, left, self.crop_size)
        if self.hflip and rng.random() < 0.5:
            image, mask = flip_pair(image, mask, horizontal=True)
        if self.vflip and rng.random() < 0.5:
            image, mask = flip_pair(image, mask, horizontal=False)
        if self.rotate90:
            image, mask = rot90_pair(image, mask, int(rng.integers(4)))
        return image, mask

    def _place(self, mask: np.ndarray, out_h: int, out_w: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner of the crop in the rescaled image (negative where it is padded)."""
        c = self.crop_size
        low_y, high_y = min(0, out_h - c), max(0, out_h - c)
        low_x, high_x = min(0, out_w - c), max(0, out_w - c)
        if rng.random() < self.defect_crop:
            defects = np.flatnonzero((mask != 0) & (mask != IGNORE_INDEX))
            if defects.size:
                y, x = divmod(int(defects[rng.integers(defects.size)]), mask.shape[1])
                # the output pixel under the source pixel's centre, placed in the crop's middle half
                y_out = math.floor((y + 0.5) * out_h / mask.shape[0])
                x_out = math.floor((x + 0.5) * out_w / mask.shape[1])
                jitter = rng.integers(-(c // 4), c // 4 + 1, size=2)
                top = int(np.clip(y_out - c // 2 + jitter[0], low_y, high_y))
                left = int(np.clip(x_out - c // 2 + jitter[1], low_x, high_x))
                return top, left
        return int(rng.integers(low_y, high_y + 1)), int(rng.integers(low_x, high_x + 1))

def _window(start: int, length: int, out_n: int, n: int) -> tuple[int, int, int, int]:
    """Along one axis of n source pixels rescaled to out_n: the source span [s0, s1) covering output
    pixels [start, start + length) (clipped to the image) with a filter margin, and where that span
    lands in the output, [o0, o1). The whole axis maps to [0, out_n) exactly."""
    scale = out_n / n
    first, last = max(0, start), min(out_n, start + length)  # output pixels inside the image
    margin = 2 + math.ceil(1 / scale)  # the antialiasing filter reaches 1/scale source pixels
    s0 = max(0, math.floor(first / scale) - margin)
    s1 = min(n, math.ceil(last / scale) + margin)
    return s0, s1, round(s0 * scale), round(s1 * scale)
