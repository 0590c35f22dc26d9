"""Defect-Gen UNets on diffusers' `UNet2DModel`, built from a `Preset`.

The sample is the image (3 channels, [-1, 1]) concatenated with the one-hot mask (one channel per
class, background included, scaled to [-1, 1]); the model returns the same number of channels.

`norm: local` swaps every GroupNorm for `LocalGroupNorm`, which normalises each pixel over its
group's channels only: GroupNorm's statistics span the whole image, so with it even a 2-level UNet
lets every input pixel touch every output pixel (`receptive_field` measures it).
"""

from __future__ import annotations

import math
from typing import cast

import torch
from diffusers import UNet2DModel
from torch import nn

from defectspectrum.gen.presets import Preset


class LocalGroupNorm(nn.Module):
    """GroupNorm whose statistics are taken per pixel (over the group's channels), never across pixels.
    `_localise` uses one group (all channels of a pixel, as ConvNeXt's LayerNorm does): a group of one
    channel would normalise every value to 0."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__()
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        grouped = x.reshape(n, self.num_groups, c // self.num_groups, h, w)
        mean = grouped.mean(dim=2, keepdim=True)
        var = grouped.var(dim=2, keepdim=True, unbiased=False)
        out = ((grouped - mean) / torch.sqrt(var + self.eps)).reshape(n, c, h, w)
        if self.weight is not None and self.bias is not None:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out


def _localise(module: nn.Module) -> None:
    """Replace every nn.GroupNorm below `module` by a one-group LocalGroupNorm with the same affine."""
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm):
            local = LocalGroupNorm(1, child.num_channels, child.eps, child.affine)
            if child.affine:
                local.load_state_dict(child.state_dict())
            setattr(module, name, local)
        else:
            _localise(child)


def norm_groups(preset: Preset) -> int:
    """The largest group count <= preset.norm_groups that divides every level's width."""
    width = math.gcd(*preset.channels)
    return max(g for g in range(1, preset.norm_groups + 1) if width % g == 0)


def build_unet(preset: Preset, channels: int, sample_size: int | None = None) -> nn.Module:
    """A fresh (randomly initialised) UNet for samples of `channels` channels (3 + classes)."""
    levels = len(preset.channel_mult)
    attention = set(preset.attention_levels)
    down = tuple("AttnDownBlock2D" if level in attention else "DownBlock2D" for level in range(levels))
    up = tuple("AttnUpBlock2D" if level in attention else "UpBlock2D" for level in reversed(range(levels)))
    heads = min(preset.channels)  # one attention head per block; diffusers divides the width by this
    model = UNet2DModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels,
        block_out_channels=preset.channels, layers_per_block=preset.layers_per_block,
        down_block_types=down, up_block_types=up,
        mid_block_type="UNetMidBlock2D" if preset.mid_block else None,
        add_attention=preset.mid_attention, attention_head_dim=heads, norm_num_groups=norm_groups(preset),
        dropout=preset.dropout)
    module = cast(nn.Module, model)  # a UNet2DModel is a torch module; diffusers' types do not say so to mypy
    if preset.norm == "local":
        _localise(module)
    return module
