"""BiSeNetV2 (Yu et al. 2021, "BiSeNet V2: Bilateral Network with Guided Aggregation"), written
here because no library has it.

A wide shallow detail branch (1/8 resolution, 128 channels) and a narrow deep semantic branch
(stem, gather-and-expand layers, context embedding; 1/32) meet in bilateral guided aggregation;
a 3x3 conv + 1x1 classifier head predicts at 1/8 and the logits are upsampled. Channel sizes
follow the paper and mmsegmentation's `BiSeNetV2` (about 3.3M parameters with a 1024-channel
head). The paper's booster (auxiliary) heads are left out: they only help training, and a plain
cross-entropy on the main logits then gives every parameter a gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from defectspectrum.seg.models.common import InputSizeAdapter
from defectspectrum.seg.models.registry import register_model


class PooledBatchNorm(nn.BatchNorm2d):
    """Batch norm for globally pooled (N, C, 1, 1) features: with one value per channel (a training
    batch of one image) it normalises with the running statistics instead of failing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) + batch norm, followed by ReLU unless `relu=False`."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 relu: bool = True, norm: type[nn.BatchNorm2d] = nn.BatchNorm2d) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
            norm(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DetailBranch(nn.Sequential):
    """Three stages of plain 3x3 convs, each opening with stride 2: 64, 64, 128 channels, 1/8."""

    def __init__(self, in_channels: int) -> None:
        super().__init__(
            ConvBNReLU(in_channels, 64, stride=2), ConvBNReLU(64, 64),
            ConvBNReLU(64, 64, stride=2), ConvBNReLU(64, 64), ConvBNReLU(64, 64),
            ConvBNReLU(64, 128, stride=2), ConvBNReLU(128, 128), ConvBNReLU(128, 128),
        )


class StemBlock(nn.Module):
    """Semantic stem: a stride-2 conv, then a conv path and a max-pool path to 1/4, fused."""

    def __init__(self, in_channels: int, out: int = 16) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out, stride=2)
        self.left = nn.Sequential(ConvBNReLU(out, out // 2, kernel=1), ConvBNReLU(out // 2, out, stride=2))
        self.right = nn.MaxPool2d(3, stride=2, padding=1)
        self.fuse = ConvBNReLU(2 * out, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], dim=1))


class GatherExpand(nn.Module):
    """Gather-and-expand layer: 3x3 conv, depthwise expansion (x6), 1x1 projection, residual.
    With stride 2 a second depthwise conv follows and the shortcut is a depthwise + 1x1 conv."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 6) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = [ConvBNReLU(cin, cin)]
        if stride == 1:
            layers.append(ConvBNReLU(cin, mid, groups=cin))
        else:
            layers += [ConvBNReLU(cin, mid, stride=2, groups=cin, relu=False), ConvBNReLU(mid, mid, groups=mid)]
        layers.append(ConvBNReLU(mid, cout, kernel=1, relu=False))
        self.body = nn.Sequential(*layers)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(ConvBNReLU(cin, cin, stride=stride, groups=cin, relu=False),
                                          ConvBNReLU(cin, cout, kernel=1, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ContextEmbedding(nn.Module):
    """Global average pooling + 1x1 conv added back to the features, then a 3x3 conv."""

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.norm = PooledBatchNorm(channels)
        self.gap_conv = ConvBNReLU(channels, channels, kernel=1, norm=PooledBatchNorm)
        self.last = ConvBNReLU(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.gap_conv(self.norm(x.mean(dim=(2, 3), keepdim=True)))
        return self.last(x + context)


class SemanticBranch(nn.Module):
    """Stem (1/4, 16 ch) and gather-and-expand stages to 1/8 (32), 1/16 (64), 1/32 (128) + context."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.stem = StemBlock(in_channels)
        self.stage3 = nn.Sequential(GatherExpand(16, 32, stride=2), GatherExpand(32, 32))
        self.stage4 = nn.Sequential(GatherExpand(32, 64, stride=2), GatherExpand(64, 64))
        self.stage5 = nn.Sequential(GatherExpand(64, 128, stride=2), *(GatherExpand(128, 128) for _ in range(3)))
        self.context = ContextEmbedding(128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.context(self.stage5(self.stage4(self.stage3(self.stem(x)))))


def _depthwise_then_pointwise(channels: int) -> nn.Sequential:
    """Depthwise 3x3 conv + batch norm, then a plain 1x1 conv (with bias, no norm)."""
    return nn.Sequential(ConvBNReLU(channels, channels, groups=channels, relu=False), nn.Conv2d(channels, channels, 1))


class BilateralGuidedAggregation(nn.Module):
    """Each branch gates the other (sigmoid of its features) at its own resolution; the two are
    summed at 1/8 and fused by a 3x3 conv."""

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.detail_keep = _depthwise_then_pointwise(channels)
        self.detail_down = nn.Sequential(ConvBNReLU(channels, channels, stride=2, relu=False),
                                         nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=False))
        self.semantic_up = ConvBNReLU(channels, channels, relu=False)
        self.semantic_keep = _depthwise_then_pointwise(channels)
        self.fuse = ConvBNReLU(channels, channels)

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        size = detail.shape[2:]
        gate_up = F.interpolate(self.semantic_up(semantic), size=size, mode="bilinear", align_corners=False)
        high = self.detail_keep(detail) * torch.sigmoid(gate_up)
        low = self.detail_down(detail) * torch.sigmoid(self.semantic_keep(semantic))
        low = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
        return self.fuse(high + low)


class SegHead(nn.Sequential):
    """3x3 conv to `hidden` channels, dropout, 1x1 classifier."""

    def __init__(self, cin: int, hidden: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__(ConvBNReLU(cin, hidden), nn.Dropout(dropout), nn.Conv2d(hidden, num_classes, 1))


class BiSeNetV2Core(nn.Module):
    """BiSeNetV2 for inputs whose sides are multiples of 32; logits at 1/8 resolution."""

    def __init__(self, num_classes: int, in_channels: int = 3, head_channels: int = 1024) -> None:
        super().__init__()
        self.detail = DetailBranch(in_channels)
        self.semantic = SemanticBranch(in_channels)
        self.aggregate = BilateralGuidedAggregation(128)
        self.head = SegHead(128, head_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.aggregate(self.detail(x), self.semantic(x)))


@register_model("bisenetv2", paper="BiSeNetV2",
                summary="BiSeNetV2: detail + semantic branches, guided aggregation (written here, ~3.3M params)")
def bisenetv2(num_classes: int, in_channels: int = 3) -> nn.Module:
    """BiSeNetV2 taking any input size (padded to a multiple of 32, logits cropped back)."""
    return InputSizeAdapter(BiSeNetV2Core(num_classes, in_channels), multiple=32)
