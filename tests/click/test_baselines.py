"""GrabCut and random walker driven by simulated clicks: easy images are segmented within a few clicks,
the window (crop) rule, and graceful fallbacks on degenerate input."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from defectspectrum.click.baselines import (
    BASELINES,
    MAX_WINDOW,
    GrabCut,
    RandomWalker,
    fallback,
    grabcut_refiner,
    make_baseline,
    parts_at_positive_clicks,
    split_refined,
    window,
)
from defectspectrum.click.clicks import Click, disk
from defectspectrum.click.noc import mean_curve, run_object


def bright_disk(seed: int, size: int = 72, radius: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """A bright disk on dark noise: (image, truth)."""
    rng = np.random.default_rng(seed)
    cy, cx = rng.integers(radius + 4, size - radius - 4, size=2)
    truth = disk((size, size), int(cy), int(cx), radius)
    image = rng.normal(50, 15, (size, size, 3)) + truth[:, :, None] * 140
    return np.clip(image, 0, 255).astype(np.uint8), truth


@pytest.mark.parametrize("name", list(BASELINES))
def test_an_easy_object_is_segmented_within_a_few_clicks(name: str) -> None:
    runs = [run_object(make_baseline(name), *bright_disk(seed), max_clicks=5) for seed in range(3)]
    for run in runs:
        assert max(run.ious[:3]) > 0.8, run.ious
    curve = mean_curve([run.ious for run in runs], 5)
    assert curve[-1] > 0.8
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(curve)), curve  # more clicks never hurt on average here


@pytest.mark.parametrize("name", list(BASELINES))
def test_a_look_alike_patch_elsewhere_is_not_added(name: str) -> None:
    image, truth = bright_disk(0, size=96)
    other = disk((96, 96), 6, 6, 5) & ~truth
    image[other] = image[truth].mean(axis=0).astype(np.uint8)
    (y, x) = np.argwhere(truth).mean(axis=0).round().astype(int)
    mask = make_baseline(name).predict(image, [Click(int(y), int(x), True)], np.zeros((96, 96), bool))
    assert mask.shape == (96, 96) and mask.dtype == bool
    assert not (mask & other).any()


def test_the_window_is_the_whole_of_a_small_image() -> None:
    assert window((200, 180), [Click(10, 10, True)]) == (0, 200, 0, 180)


def test_the_window_on_a_large_image_surrounds_the_clicks_and_the_previous_mask() -> None:
    y0, y1, x0, x1 = window((2000, 3000), [Click(1000, 1500, True)])
    assert (y1 - y0, x1 - x0) == (256, 256) and y0 <= 1000 < y1 and x0 <= 1500 < x1
    previous = np.zeros((2000, 3000), bool)
    previous[900:1100, 1400:1700] = True  # 200 x 300: grown by 32 + 150 on every side
    y0, y1, x0, x1 = window((2000, 3000), [Click(1000, 1500, True)], previous)
    assert (y0, y1, x0, x1) == (900 - 182, 1100 + 182, 1400 - 182, 1700 + 182)
    y0, y1, x0, x1 = window((2000, 3000), [Click(0, 2999, False)])  # a corner: slid inside the image
    assert (y0, y1, x0, x1) == (0, 256, 3000 - 256, 3000)


@pytest.mark.parametrize("name", list(BASELINES))
def test_a_large_image_is_cropped_and_a_large_window_shrunk(name: str) -> None:
    size = 800
    rng = np.random.default_rng(3)
    image = rng.integers(30, 70, (size, size, 3)).astype(np.uint8)
    truth = disk((size, size), 650, 150, 20)
    image[truth] = 220
    mask = make_baseline(name).predict(image, [Click(650, 150, True)], np.zeros((size, size), bool))
    assert mask.shape == (size, size) and mask[650, 150]
    assert not mask[:500].any() and not mask[:, 300:].any()  # nothing outside the 256 px window
    previous = np.zeros((size, size), bool)
    previous[50:750, 50:750] = True  # the window would be the whole image: shrunk to MAX_WINDOW and back
    mask = make_baseline(name).predict(image, [Click(650, 150, True), Click(300, 500, False)], previous)
    assert mask.shape == (size, size) and mask[650, 150] and not mask[300, 500]
    assert MAX_WINDOW < size


def test_grabcut_falls_back_where_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    image = np.full((12, 12, 3), 128, np.uint8)
    previous = np.ones((12, 12), bool)  # no background sample at all: GrabCut is not even tried
    assert GrabCut(radius=2).predict(image, [Click(6, 6, True)], previous).all()

    def fail(*args: object) -> None:
        raise cv2.error("degenerate")

    monkeypatch.setattr(cv2, "grabCut", fail)
    previous = np.zeros((12, 12), bool)
    previous[0:3, 0:3] = True  # the previous mask, not touching the click: dropped as an unclicked part
    mask = GrabCut(radius=2).predict(image, [Click(6, 6, True), Click(6, 7, False)], previous)
    expected = disk((12, 12), 6, 6, 2) & ~disk((12, 12), 6, 7, 2)
    assert (mask == parts_at_positive_clicks(expected | previous, [Click(6, 6, True)], 2)).all()


def test_grabcut_on_a_flat_image_returns_a_mask() -> None:
    image = np.zeros((40, 40, 3), np.uint8)  # one colour: its mixture models are degenerate
    mask = GrabCut().predict(image, [Click(20, 20, True)], np.zeros((40, 40), bool))
    assert mask.shape == (40, 40) and mask[20, 20]


def test_random_walker_without_background_seeds_falls_back() -> None:
    image = np.zeros((5, 5, 3), np.uint8)
    mask = RandomWalker(radius=5).predict(image, [Click(2, 2, True)], np.zeros((5, 5), bool))
    assert mask.all()  # the positive disk covers the image: nothing to walk


def test_fallback_and_parts_at_positive_clicks() -> None:
    clicks = [Click(2, 2, True), Click(2, 3, False)]
    mask = fallback((6, 6), clicks, np.zeros((6, 6), bool), radius=1)
    assert mask[1, 2] and not mask[2, 3] and not mask[2, 2]  # the later negative disk wins where they overlap
    parts = np.zeros((10, 10), bool)
    parts[1:3, 1:3] = parts[7:9, 7:9] = True
    kept = parts_at_positive_clicks(parts, [Click(1, 1, True), Click(8, 8, False)], radius=0)
    assert kept[1:3, 1:3].all() and not kept[7:9, 7:9].any()


def test_split_refined_reads_only_a_known_suffix_after_a_model() -> None:
    assert split_refined("default+grabcut") == ("default", "grabcut")
    assert split_refined("runs/a+b/click+grabcut") == ("runs/a+b/click", "grabcut")
    assert split_refined("runs/a+b") == ("runs/a+b", None)
    assert split_refined("+grabcut") == ("+grabcut", None)
    assert split_refined("default") == ("default", None)


def test_grabcut_refiner_moves_an_overgrown_mask_to_the_objects_edge() -> None:
    """A learned model's mask that spills 8 px over a bright disk on every side (IoU about 0.4) is
    brought back to the disk; the positive click's disk stays in, a negative click's stays out."""
    image, truth = bright_disk(5, size=96, radius=14)
    ys, xs = np.nonzero(truth)
    cy, cx = int(ys.mean()), int(xs.mean())
    grown = cv2.dilate(truth.astype(np.uint8), np.ones((17, 17), np.uint8)) > 0
    before = (grown & truth).sum() / (grown | truth).sum()
    clicks = [Click(cy, cx, True), Click(0, 0, False)]
    refined = grabcut_refiner().predict(image, clicks, grown)
    after = (refined & truth).sum() / (refined | truth).sum()
    assert before < 0.5 and after > 0.9, (before, after)
    assert refined[cy, cx] and not refined[0, 0]


def test_grabcut_gives_the_same_mask_whatever_ran_before() -> None:
    """GrabCut's colour models start from k-means on OpenCV's global random generator; other GrabCut calls
    in between must not change a mask (an evaluation's figures would depend on the models beside it)."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(100, 40, (120, 120, 3)), 0, 255).astype(np.uint8)
    image[40:80, 30:90] += 40
    other = np.clip(rng.normal(100, 60, (120, 120, 3)), 0, 255).astype(np.uint8)
    grabcut, empty, clicks = GrabCut(), np.zeros((120, 120), bool), [Click(60, 60, True)]
    first = grabcut.predict(image, clicks, empty)
    for k in range(5):
        grabcut.predict(other, [Click(10 + k, 10, True)], empty)
        assert np.array_equal(grabcut.predict(image, clicks, empty), first)
