"""Weight-free generation measures on sets whose answer is known: copies, noise, masks."""

from __future__ import annotations

import numpy as np
import pytest

from defectspectrum.data.classes import ClassMap
from defectspectrum.gen.metrics import evaluate, image_feature

CLASSES = ClassMap.from_defects(["scratch", "spot"])


def pair(seed: int, with_spot: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    if with_spot:
        mask[5:9, 5:9] = 2
    return image, mask


def test_copies_are_flagged_and_have_no_diversity() -> None:
    train = [pair(i) for i in range(6)]
    copies = [train[0], train[0], train[0], train[1]]
    result = evaluate(copies, train, CLASSES)
    assert result.near_copies == 1.0 and float(result.nearest.max()) < 1e-6
    assert result.diversity is not None and result.diversity < 1e-6  # three identical samples in one group
    assert list(result.nearest_index) == [0, 0, 0, 1]


def test_new_images_are_not_copies_and_are_diverse() -> None:
    train = [pair(i) for i in range(6)]
    fresh = [pair(100 + i) for i in range(8)]
    result = evaluate(fresh, train, CLASSES)
    assert result.near_copies == 0.0
    assert result.diversity is None or result.diversity > 0.5 * result.train_scale
    assert result.to_json()["memorisation"]["nearest_over_scale"] > 0.5


def test_mask_sanity_compares_class_shares_and_areas() -> None:
    train = [pair(i) for i in range(4)]
    generated = [pair(10, with_spot=False), pair(11)]
    masks = evaluate(generated, train, CLASSES).masks
    assert masks["generated"]["empty"] == 0.5 and masks["train"]["empty"] == 0.0
    assert masks["train"]["classes"]["spot"] == {"share": 1.0, "median_area": 16 / 1600}
    assert masks["generated"]["classes"]["scratch"]["share"] == 0.0


def test_feature_ignores_brightness_offsets() -> None:
    image = pair(0)[0]
    brighter = np.clip(image.astype(int) // 2 + 60, 0, 255).astype(np.uint8)
    darker = np.clip(image.astype(int) // 2 + 10, 0, 255).astype(np.uint8)
    assert np.allclose(image_feature(brighter), image_feature(darker))
    with pytest.raises(ValueError):
        evaluate([], [pair(0), pair(1)], CLASSES)
