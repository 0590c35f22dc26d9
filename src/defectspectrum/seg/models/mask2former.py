"""Mask2Former (Cheng et al. 2022) for semantic segmentation, built from a transformers config
(never a hub download) with a light HRNet backbone, as the paper's "HRNet Mask2Former".

Choices, made so it trains on a CPU:
- Backbone: timm `hrnet_w18_small_v2` from random init through transformers' `TimmBackbone`
  (strides 4, 8, 16, 32; timm's "incre" feature heads, 128-1024 channels).
- Pixel decoder: 3 deformable-attention encoder layers; width 128 (feature, mask and hidden
  sizes), 4 heads, feed-forward 512. Transformer decoder: 6 layers (5 masked-attention layers
  after the first prediction, transformers' count), 30 queries. About 7.6M parameters in all
  (the Swin-T original: 47M).
- Loss: transformers' own set loss (Hungarian matching, point-sampled masks; needs scipy) with
  the paper's weights, stated explicitly: class 2.0, mask (sigmoid CE) 5.0, dice 5.0,
  no-object class 0.1, auxiliary losses on every decoder layer, 12544 sampled points.
  transformers averages the mask count over processes when Accelerate runs several, so under
  DDP every rank must call `loss` (or none): one rank alone waits forever.

Targets: each image's label map becomes one binary mask per class present in it (background
included), as mmsegmentation's Mask2Former head does. Ignore pixels (255) and the padding
added to reach a multiple of 32 belong to no mask: every mask counts them as "not this class",
so they never pull a pixel towards any class.

ONNX: `torch.onnx.export(model, x, f, dynamo=False, opset_version=17)` at a fixed size works,
but the deformable attention's sampling grid comes out as float64 (the exporter builds
`torch.linspace` from double constants) and onnxruntime has no float64 GridSample; pass the
loaded graph through `onnx_grid_sample_float` before saving it for onnxruntime.

`forward` returns per-pixel log-probabilities (N, C, H, W): the semantic score of each class is
the sum over queries of P(class | query) (no-object dropped) times the query's mask sigmoid
(mask logits upsampled to the input size first), clamped to >= 1e-6, then normalised over the
classes, so `logits.exp().sum(1) == 1` and argmax is the semantic prediction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from defectspectrum.seg.labels import IGNORE_INDEX
from defectspectrum.seg.models.common import pad_to_multiple
from defectspectrum.seg.models.registry import register_model

if TYPE_CHECKING:
    import onnx
    from transformers import Mask2FormerConfig

MULTIPLE = 32  # HRNet's coarsest stride
MIN_SCORE = 1e-6


@contextmanager
def _quiet_backbone_warning() -> Iterator[None]:
    """transformers warns that only Swin is a tested Mask2Former backbone; the timm HRNet works
    (strides 4-32 as the pixel decoder expects), so keep that warning off the user's terminal."""
    logger = logging.getLogger("transformers.models.mask2former.configuration_mask2former")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def mask2former_config(num_classes: int, in_channels: int = 3, *, num_queries: int = 30, width: int = 128,
                       decoder_layers: int = 6, encoder_layers: int = 3,
                       train_num_points: int = 12544) -> Mask2FormerConfig:
    """The light Mask2Former configuration described in the module docstring."""
    from transformers import Mask2FormerConfig, TimmBackboneConfig

    # out_indices and num_labels are keyword arguments the config classes take through their
    # mixins, which their type declarations do not list
    backbone = TimmBackboneConfig(backbone="hrnet_w18_small_v2", num_channels=in_channels,
                                  out_indices=[1, 2, 3, 4])  # type: ignore[call-arg]
    with _quiet_backbone_warning():
        return Mask2FormerConfig(  # type: ignore[call-arg]
            backbone_config=backbone, num_labels=num_classes, num_queries=num_queries,
            feature_size=width, mask_feature_size=width, hidden_dim=width, num_attention_heads=4,
            encoder_layers=encoder_layers, encoder_feedforward_dim=4 * width,
            decoder_layers=decoder_layers, dim_feedforward=4 * width,
            class_weight=2.0, mask_weight=5.0, dice_weight=5.0, no_object_weight=0.1, use_auxiliary_loss=True,
            train_num_points=train_num_points, ignore_value=IGNORE_INDEX,
        )


def semantic_log_probs(class_logits: torch.Tensor, mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-query class logits (N, Q, C+1) and mask logits (N, Q, h, w) -> log-probabilities
    (N, C, *size): sum over queries of softmax class scores (no-object dropped) x mask sigmoid,
    clamped to >= 1e-6 and normalised over the classes."""
    class_probs = class_logits.softmax(dim=-1)[..., :-1]
    masks = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False).sigmoid()
    scores = torch.einsum("nqc,nqhw->nchw", class_probs, masks)
    return torch.log_softmax(scores.clamp(min=MIN_SCORE).log(), dim=1)


def mask_targets(targets: torch.Tensor,
                 ignore_index: int = IGNORE_INDEX) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Label maps (N, H, W) -> per image, binary masks (K, H, W) float and their classes (K,) int64:
    one mask per class present, ignore pixels in none."""
    masks, classes = [], []
    for target in targets:
        present = torch.unique(target)
        present = present[present != ignore_index]
        masks.append((target[None] == present[:, None, None]).float())
        classes.append(present.long())
    return masks, classes


class Mask2FormerSemantic(nn.Module):
    """A transformers `Mask2FormerForUniversalSegmentation` as a semantic segmentation model: any
    input size (zero-padded to a multiple of 32), log-probabilities at input size, and `loss`."""

    def __init__(self, config: Mask2FormerConfig) -> None:
        super().__init__()
        from transformers import Mask2FormerForUniversalSegmentation

        self.net = Mask2FormerForUniversalSegmentation(config)
        self.encoder_path = "net.model.pixel_level_module.encoder._backbone"
        self.encoder_checkpoint = "a timm hrnet_w18_small_v2 checkpoint"

    def _run(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor | None,
                                                                                        torch.Tensor]:
        size = (images.shape[-2], images.shape[-1])
        padded = pad_to_multiple(images, MULTIPLE)
        labels: dict[str, list[torch.Tensor]] = {}
        if targets is not None:
            pad_h, pad_w = padded.shape[-2] - size[0], padded.shape[-1] - size[1]
            full = F.pad(targets, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
            labels["mask_labels"], labels["class_labels"] = mask_targets(full)
        out = self.net(pixel_values=padded, **labels)
        logits = semantic_log_probs(out.class_queries_logits, out.masks_queries_logits,
                                    (padded.shape[-2], padded.shape[-1]))
        return out.loss, logits[..., : size[0], : size[1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C_in, H, W) -> per-class log-probabilities (N, num_classes, H, W)."""
        return self._run(x)[1]

    def loss(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask2Former's set loss on label maps `targets` (N, H, W) int64, 255 = ignore, and the
        log-probabilities of the same forward pass."""
        loss, logits = self._run(images, targets)
        if loss is None:  # transformers computes it whenever labels are given
            raise RuntimeError("Mask2Former returned no loss")
        return loss, logits


@register_model("mask2former", paper="HRNet Mask2Former",
                summary="Mask2Former (transformers, from config): HRNet-W18-small backbone, 30 queries, ~7.6M params")
def mask2former(num_classes: int, in_channels: int = 3, *, num_queries: int = 30,
                train_num_points: int = 12544) -> nn.Module:
    """Light Mask2Former with its own `loss(images, targets)`; see the module docstring. Fewer
    `train_num_points` (points sampled per mask in the loss) make a CPU step faster."""
    config = mask2former_config(num_classes, in_channels, num_queries=num_queries, train_num_points=train_num_points)
    return Mask2FormerSemantic(config)


def onnx_grid_sample_float(model: onnx.ModelProto) -> onnx.ModelProto:
    """Cast every GridSample's sampling grid to float32 in an exported graph (in place, returned):
    the legacy exporter writes Mask2Former's grids as float64, which onnxruntime cannot run."""
    from onnx import TensorProto, helper

    nodes = []
    for node in model.graph.node:
        if node.op_type == "GridSample":
            grid = node.input[1]
            cast = helper.make_node("Cast", [grid], [f"{grid}_float"], to=TensorProto.FLOAT, name=f"{node.name}_cast")
            node.input[1] = cast.output[0]
            nodes.append(cast)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
