"""A model's effective receptive field, measured: the input gradient of one output pixel.

```python
field = effective_receptive_field(model, channels=8, size=64)
field.radius      # half-side (px) of the centred square holding 95% of the gradient mass
field.extent      # half-side of the square outside which the gradient is exactly 0
```

The mass radius is what the model mostly looks at; the extent is where it can look at all. A UNet
with GroupNorm has a small mass radius but an extent of the whole image (its statistics span every
pixel); with `norm: local` the extent is the convolutions' reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ReceptiveField:
    """`radius`: half-side (px) of the smallest centred square holding `mass` of |d out / d in|;
    `extent`: half-side of the smallest centred square outside which the gradient is 0;
    `gradient`: the (size, size) map of |d out / d in| summed over channels."""

    radius: int
    extent: int
    mass: float
    gradient: np.ndarray

    @property
    def covers_image(self) -> bool:
        """True where some input pixel at the image border still moves the centre output."""
        return self.extent >= self.gradient.shape[0] // 2


def effective_receptive_field(model: nn.Module, channels: int, size: int = 64, timestep: int = 500,
                              mass: float = 0.95, seed: int = 0) -> ReceptiveField:
    """Measure `model` (called as `model(x, t).sample`, e.g. a UNet2DModel) on one random
    `size` x `size` input: the gradient of the centre output pixel (summed over channels) with
    respect to every input pixel, in evaluation mode. (Pixels out of the convolutions' reach get an
    exact 0: no path carries a gradient to them.)"""
    was_training = model.training
    first = next(model.parameters())
    model.eval()
    try:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(1, channels, size, size, generator=generator, dtype=first.dtype).to(first.device)
        x.requires_grad_(True)
        out = model(x, torch.tensor([timestep], device=first.device)).sample
        centre = size // 2
        out[0, :, centre, centre].sum().backward()
        assert x.grad is not None
        grad = x.grad.abs().sum(dim=1)[0].cpu().numpy()
    finally:
        model.train(was_training)
    total = float(grad.sum())
    radius = extent = size // 2
    if total > 0:
        for r in range(size // 2 + 1):
            window = grad[max(0, centre - r): centre + r + 1, max(0, centre - r): centre + r + 1]
            if float(window.sum()) >= mass * total:
                radius = r
                break
        ys, xs = np.nonzero(grad)
        extent = int(max(np.abs(ys - centre).max(), np.abs(xs - centre).max()))
    return ReceptiveField(radius, extent, mass, grad)
