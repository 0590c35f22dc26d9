"""How raw images become model input: the one definition shared by training, prediction and ONNX.

A uint8 RGB image (H, W, 3) is divided by `scale` (255: values in [0, 1]) and normalised with
`mean`/`std` per channel, giving a float32 (3, H, W) array. Grey images are read as RGB (three
equal channels), so one model takes both. `run.json` and the ONNX sidecar store these numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from defectspectrum.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Input range and normalisation: `(pixel / scale - mean) / std`, channels in RGB order."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 255.0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (3, H, W) float32, normalised."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
        mean = np.asarray(self.mean, dtype=np.float32) * self.scale
        inv_std = 1.0 / (np.asarray(self.std, dtype=np.float32) * self.scale)
        out = (image.astype(np.float32) - mean) * inv_std
        return np.ascontiguousarray(out.transpose(2, 0, 1))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std), "channels": "RGB",
                "layout": "NCHW"}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Preprocess:
        try:
            mean = tuple(float(v) for v in data["mean"])
            std = tuple(float(v) for v in data["std"])
            scale = float(data.get("scale", 255.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: 'preprocess' must hold mean, std and scale ({exc})") from None
        values = (*mean, *std, scale)
        if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(v) for v in values) or min(std) <= 0 \
                or scale <= 0:
            raise InputError(f"{where}: 'preprocess' needs three finite means, three positive stds and a positive "
                             "scale")
        return cls(mean, std, scale)
