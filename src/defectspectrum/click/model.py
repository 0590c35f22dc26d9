"""ClickNet: the learned Defect-Click segmenter, a light smp UNet on 6 input channels.

```python
config = ClickModelConfig()                       # mobilenet_v2 UNet, 4.1M parameters, 16.8 MB fp32
model = build_click_model(config)                 # random init, nothing downloaded
logits = model(click_input(image_t, positive, negative, previous))   # (N, 1, H, W)
```

Input channels, in order: the normalised RGB image (`Preprocess`, ImageNet mean/std), the positive
and the negative click disk maps (radius 5 in input pixels, `clicks.click_maps`) and the previous
mask (0/1): RITM's and FocalClick's encoding. Output: one logit map at input size (any size: the
input is padded to a multiple of 32 by the zoo's `InputSizeAdapter`). The encoder is built with
`encoder_weights=None`: never a download. `width` scales the decoder channels (tests use a tiny
model: `ClickModelConfig("tu-mobilenetv3_small_050", width=0.125)`).

Measured (fp32 state dict, torch.save): mobilenet_v2, width 1: 4,135,921 parameters, 16.8 MB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from defectspectrum.errors import InputError

IN_CHANNELS = 6
DECODER_CHANNELS = (128, 64, 32, 16, 16)
DEFAULT_ENCODER = "mobilenet_v2"


@dataclass(frozen=True)
class ClickModelConfig:
    """What rebuilds a ClickNet: the smp encoder name, the decoder width factor and the click disk radius."""

    encoder: str = DEFAULT_ENCODER
    width: float = 1.0
    click_radius: int = 5

    def decoder_channels(self) -> tuple[int, ...]:
        """The UNet decoder's channels: DECODER_CHANNELS times `width`, at least 8 each."""
        return tuple(max(8, round(c * self.width)) for c in DECODER_CHANNELS)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> ClickModelConfig:
        """The config saved as `to_json`; InputError naming `where` for anything else."""
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or not set(data) <= names:
            raise InputError(f"{where}: not a Defect-Click model config (expected keys {', '.join(sorted(names))})")
        try:
            config = cls(str(data.get("encoder", DEFAULT_ENCODER)), float(data.get("width", 1.0)),
                         int(data.get("click_radius", 5)))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: bad Defect-Click model config ({exc})") from None
        return config


def build_click_model(config: ClickModelConfig) -> nn.Module:
    """ClickNet for `config` from random initialisation (no weights are ever downloaded)."""
    import segmentation_models_pytorch as smp

    from defectspectrum.seg.models.common import InputSizeAdapter

    if not 0 < config.width <= 4:
        raise InputError(f"model width must be in (0, 4], got {config.width}")
    try:
        core = smp.Unet(config.encoder, encoder_weights=None, in_channels=IN_CHANNELS, classes=1,
                        decoder_channels=config.decoder_channels())
    except (KeyError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise InputError(f"--encoder {config.encoder}: not an encoder smp can build ({reason}); "
                         f"try {DEFAULT_ENCODER}, timm-mobilenetv3_small_100 or resnet18") from None
    return InputSizeAdapter(core, 32, encoder="encoder")


def click_input(image: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                previous: torch.Tensor) -> torch.Tensor:
    """(N, 6, H, W): the (N, 3, H, W) normalised image, then the (N, H, W) positive, negative and previous maps."""
    return torch.cat([image, positive.unsqueeze(1), negative.unsqueeze(1), previous.unsqueeze(1)], dim=1)


def state_size(model: nn.Module) -> tuple[int, int]:
    """(parameters, bytes of the fp32 state dict)."""
    params = sum(p.numel() for p in model.parameters())
    size = sum(t.numel() * 4 for t in model.state_dict().values() if t.is_floating_point())
    return params, size
