"""Any input size in, logits at input size out: the wrapper every zoo model shares.

```python
model = InputSizeAdapter(core, multiple=32)             # core: (N, C_in, 32k, 32m) -> logits at any scale
model = InputSizeAdapter(core, 32, encoder="encoder",   # where an encoder checkpoint goes (weights.py)
                         encoder_checkpoint="a timm resnet18 ImageNet checkpoint")
```

The input is padded with zeros at the bottom and right to a multiple of `multiple` (zero is the
mean colour after `Preprocess`), the core runs, its logits are resized bilinearly
(align_corners=False) to the padded size where the core outputs a lower resolution, and cropped
back to the input size. Padding only at the bottom/right keeps pixel (0, 0) where it was, so the
crop is a plain slice and tiled inference lines up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class InputSizeAdapter(nn.Module):
    """Wrap `core` so it takes any (H, W) and returns (N, num_classes, H, W) logits.

    `encoder`: dotted path of the core's pretrainable encoder (e.g. "encoder"), used by
    `weights.load_weights` to place an encoder checkpoint; `encoder_checkpoint` says which
    checkpoint fits it, for error messages.
    """

    def __init__(self, core: nn.Module, multiple: int = 32, *, encoder: str | None = None,
                 encoder_checkpoint: str = "") -> None:
        super().__init__()
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        self.core = core
        self.multiple = multiple
        self.encoder_path = f"core.{encoder}" if encoder else None
        self.encoder_checkpoint = encoder_checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        x = pad_to_multiple(x, self.multiple)
        logits = self.core(x)
        return fit_logits(logits, (x.shape[-2], x.shape[-1]), (height, width))


_STATIC_EXPORT = [False]


@contextmanager
def static_export() -> Iterator[None]:
    """Within it, an export is traced at one fixed input size: the adapter then records plain
    numbers, which ops such as adaptive pooling (PSPNet) need to be exportable at all."""
    _STATIC_EXPORT[0] = True
    try:
        yield
    finally:
        _STATIC_EXPORT[0] = False


def _tracing() -> bool:
    """True while torch.jit.trace / torch.onnx.export (TorchScript) records an export for any input
    size: sizes are then traced tensors, and a Python `if` on them would freeze the export to the
    example's size."""
    return (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()) and not _STATIC_EXPORT[0]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad (N, C, H, W) at the bottom and right so H and W are multiples of `multiple`."""
    pad_h = (multiple - x.shape[-2] % multiple) % multiple
    pad_w = (multiple - x.shape[-1] % multiple) % multiple
    if not _tracing() and pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


def fit_logits(logits: torch.Tensor, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Resize logits to the `padded` input size (bilinear, align_corners=False) where the model
    outputs a lower resolution, then crop the padding off: (N, C, size[0], size[1])."""
    if _tracing() or (logits.shape[-2], logits.shape[-1]) != tuple(padded):
        logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
    return logits[..., : size[0], : size[1]]
