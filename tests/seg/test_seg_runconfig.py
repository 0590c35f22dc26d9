"""Run settings, label spaces and study tables: the torch-free parts of the segmentation stage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from defectspectrum.data.classes import ClassMap
from defectspectrum.errors import InputError
from defectspectrum.seg.labels import IGNORE_INDEX, LabelSpace
from defectspectrum.seg.preprocess import Preprocess
from defectspectrum.seg.run import RunConfig, RunInfo, read_run
from defectspectrum.seg.study import build_table, mean_std, parse_ratios

OBJECTS = {"metal": ClassMap.from_defects(["scratch", "dent"]), "wood": ClassMap.from_defects(["knot"])}


def test_global_label_space_maps_each_object_and_back():
    space = LabelSpace.build(OBJECTS, "global")
    assert space.names == ("background", "metal/scratch", "metal/dent", "wood/knot")
    mask = np.array([[0, 1, 2, IGNORE_INDEX]], np.uint8)
    assert space.to_labels(mask, "metal").tolist() == [[0, 1, 2, IGNORE_INDEX]]
    assert space.to_labels(np.array([[0, 1]], np.uint8), "wood").tolist() == [[0, 3]]
    predicted = np.array([[0, 1, 2, 3]], np.uint8)
    # a pixel predicted as another object's class is background in this object's own mask
    assert space.to_object_mask(predicted, "wood").tolist() == [[0, 0, 0, 1]]
    assert space.to_object_mask(predicted, "metal").tolist() == [[0, 1, 2, 0]]


def test_object_label_space_needs_one_class_map():
    with pytest.raises(InputError, match="different class maps"):
        LabelSpace.build(OBJECTS, "object")
    space = LabelSpace.build({"metal": OBJECTS["metal"]}, "object")
    assert space.num_classes == 3
    assert LabelSpace.from_json(json.loads(json.dumps(space.to_json())), "run.json") == space


def test_preprocess_normalises_rgb_and_round_trips():
    pre = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0] = 255
    out = pre(image)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], [2.0, -1.0, -0.5], rtol=1e-6)
    assert Preprocess.from_json(pre.to_json(), "x") == pre
    with pytest.raises(InputError, match="RGB"):
        pre(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize(("change", "message"), [
    ({"labels": "pixels"}, "--labels"), ({"steps": 0}, "--steps"), ({"lr": 0.0}, "--lr"),
    ({"scale": (2.0, 1.0)}, "--scale"), ({"class_weights": (1.0, -1.0)}, "--class-weights"),
    ({"mixed_precision": "fp8"}, "--mixed-precision"), ({"defect_crop": 1.5}, "--defect-crop"),
])
def test_run_config_refuses_bad_settings(change, message):
    with pytest.raises(InputError, match=message):
        RunConfig(data="/d", model="unet-small", **change)


def test_run_json_round_trip_and_errors(tmp_path):
    config = RunConfig(data="/d", model="unet-small", objects=("metal",), class_weights=(1.0, 2.0, 3.0))
    info = RunInfo(config, LabelSpace.build({"metal": OBJECTS["metal"]}), Preprocess(), data={"train_ids": ["a"]})
    (tmp_path / "run.json").write_text(json.dumps(info.to_json()))
    again = read_run(tmp_path)
    assert again.config == config and again.labels == info.labels and again.data == {"train_ids": ["a"]}
    data = info.to_json()
    data["config"]["optimiser"] = "sgd"
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="unknown settings optimiser"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputError, match="not a defectspectrum segmentation run"):
        read_run(tmp_path)
    with pytest.raises(InputError, match="no run.json"):
        read_run(tmp_path / "missing")


def test_table_means_and_stds_over_seeds():
    results = [
        {"row": "a", "column": "x", "seed": 0, "mIoU": 50.0}, {"row": "a", "column": "x", "seed": 1, "mIoU": 60.0},
        {"row": "a", "column": "y", "seed": 0, "mIoU": 70.0}, {"row": "a", "column": "y", "seed": 1, "mIoU": 90.0},
        {"row": "b", "column": "x", "seed": 0, "mIoU": None}, {"row": "b", "column": "y", "seed": 0, "mIoU": 40.0},
    ]
    table = build_table(results)
    mean, std, n = table.cells[("a", "x")]
    assert (mean, n) == (55.0, 2) and std == pytest.approx(math.sqrt(50.0))
    # the mean column averages each seed's columns first: seed 0 -> 60, seed 1 -> 75
    assert table.row_means["a"][0] == pytest.approx(67.5)
    assert table.row_means["a"][1] == pytest.approx(np.std([60.0, 75.0], ddof=1))
    assert table.cells[("b", "x")][2] == 0  # an undefined score is not a zero
    assert math.isnan(table.row_means["b"][0])
    markdown = table.markdown()
    assert "| a | 55.00 ± 7.07 | 80.00 ± 14.14 | 67.50 ± 10.61 |" in markdown
    assert "| b | n/a | 40.00 | n/a |" in markdown
    assert "a,x,55.0000,7.0711,2" in table.csv()


def test_mean_std_and_ratios():
    assert mean_std([3.0]) == (3.0, 0.0, 1)
    assert mean_std([None, float("nan")])[2] == 0
    assert parse_ratios("100, 0,20,20") == [0.0, 20.0, 100.0]
    for bad in ("", "a,b", "-5", "nan"):
        with pytest.raises(InputError, match="--ratios"):
            parse_ratios(bad)
