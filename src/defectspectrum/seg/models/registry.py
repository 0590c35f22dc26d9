"""The model zoo's registry: every segmentation model is built by name, from scratch.

```python
@register_model("unet-small", paper="UNet-small", summary="UNet, ResNet-18 encoder (smp)")
def unet_small(num_classes: int, in_channels: int = 3) -> nn.Module: ...

model = create_model("unet-small", num_classes=4)                # random init, nothing downloaded
model = create_model("unet-small", 4, weights=Path("r18.pth"))   # + a local checkpoint
```

Every model maps a float tensor (N, in_channels, H, W) of any size to per-pixel logits
(N, num_classes, H, W) at input resolution. A model with a training objective of its own (e.g.
Mask2Former's set loss) also defines `loss(images, targets) -> (loss, logits)`; the trainer uses
it where present, cross-entropy (+ dice) on the logits otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defectspectrum.errors import InputError

if TYPE_CHECKING:
    from torch import nn

ModelBuilder = Callable[..., "nn.Module"]


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its CLI name, the paper's name for it and a one-line summary."""

    name: str
    paper: str
    summary: str
    build: ModelBuilder


_MODELS: dict[str, ModelInfo] = {}
# The paper's Table 2 order; models registered by users follow in registration order.
PAPER_ORDER = ("unet-small", "pspnet-r18", "deeplabv3plus-r18", "hrnet-w18-small", "bisenetv2",
               "segmenter-vit-tiny", "segformer-mit-b0", "mask2former")


def register_model(name: str, *, paper: str, summary: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: register `build(num_classes, in_channels=3) -> nn.Module` under `name`."""

    def decorate(build: ModelBuilder) -> ModelBuilder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = ModelInfo(name, paper, summary, build)
        return build

    return decorate


def _load_builtin_models() -> None:
    from defectspectrum.seg.models import zoo  # noqa: F401  (registers the built-in models)


def model_names() -> list[str]:
    """Registered model names, in registration order (the paper's Table 2 order for the built-ins)."""
    _load_builtin_models()
    rank = {name: i for i, name in enumerate(PAPER_ORDER)}
    return sorted(_MODELS, key=lambda name: rank.get(name, len(rank)))


def model_info(name: str) -> ModelInfo:
    """The registered model `name`; InputError listing the known names otherwise."""
    _load_builtin_models()
    try:
        return _MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(_MODELS)}") from None


def create_model(name: str, num_classes: int, *, in_channels: int = 3, weights: Path | None = None,
                 **options: Any) -> nn.Module:
    """Build model `name` from random initialisation; with `weights`, load a local checkpoint into
    it (`seg.models.weights.load_weights`: an encoder checkpoint, e.g. timm ImageNet weights, or a
    whole model). Never downloads anything."""
    info = model_info(name)
    if num_classes < 2:
        raise InputError(f"a segmentation model needs at least 2 classes (background + a defect), got {num_classes}")
    model = info.build(num_classes, in_channels=in_channels, **options)
    if weights is not None:
        from defectspectrum.seg.models.weights import load_weights

        load_weights(model, Path(weights), name=name)
    return model
