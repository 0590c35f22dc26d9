"""The zoo's models that segmentation-models-pytorch and timm build: UNet, PSPNet, DeepLabV3+,
HRNetV2 and SegFormer, all from random initialisation (`encoder_weights=None`, never a download).

Each is wrapped in `InputSizeAdapter` (any input size, logits at input size) with its encoder
named, so `weights.load_weights` can place an ImageNet encoder checkpoint the user has:
a timm/torchvision resnet18, a timm hrnet_w18_small_v2 or a MiT-B0 state dict.

Choices, against the paper's Table 2 names:
- unet-small: smp `Unet` with a ResNet-18 encoder and smp's standard decoder (256, 128, 64, 32,
  16 channels), 14.3M parameters. "Small" is the ResNet-18 encoder; a thinner decoder would save
  only ~2M parameters (the encoder holds 11.2M) and no longer be the UNet people compare with.
- pspnet-r18: smp `PSPNet` on a ResNet-18 with layer4 dilated (output stride 16, as the
  DeepLabV3+ here): pyramid pooling on layer4's features at 1/16, a 128-channel bottleneck (as
  mmseg's R-18 heads), logits at 1/16. `output_stride=8` is mmseg's pspnet_r18-d8 and the
  original PSPNet, at ~2.8x the cost of 16 (8.1 s vs 2.9 s per batch of 8 at 256 px, one
  core); `output_stride=32` (1.9 s) gives logits at 1/32, too coarse to outline a defect
  smaller than ~32 px. smp's default `encoder_depth=3` would build layer3/layer4 that never get
  a gradient and break DistributedDataParallel, so the depth is 5.
- deeplabv3plus-r18: smp `DeepLabV3Plus`, output stride 16 (dilated layer4; `output_stride=8`
  is mmseg's r18-d8 setting at 2-3x the cost), separable ASPP, logits at 1/4.
- hrnet-w18-small: HRNetV2-W18-Small (timm `hrnet_w18_small_v2`: 1/2/3/2 modules with 2 blocks
  per branch, as mmseg's `hrnetv2_w18_small`) with the HRNetV2 head mmseg uses: all four branches
  resized to 1/4, concatenated (270 channels), 1x1 conv-BN-ReLU, 1x1 classifier. smp's
  `tu-hrnet_w18_small` is the smaller V1 net under a UNet decoder, so it is not used.
- segformer-mit-b0: smp `Segformer("mit_b0")`: MiT-B0 encoder and the all-MLP decoder with 256
  channels, logits at 1/4 upsampled to the input.
"""

from __future__ import annotations

from typing import Any, cast

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from torch import nn

from defectspectrum.errors import InputError
from defectspectrum.seg.models.common import InputSizeAdapter
from defectspectrum.seg.models.registry import register_model

RESNET18_CHECKPOINT = ("a timm or torchvision resnet18 ImageNet state dict "
                       "(e.g. timm.create_model('resnet18').state_dict())")
MIT_B0_CHECKPOINT = ("a SegFormer MiT-B0 ImageNet state dict (mit_b0.pth as NVlabs and smp publish it, "
                     "or model.safetensors of Hugging Face's nvidia/mit-b0)")
HRNET_CHECKPOINT = "a timm hrnet_w18_small_v2 ImageNet state dict"


def _smp(core: nn.Module, checkpoint: str) -> InputSizeAdapter:
    """An smp model: it needs input sizes divisible by its output stride, 32."""
    return InputSizeAdapter(core, multiple=32, encoder="encoder", encoder_checkpoint=checkpoint)


@register_model("unet-small", paper="UNet-small", summary="UNet, ResNet-18 encoder, 5-stage decoder (smp)")
def unet_small(num_classes: int, in_channels: int = 3) -> nn.Module:
    core = smp.Unet("resnet18", encoder_weights=None, in_channels=in_channels, classes=num_classes)
    return _smp(core, RESNET18_CHECKPOINT)


@register_model("pspnet-r18", paper="ResNet18-PSPNet",
                summary="PSPNet, ResNet-18 encoder (dilated layer4), pyramid pooling at 1/16 (smp)")
def pspnet_r18(num_classes: int, in_channels: int = 3, output_stride: int = 16) -> nn.Module:
    if output_stride not in (8, 16, 32):
        raise InputError(f"pspnet-r18: output_stride must be 8, 16 or 32, got {output_stride}")
    core = smp.PSPNet("resnet18", encoder_weights=None, encoder_depth=5, upsampling=output_stride,
                      psp_out_channels=128, in_channels=in_channels, classes=num_classes)
    if output_stride < 32:
        core.encoder.make_dilated(output_stride)
    return _smp(core, RESNET18_CHECKPOINT)


@register_model("deeplabv3plus-r18", paper="ResNet18-DeepLabV3+",
                summary="DeepLabV3+, ResNet-18 encoder, output stride 16 (smp)")
def deeplabv3plus_r18(num_classes: int, in_channels: int = 3, output_stride: int = 16) -> nn.Module:
    if output_stride not in (8, 16):
        raise InputError(f"deeplabv3plus-r18: output_stride must be 8 or 16, got {output_stride}")
    core = smp.DeepLabV3Plus("resnet18", encoder_weights=None, encoder_output_stride=output_stride,
                             in_channels=in_channels, classes=num_classes)
    return _smp(core, RESNET18_CHECKPOINT)


@register_model("segformer-mit-b0", paper="Segformer MiT-B0",
                summary="SegFormer, MiT-B0 encoder, all-MLP decoder (smp)")
def segformer_mit_b0(num_classes: int, in_channels: int = 3) -> nn.Module:
    core = smp.Segformer("mit_b0", encoder_weights=None, in_channels=in_channels, classes=num_classes)
    return _smp(core, MIT_B0_CHECKPOINT)


class HRNetV2(nn.Module):
    """HRNetV2 for segmentation: an HRNet backbone's four branches resized to the highest
    resolution (1/4), concatenated, fused by a 1x1 conv-BN-ReLU and classified by a 1x1 conv.
    Logits come out at 1/4 of the input."""

    def __init__(self, backbone: nn.Module, branch_channels: list[int], num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        channels = sum(branch_channels)
        self.fuse = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = self.backbone(x)
        size = branches[0].shape[-2:]
        resized = [branches[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=False)
                                   for b in branches[1:]]
        return self.classifier(self.fuse(torch.cat(resized, dim=1)))


@register_model("hrnet-w18-small", paper="HRNetV2-W18-small",
                summary="HRNetV2-W18-Small (timm hrnet_w18_small_v2) with the HRNetV2 concat head")
def hrnet_w18_small(num_classes: int, in_channels: int = 3) -> nn.Module:
    # feature_location="" gives the raw branch outputs (no classification neck); indices 1-4 are
    # the four branches at strides 4, 8, 16, 32 (index 0, the stem at stride 2, feeds them).
    backbone = timm.create_model("hrnet_w18_small_v2", pretrained=False, features_only=True, feature_location="",
                                 out_indices=(1, 2, 3, 4), in_chans=in_channels)
    channels: list[int] = cast(Any, backbone).feature_info.channels()
    core = HRNetV2(backbone, channels, num_classes)
    return InputSizeAdapter(core, multiple=32, encoder="backbone", encoder_checkpoint=HRNET_CHECKPOINT)
