"""Shared pieces of the segmentation tests: a tiny registered model and small DS folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.splits import assign_splits
from defectspectrum.data.synth import write_ds_folder

TINY = "tiny-test"


def tiny_conv_net(classes: int = 3) -> Any:
    """Two 3x3 convolutions with BatchNorm: spatial context, any input size."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, classes, 3, padding=1))


TinyConvNet = tiny_conv_net


def register_tiny_model() -> str:
    """Register `tiny-test` (conv-BN-ReLU-dropout, a few thousand weights) once; returns its name.
    Dropout and BatchNorm make it a fair test of RNG and running-statistics restore on resume."""
    from torch import nn

    from defectspectrum.seg.models.registry import _MODELS, register_model

    if TINY in _MODELS:
        return TINY

    @register_model(TINY, paper="(test only)", summary="three convolutions, for tests")
    def tiny(num_classes: int, in_channels: int = 3) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.2),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 1))

    return TINY


def split_synth(root: Path, materials: tuple[str, ...] = ("metal",), per_type: int = 3, good: int = 2,
                size: int = 48, k: int = 2, seed: int = 0) -> DSFolder:
    """A procedural DS folder with first-k train/val splits."""
    folder = write_ds_folder(root, materials=list(materials), n_defective_per_type=per_type, n_good=good,
                             size=(size, size), seed=seed)
    assign_splits(folder, rule="first-k", k=k)
    folder.save()
    return folder
