"""Mask-defect consistency: agreement with a segmentation model, masks on the object, `--filter`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectspectrum.gen.filters import (
    SampleFilter,
    class_agreement,
    consistency,
    defect_iou,
    foreground,
    on_object_applies,
    share_on_object,
)


def disk_image(size: int = 64, hole: bool = False) -> np.ndarray:
    """A light disk (the object) on a dark, even background; with `hole` a background-coloured hole in it."""
    image = np.full((size, size, 3), 20, np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 3, (200, 190, 180), -1)
    if hole:
        cv2.circle(image, (size // 2, size // 2), size // 10, (20, 20, 20), -1)
    return image


def test_iou_of_defect_pixels_and_of_classes() -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[2:6, 2:6] = 1  # 16 px
    predicted = np.zeros((10, 10), np.uint8)
    predicted[4:8, 2:6] = 2  # 16 px, 8 shared, another class
    assert defect_iou(predicted, mask) == pytest.approx(8 / 24)
    assert class_agreement(predicted, mask) == 0
    predicted[4:6, 2:6] = 1
    assert class_agreement(predicted, mask) == pytest.approx(8 / 24)
    assert defect_iou(np.zeros_like(mask), np.zeros_like(mask)) is None


def test_the_foreground_is_the_object_with_its_holes_and_all_of_a_texture() -> None:
    image = disk_image(hole=True)
    found = foreground(image)
    assert found[32, 32] and found[32, 20]  # the hole and the body are the object
    assert not found[2, 2] and not found[60, 32]
    texture = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert foreground(texture).all()


def test_masks_off_the_object_are_named() -> None:
    image = disk_image()
    on, off = np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8)
    on[28:36, 28:36] = 1
    off[1:6, 1:6] = 1
    assert share_on_object(image, on) == 1.0 and share_on_object(image, off) == 0.0
    rules = SampleFilter(min_on_object=0.5, min_agreement=0.3)
    assert rules.reason(rules.measure(image, on)) == ""
    assert "mask off the object" in rules.reason(rules.measure(image, off))
    seeing_nothing = SampleFilter(segment=lambda image: np.zeros(image.shape[:2], np.uint8))
    measures = seeing_nothing.measure(image, on)
    assert measures["agreement"] == 0 and "does not see the mask's defect (IoU 0.00" in seeing_nothing.reason(measures)


def test_the_on_object_check_is_tried_on_the_real_masks_first() -> None:
    image = disk_image()
    on, off = np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8)
    on[28:36, 28:36] = 1
    off[1:6, 1:6] = 1
    assert on_object_applies([(image, on)] * 9)
    assert not on_object_applies([(image, on)] * 8 + [(image, off)] * 2)  # 80% of the real masks on it: too few
    assert not on_object_applies([])
    summary = consistency([(image, off)], None, train_pairs=[(image, off)] * 3)
    assert summary["on_object_check"] is False and summary["off_object_share"] is None
    assert consistency([(image, off)], None, train_pairs=[(image, on)] * 3)["off_object_share"] == 1.0
    unchecked = SampleFilter(check_on_object=False)
    assert unchecked.reason(unchecked.measure(image, off)) == ""


def test_consistency_summary() -> None:
    image = disk_image()
    on, off = np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8)
    on[28:36, 28:36] = 1
    off[1:6, 1:6] = 2
    pairs = [(image, on), (image, off), (image, np.zeros((64, 64), np.uint8))]
    summary = consistency(pairs, lambda picture: on)  # a model that always sees the centre defect
    assert summary["off_object_share"] == pytest.approx(0.5)
    assert summary["agreement"]["mean"] == pytest.approx(0.5) and summary["agreement"]["under_min"] == 0.5
    assert summary["agreement"]["class_mean"] == pytest.approx(0.5)
    assert consistency(pairs, None).get("agreement") is None


def test_sampling_with_a_filter_drops_what_it_rejects_with_why(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seg"))
    from seg_helpers import register_tiny_model, split_synth

    from cli_helpers import invoke, one_line_error
    from defectspectrum.data.dsfolder import DSFolder
    from defectspectrum.gen.sample import load_generator, write_samples
    from defectspectrum.gen.train import GenConfig, train_generator

    ds = split_synth(tmp_path / "ds", size=40, per_type=3, k=2).root
    train_generator(GenConfig(data=str(ds), object="metal", preset="small", width=8, layers=1, size=16, steps=3,
                              batch_size=2, checkpoint_every=3, ema_decay=0.5), tmp_path / "gen_run")
    generator = load_generator(tmp_path / "gen_run")
    blind = SampleFilter(min_on_object=0.0, min_agreement=0.3, segment=lambda image: np.zeros(image.shape[:2],
                                                                                               np.uint8))
    folder, dropped = write_samples(generator, generator, 0, 4, tmp_path / "none", steps=4, keep_empty=False,
                                    sample_filter=blind)
    assert len(folder) == 0 and len(dropped) == 4
    assert all("does not see" in d.reason or "no defect" in d.reason for d in dropped)
    meta = json.loads((tmp_path / "none" / "dataset.json").read_text())
    assert len(meta["generator"]["dropped"]) == 4
    lenient = SampleFilter(min_on_object=0.0, min_agreement=0.0, segment=blind.segment)
    folder, dropped = write_samples(generator, generator, 0, 4, tmp_path / "all", steps=4, keep_empty=True,
                                    sample_filter=lenient)
    assert len(folder) == 4 and not dropped
    written = DSFolder.open(tmp_path / "all")
    for sample in written:
        recipe = json.loads(sample.source)
        if written.load_mask(sample).any():  # the measures travel with each pair
            assert recipe["agreement"] == 0.0 and 0 <= recipe["on_object"] <= 1

    result = invoke("seg", "train", ds, "--model", register_tiny_model(), "--out", tmp_path / "seg", "--steps", "2",
                    "--val-every", "2", "--crop-size", "32", "--batch-size", "2", "--workers", "0")
    assert result.exit_code == 0, result.output
    result = invoke("gen", "sample", tmp_path / "filtered", "--large", tmp_path / "gen_run", "--switch", "0",
                    "--num", "3", "--steps", "4", "--keep-empty", "--filter", "--seg-model", tmp_path / "seg",
                    "--min-agreement", "0")
    assert result.exit_code == 0, result.output
    result = invoke("gen", "eval", tmp_path / "filtered", "--train", ds, "--seg-model", tmp_path / "seg", "--json",
                    tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "eval.json").read_text())
    assert "off_object_share" in data["consistency"]
    one_line_error(["gen", "sample", tmp_path / "x", "--large", tmp_path / "gen_run", "--switch", "0",
                    "--seg-model", tmp_path / "seg"], "--seg-model only apply with --filter")
    one_line_error(["gen", "sample", tmp_path / "x", "--large", tmp_path / "gen_run", "--switch", "0", "--filter",
                    "--min-agreement", "2"], "use 0 to 1")
