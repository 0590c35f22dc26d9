"""`ClickPredictor`: ClickNet driven FocalClick's way, a `noc.Segmenter` for any image size.

Per click, at most two passes of the model, each at a fixed input size whatever the image's:

1. Look: the first click on an empty mask runs the coarse pass, the whole image resized so its long
   side is `coarse_side` (256). A later click (or a first click on a given mask) looks at the target
   box instead (`focus.target_box`: the previous mask and every click, grown), resized so its long side
   is `focus_side`. Logits are resized back bilinearly and thresholded at 0.5.
2. Refine: the focus box (`focus.focus_box`: the region that changed in step 1 and the click, grown, at
   least `focus_min` px) is cut from the full-resolution image and run at `focus_side` (a small
   box is enlarged, so thin defects are seen at more pixels than they have). It is skipped where
   step 1 already saw that box at full resolution or finer (its crop was not shrunk).
3. Merge: inside the focus box the refined mask replaces the previous one; outside it the previous
   mask is kept (after the coarse pass: the coarse mask).
4. Clicked parts only (`focus.keep_clicked_parts`, on unless `clicked_parts_only=False`): new parts
   connected to no positive click are dropped, so look-alike spots elsewhere in the image are not added.
5. Refinement (only with `refine="grabcut"`, or a model name ending in `+grabcut`): GrabCut takes the
   mask as its probable foreground and the clicks as definite labels, in the window of the classical
   baselines (`baselines.grabcut_refiner`); its colour models move the mask's edge to the object's.

Model input per pass: the crop of the normalised image, the click disks of the clicks inside the crop
(at crop-input coordinates, radius `config.click_radius` input pixels) and the previous mask's crop.
What does not depend on the clicks (the normalised full-resolution image, its coarse resize) is
computed once per image (`ImageFeatures`) and reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from defectspectrum.click.baselines import REFINEMENTS, split_refined
from defectspectrum.click.clicks import Click, click_maps
from defectspectrum.click.focus import (
    FOCUS_MARGIN,
    FOCUS_MIN,
    Box,
    focus_box,
    keep_clicked_parts,
    merge,
    target_box,
)
from defectspectrum.click.model import ClickModelConfig, click_input
from defectspectrum.errors import InputError
from defectspectrum.seg.preprocess import Preprocess

THRESHOLD = 0.5
COARSE_SIDE = 256
FOCUS_SIDE = 256


def resize_tensor(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) float resized bilinearly to `size` (antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def fit_side(height: int, width: int, side: int) -> tuple[tuple[int, int], float]:
    """((h, w), scale): the size with long side `side` keeping the aspect ratio, and the scale to it."""
    scale = side / max(height, width)
    return (max(1, round(height * scale)), max(1, round(width * scale))), scale


@dataclass
class ImageFeatures:
    """What does not depend on the clicks: the image normalised at full and at coarse resolution."""

    shape: tuple[int, int]
    full: torch.Tensor  # (1, 3, H, W)
    coarse: torch.Tensor  # (1, 3, h, w), long side coarse_side
    rgb: np.ndarray | None = None  # the (H, W, 3) uint8 image, kept where a refinement needs it


def crop_clicks(clicks: Sequence[Click], box: Box, scale_y: float, scale_x: float) -> list[Click]:
    """The clicks inside `box`, moved to the box's input pixels (scaled by `scale_y`/`scale_x`)."""
    y0, y1, x0, x1 = box
    return [Click(int((c.y - y0 + 0.5) * scale_y), int((c.x - x0 + 0.5) * scale_x), c.positive)
            for c in clicks if y0 <= c.y < y1 and x0 <= c.x < x1]


class ClickPredictor:
    """ClickNet with FocalClick's coarse pass, focus crop and merge (the module's rules); CPU by default."""

    def __init__(self, model: nn.Module | Callable[[torch.Tensor], torch.Tensor], config: ClickModelConfig, *,
                 coarse_side: int = COARSE_SIDE,
                 focus_side: int = FOCUS_SIDE, focus_min: int = FOCUS_MIN, margin: float = FOCUS_MARGIN,
                 threshold: float = THRESHOLD, device: str | torch.device = "cpu",
                 preprocess: Preprocess | None = None, clicked_parts_only: bool = True,
                 refine: str | None = None) -> None:
        if min(coarse_side, focus_side, focus_min) < 8:
            raise InputError("coarse_side, focus_side and focus_min must be at least 8 px")
        if refine is not None and refine not in REFINEMENTS:
            raise InputError(f"unknown refinement {refine!r}; choose {', '.join(REFINEMENTS)} or none")
        self.refine_with = REFINEMENTS[refine]() if refine is not None else None
        self.device = torch.device(device)
        if isinstance(model, nn.Module):  # else a runner such as onnx_export.OnnxClickNet (CPU)
            model = model.to(self.device).eval()
        self.model = model
        self.config = config
        self.coarse_side, self.focus_side, self.focus_min, self.margin = coarse_side, focus_side, focus_min, margin
        self.threshold = threshold
        self.clicked_parts_only = clicked_parts_only
        self.preprocess = preprocess or Preprocess()
        self._cache: tuple[tuple[int, tuple[int, ...], int], ImageFeatures] | None = None

    # -- the image ----------------------------------------------------------------------------------

    def features(self, image: np.ndarray) -> ImageFeatures:
        """The click-independent tensors of a (H, W, 3) uint8 RGB image."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
        full = torch.from_numpy(self.preprocess(image)).unsqueeze(0).to(self.device)
        size, _ = fit_side(image.shape[0], image.shape[1], self.coarse_side)
        rgb = image if self.refine_with is not None else None
        return ImageFeatures((image.shape[0], image.shape[1]), full, resize_tensor(full, size), rgb)

    def _features_cached(self, image: np.ndarray) -> ImageFeatures:
        key = (id(image), tuple(image.shape), hash(np.ascontiguousarray(image[::13, ::13]).tobytes()))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.features(image))
        return self._cache[1]

    # -- the passes ---------------------------------------------------------------------------------

    @torch.no_grad()
    def run(self, image: torch.Tensor, clicks: Sequence[Click], previous: np.ndarray) -> np.ndarray:
        """Probabilities (h, w) float32 of the model on one input-size crop: `image` (1, 3, h, w), the
        clicks at its pixels, `previous` (h, w) in [0, 1]."""
        shape = (int(image.shape[-2]), int(image.shape[-1]))
        positive, negative = click_maps(shape, clicks, self.config.click_radius)
        maps = [torch.from_numpy(m).unsqueeze(0).to(self.device) for m in (positive, negative)]
        prev = torch.from_numpy(np.ascontiguousarray(previous, np.float32)).unsqueeze(0).to(self.device)
        logits = self.model(click_input(image, maps[0], maps[1], prev))
        return torch.sigmoid(logits[0, 0].float()).cpu().numpy()

    def _pass(self, features: ImageFeatures, clicks: Sequence[Click], previous: np.ndarray, box: Box,
              side: int, source: torch.Tensor | None = None) -> tuple[np.ndarray, float]:
        """The model on `box` of the image at long side `side`: (bool mask of the box's size, scale used)."""
        y0, y1, x0, x1 = box
        size, scale = fit_side(y1 - y0, x1 - x0, side)
        if source is None:
            crop = resize_tensor(features.full[..., y0:y1, x0:x1], size)
        else:
            crop = source  # the cached coarse image, box = the whole image
        scale_y, scale_x = size[0] / (y1 - y0), size[1] / (x1 - x0)
        prev = torch.from_numpy(np.ascontiguousarray(previous[y0:y1, x0:x1], np.float32))[None, None]
        prev_in = F.interpolate(prev, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
        probs = self.run(crop, crop_clicks(clicks, box, scale_y, scale_x), prev_in)
        back = resize_tensor(torch.from_numpy(probs)[None, None], (y1 - y0, x1 - x0))[0, 0].numpy()
        return back >= self.threshold, scale

    def coarse(self, features: ImageFeatures, clicks: Sequence[Click], previous: np.ndarray) -> tuple[np.ndarray,
                                                                                                     float]:
        """Step 1 for the first click: the whole image at `coarse_side` (the cached resize)."""
        height, width = features.shape
        return self._pass(features, clicks, previous, (0, height, 0, width), self.coarse_side, features.coarse)

    def look(self, features: ImageFeatures, clicks: Sequence[Click], previous: np.ndarray) -> tuple[Box, np.ndarray,
                                                                                                   float]:
        """Step 1 for a later click: the target box at `focus_side`; (box, its mask, scale)."""
        box = target_box(previous, list(clicks), self.margin, self.focus_min)
        mask, scale = self._pass(features, clicks, previous, box, self.focus_side)
        return box, mask, scale

    def refine(self, features: ImageFeatures, clicks: Sequence[Click], previous: np.ndarray, box: Box) -> np.ndarray:
        """Step 2: the focus box from the full-resolution image at `focus_side`; bool mask of the box's size."""
        return self._pass(features, clicks, previous, box, self.focus_side)[0]

    # -- one click ----------------------------------------------------------------------------------

    def step(self, features: ImageFeatures, clicks: Sequence[Click], previous: np.ndarray) -> np.ndarray:
        """The mask after the last of `clicks` (bool H x W), from the previous mask, by the module's rules."""
        if not clicks:
            raise InputError("a prediction needs at least one click")
        previous = np.asarray(previous, bool)
        if previous.shape != features.shape:
            raise InputError(f"previous mask {previous.shape} and image {features.shape} differ in size")
        height, width = features.shape
        if len(clicks) == 1 and not previous.any():
            new, scale = self.coarse(features, clicks, previous)
            looked: Box = (0, height, 0, width)
            base = new  # outside the focus box the coarse mask stands
        else:
            looked, part, scale = self.look(features, clicks, previous)
            new = merge(previous, part, looked)
            base = previous
        box = focus_box(previous, new, clicks[-1], self.margin, self.focus_min)
        inside = looked[0] <= box[0] and box[1] <= looked[1] and looked[2] <= box[2] and box[3] <= looked[3]
        if inside and scale >= 1.0:  # step 1 saw the focus box at full resolution already
            mask = merge(base, new, box)
        else:
            mask = merge(base, self.refine(features, clicks, previous, box), box)
        if self.clicked_parts_only:
            mask = keep_clicked_parts(mask, previous, clicks)
        if self.refine_with is not None:
            rgb = features.rgb
            if rgb is None:
                raise InputError("these image features were made without the image a refinement needs; make "
                                 "them with this predictor's features()")
            mask = self.refine_with.predict(rgb, clicks, mask)
        return mask

    def predict(self, image: np.ndarray, clicks: Sequence[Click], previous: np.ndarray) -> np.ndarray:
        """`noc.Segmenter`: the object's mask (bool H x W) after the last of `clicks`."""
        return self.step(self._features_cached(np.asarray(image)), clicks, previous)


def load_predictor(name: str | Path, device: str = "cpu", **options: Any) -> ClickPredictor:
    """A ClickPredictor of `default`, a run folder, a checkpoint, a weights file or an exported .onnx
    (onnxruntime on the CPU); a `+grabcut` suffix refines its masks by GrabCut (`baselines.split_refined`)."""
    from defectspectrum.click.model_files import load_click_model

    name, refine = split_refined(str(name))
    if refine is not None:
        options.setdefault("refine", refine)
    if str(name).lower().endswith(".onnx"):
        from defectspectrum.click.onnx_export import OnnxClickNet

        runner = OnnxClickNet(Path(name))
        return ClickPredictor(runner, runner.config, **options)
    model, config = load_click_model(name)
    return ClickPredictor(model, config, device=device, **options)
