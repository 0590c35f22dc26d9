"""Pictures of generated pairs: a sheet of samples (images over their mask overlays), used for the
training previews, and a generated pair beside its nearest training pair, used by the report."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from defectspectrum.draw import class_colors, overlay, shrink, side_by_side

GAP = 4


def to_height(image: np.ndarray, mask: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask scaled to `height` px tall (aspect kept); shrinking keeps thin regions (`shrink`)."""
    h, w = mask.shape
    if h > height:
        return shrink(image, mask, max(height, round(height * w / h)) if w > h else height)
    width = max(1, round(w * height / h))
    return (cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR),
            cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST_EXACT))


def pairs_sheet(pairs: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int, height: int = 128) -> np.ndarray:
    """One column per pair: the image above its mask overlay; columns side by side on white."""
    colors = class_colors(num_classes)
    columns = []
    for image, mask in pairs:
        small_image, small_mask = to_height(image, mask, height)
        spacer = np.full((GAP, small_image.shape[1], 3), 255, np.uint8)
        columns.append(np.concatenate([small_image, spacer, overlay(small_image, small_mask, colors)], axis=0))
    sheet = columns[0]
    for column in columns[1:]:
        sheet = side_by_side(sheet, column, GAP)
    return sheet


def beside_nearest(generated: tuple[np.ndarray, np.ndarray], nearest: tuple[np.ndarray, np.ndarray],
                   num_classes: int, height: int = 192) -> np.ndarray:
    """A generated pair's overlay (left) beside its nearest training pair's (right), both `height` tall."""
    colors = class_colors(num_classes)
    left = overlay(*to_height(*generated, height), colors)
    right = overlay(*to_height(*nearest, height), colors)
    return side_by_side(left, right, GAP)
