"""Segmenter (Strudel et al. 2021, "Segmenter: Transformer for Semantic Segmentation") with a
ViT-Tiny encoder: timm's `vit_tiny_patch16_224` from random init, and the mask-transformer
decoder written here (no library has it).

Decoder: patch tokens are projected to the decoder width, one learned embedding per class is
appended as an extra token, two transformer layers mix them, and each class mask is the scalar
product of the L2-normalised patch and class features, layer-normed over the classes; the
masks (1/16 resolution) are upsampled bilinearly to the input size.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from defectspectrum.seg.models.common import InputSizeAdapter
from defectspectrum.seg.models.registry import register_model

PATCH = 16


class ViTEncoder(nn.Module):
    """A timm ViT as a patch-token encoder: (N, C, 16h, 16w) -> tokens (N, h*w, D), prefix tokens dropped.

    The position embedding (learned for a 14x14 grid) is resized to every input's grid with
    plain bicubic interpolation here rather than by timm's `dynamic_img_size` (whose antialiased
    resize does not export to ONNX); at 224x224 that is the identity, so a timm checkpoint fits.
    """

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        if not isinstance(vit, VisionTransformer) or vit.pos_embed is None or vit.num_prefix_tokens != 1 \
                or vit.cls_token is None or vit.no_embed_class:
            raise ValueError("the Segmenter encoder needs a timm ViT with one class token and a position embedding")
        self.vit = vit
        self.dim = vit.embed_dim

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ViT's (class token, position embedding)."""
        cls_token, pos_embed = self.vit.cls_token, self.vit.pos_embed
        if cls_token is None or pos_embed is None:  # checked in __init__; narrows the types
            raise ValueError("the ViT lost its class token or position embedding")
        return cls_token, pos_embed

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """The patch tokens' position embedding for a `grid` of patches: (1, h*w, D). Always
        resized (a same-size bicubic resize is exact), so an ONNX graph traced at 224 px still
        resizes at other sizes."""
        vit = self.vit
        pos = self._embeddings()[1][:, vit.num_prefix_tokens:]
        old = vit.patch_embed.grid_size
        pos = pos.reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=grid, mode="bicubic", align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        x = vit.patch_embed(x)  # (N, h, w, D): built with dynamic_img_size=True
        n, h, w, dim = x.shape
        x = x.reshape(n, h * w, dim) + self.position_embedding((h, w))
        cls_token, pos_embed = self._embeddings()
        prefix = cls_token.expand(n, -1, -1) + pos_embed[:, : vit.num_prefix_tokens]
        x = torch.cat([prefix, x], dim=1)
        x = vit.norm(vit.blocks(vit.norm_pre(vit.pos_drop(x))))
        return x[:, vit.num_prefix_tokens:]


class MaskTransformerDecoder(nn.Module):
    """Segmenter's mask transformer: class embeddings as extra tokens, `layers` transformer
    layers, masks = normalised patch features x normalised class features, layer norm."""

    def __init__(self, num_classes: int, encoder_dim: int, dim: int = 192, layers: int = 2, heads: int = 3,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.project_tokens = nn.Linear(encoder_dim, dim)
        self.class_embedding = nn.Parameter(torch.zeros(1, num_classes, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio, qkv_bias=True, drop_path=drop_path)
                                      for _ in range(layers)))
        self.norm = nn.LayerNorm(dim)
        scale = dim**-0.5
        self.project_patches = nn.Parameter(scale * torch.randn(dim, dim))
        self.project_classes = nn.Parameter(scale * torch.randn(dim, dim))
        self.mask_norm = nn.LayerNorm(num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.class_embedding, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def tokens(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch tokens (N, P, D_enc) -> decoded tokens (N, P + num_classes, dim), class tokens last."""
        x = self.project_tokens(patches)
        x = torch.cat([x, self.class_embedding.expand(x.shape[0], -1, -1)], dim=1)
        return self.norm(self.blocks(x))

    def forward(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch tokens (N, h*w, D_enc) -> class masks (N, num_classes, h, w)."""
        x = self.tokens(patches)
        patch_feats = F.normalize(x[:, : -self.num_classes] @ self.project_patches, dim=-1)
        class_feats = F.normalize(x[:, -self.num_classes:] @ self.project_classes, dim=-1)
        masks = self.mask_norm(patch_feats @ class_feats.transpose(1, 2))  # (N, h*w, num_classes)
        return masks.transpose(1, 2).reshape(x.shape[0], self.num_classes, grid[0], grid[1])


class Segmenter(nn.Module):
    """ViT encoder + mask-transformer decoder for inputs whose sides are multiples of 16;
    logits at 1/16 resolution."""

    def __init__(self, encoder: ViTEncoder, decoder: MaskTransformerDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = (x.shape[-2] // PATCH, x.shape[-1] // PATCH)
        return self.decoder(self.encoder(x), grid)


@register_model("segmenter-vit-tiny", paper="ViT-Tiny Segmenter",
                summary="Segmenter: timm ViT-Tiny/16 + mask-transformer decoder (written here, ~6.5M params)")
def segmenter_vit_tiny(num_classes: int, in_channels: int = 3) -> nn.Module:
    """ViT-Tiny/16 Segmenter taking any input size (padded to a multiple of 16, logits cropped back)."""
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, in_chans=in_channels,
                            dynamic_img_size=True, drop_path_rate=0.1)
    encoder = ViTEncoder(vit)
    decoder = MaskTransformerDecoder(num_classes, encoder.dim, dim=192, layers=2, heads=3)
    return InputSizeAdapter(Segmenter(encoder, decoder), multiple=PATCH, encoder="encoder.vit",
                            encoder_checkpoint="a timm vit_tiny_patch16_224 checkpoint")
