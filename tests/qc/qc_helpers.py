"""Hand-built DS folders and masks for the QC tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from defectspectrum.data.dsfolder import DSFolder

SIZE = 32


def rect(mask: np.ndarray, index: int, y: int, x: int, h: int, w: int) -> np.ndarray:
    """Paint an h x w rectangle of class `index` at (y, x) into `mask` (in place) and return it."""
    mask[y : y + h, x : x + w] = index
    return mask


def blank(size: int = SIZE) -> np.ndarray:
    return np.zeros((size, size), np.uint8)


def write_folder(root: Path, masks: Mapping[str, np.ndarray], classes: Sequence[str] = ("scratch", "spot", "hole"),
                 object_name: str = "plate", splits: Mapping[str, str] | None = None) -> DSFolder:
    """A DS folder with one sample per entry of `masks` (name -> mask), grey images of the mask's size."""
    folder = DSFolder.create(root, root.name, {object_name: list(classes)})
    for name, mask in masks.items():
        image = np.full((*mask.shape, 3), 90, np.uint8)
        folder.add_sample(object_name, name, image, mask, split=(splits or {}).get(name),
                          defect_type="good" if not mask.any() else "defect")
    folder.save()
    return folder


def write_rules(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
