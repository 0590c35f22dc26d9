"""mmseg-exact mIoU (seg.metrics) and the confusion-matrix plot (seg.plots).

Hand-computed cases, an independent per-pixel confusion matrix, and a re-implementation of mmseg's
`IoUMetric.intersect_and_union` / `total_area_to_metrics` with histc-style histograms.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from defectspectrum.errors import InputError
from defectspectrum.seg import metrics
from defectspectrum.seg.metrics import ConfusionMatrix, SegScores, areas, evaluate_masks, mmseg_label, scores
from defectspectrum.seg.plots import confusion_figure, write_confusion_png

NAN = math.nan


def assert_scores(result: SegScores, miou: float, aacc: float, macc: float, iou: list[float], acc: list[float]) -> None:
    """Compare percentages, NaN equal to NaN."""
    np.testing.assert_allclose([result.mIoU, result.aAcc, result.mAcc], [miou, aacc, macc], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.iou, iou, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.acc, acc, rtol=1e-12, atol=1e-12)


def score_pairs(pairs, num_classes, ignore_index=255):
    return evaluate_masks([(np.asarray(p), np.asarray(t)) for p, t in pairs], num_classes, ignore_index=ignore_index)


# -- hand-computed cases ---------------------------------------------------------------------------


def test_perfect_prediction_scores_100_everywhere():
    target = np.random.default_rng(0).integers(0, 4, (16, 16))
    result = score_pairs([(target, target)], 4)
    assert_scores(result, 100, 100, 100, [100] * 4, [100] * 4)
    assert result.num_pixels == 256


def test_class_absent_from_truth_and_prediction_is_nan_and_left_out_of_the_means():
    # truth [0 0 1 1], prediction [0 1 1 1], class 2 nowhere:
    # intersect (1, 2, 0), union (2, 3, 0), truth (2, 2, 0)
    result = score_pairs([([0, 1, 1, 1], [0, 0, 1, 1])], 3)
    assert_scores(result, miou=(50 + 200 / 3) / 2, aacc=75, macc=75, iou=[50, 200 / 3, NAN], acc=[50, 100, NAN])


def test_class_in_truth_never_predicted_has_iou_zero_and_counts_in_the_mean():
    # truth [0 0 2 2], prediction all 0: bg I=2 U=4; class 1 absent; class 2 I=0 U=2
    result = score_pairs([([0, 0, 0, 0], [0, 0, 2, 2])], 3)
    assert_scores(result, miou=25, aacc=50, macc=50, iou=[50, NAN, 0], acc=[100, NAN, 0])


def test_empty_prediction_scores_background_only():
    truths = [np.zeros((4, 4), int) for _ in range(3)]
    truths[0][0, :2] = 1  # 2 pixels of class 1
    truths[1][1:3, 1:3] = 2  # 4 pixels of class 2
    empty = [np.zeros((4, 4), int) for _ in truths]
    result = score_pairs(zip(empty, truths), 3)
    # bg: 42 truth pixels, all predicted bg, union 48 (every pixel was predicted bg)
    assert_scores(result, miou=(4200 / 48) / 3, aacc=4200 / 48, macc=100 / 3, iou=[4200 / 48, 0, 0], acc=[100, 0, 0])


def test_empty_prediction_on_defect_free_images_scores_100():
    good = [np.zeros((5, 5), np.uint8)] * 2
    result = score_pairs(zip(good, good), 4)
    assert_scores(result, 100, 100, 100, [100, NAN, NAN, NAN], [100, NAN, NAN, NAN])


def test_class_only_predicted_has_iou_zero_and_acc_nan():
    # truth all bg, one false-positive pixel of class 1: bg I=3 U=4; class 1 I=0 U=1, no truth pixels
    result = score_pairs([([0, 1, 0, 0], [0, 0, 0, 0])], 2)
    assert_scores(result, miou=37.5, aacc=75, macc=75, iou=[75, 0], acc=[75, NAN])


def test_ignore_index_pixels_are_not_counted_whatever_their_prediction():
    # the ignored pixels hold a wrong class and even an impossible one (7): neither counts
    result = score_pairs([([1, 0, 1, 7], [255, 0, 1, 255])], 2)
    assert_scores(result, 100, 100, 100, [100, 100], [100, 100])
    assert result.num_pixels == 2
    custom = score_pairs([([1, 0, 1, 1], [9, 0, 1, 9])], 2, ignore_index=9)
    assert custom.num_pixels == 2 and custom.mIoU == 100


def test_everything_ignored_gives_nan_scores_and_null_json():
    result = score_pairs([([0, 1], [255, 255])], 2)
    assert math.isnan(result.mIoU) and math.isnan(result.aAcc) and math.isnan(result.mAcc)
    data = result.to_json()
    assert data["mIoU"] is None and data["aAcc"] is None and data["classes"][1]["IoU"] is None
    assert data["num_pixels"] == 0


def test_summed_over_the_set_is_not_the_mean_of_per_image_scores():
    image_1 = ([1, 0, 0, 0], [1, 0, 0, 0])  # perfect: per-image mIoU 100
    image_2 = ([0, 0, 0, 1], [1, 1, 1, 1])  # bg I=0 U=3, fg I=1 U=4: per-image mIoU 12.5
    per_image = [score_pairs([pair], 2).mIoU for pair in (image_1, image_2)]
    assert per_image == [100, 12.5]
    # over the set: I = (3, 2), U = (6, 5), truth = (3, 5)
    result = score_pairs([image_1, image_2], 2)
    assert_scores(result, miou=45, aacc=62.5, macc=70, iou=[50, 40], acc=[100, 40])
    assert result.mIoU != np.mean(per_image)


def test_nan_to_num_counts_absent_classes_with_that_value():
    matrix = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 0]])
    assert scores(matrix).mIoU == 100
    assert scores(matrix, nan_to_num=0).mIoU == pytest.approx(200 / 3)


# -- against independent implementations --------------------------------------------------------


def loop_confusion(pairs, num_classes, ignore_index):
    """Pixel by pixel, in plain Python."""
    counts = [[0] * num_classes for _ in range(num_classes)]
    for pred, target in pairs:
        for p, t in zip(np.asarray(pred).ravel().tolist(), np.asarray(target).ravel().tolist()):
            if t != ignore_index:
                counts[t][p] += 1
    return np.array(counts)


def random_pairs(seed, num_classes, images=3, ignore_index=255):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(images):
        shape = tuple(rng.integers(1, 24, size=2))
        target = rng.integers(0, num_classes, shape)
        target[rng.random(shape) < 0.1] = ignore_index
        pred = np.where(rng.random(shape) < 0.6, target, rng.integers(0, num_classes, shape))
        pred[pred == ignore_index] = 0
        pairs.append((pred.astype(np.uint8), target.astype(np.uint8)))
    return pairs


@pytest.mark.parametrize("num_classes", [1, 2, 5, 17])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matrix_equals_a_pixel_loop(seed, num_classes):
    pairs = random_pairs(seed, num_classes)
    confusion = ConfusionMatrix(num_classes)
    for pred, target in pairs:
        confusion.update(pred, target)
    expected = loop_confusion(pairs, num_classes, 255)
    np.testing.assert_array_equal(confusion.matrix, expected)
    assert confusion.matrix.dtype == np.int64


def histc(values, bins, low, high):
    """torch.histc: `bins` equal bins over [low, high], the last one closed, values outside dropped."""
    out = np.zeros(bins)
    for v in np.asarray(values, dtype=np.float64).ravel():
        if low <= v <= high:
            out[min(int((v - low) * bins / (high - low)), bins - 1)] += 1
    return out


def mmseg_intersect_and_union(pred, label, num_classes, ignore_index):
    """IoUMetric.intersect_and_union, numpy for torch."""
    mask = label != ignore_index
    pred, label = pred[mask], label[mask]
    intersect = pred[pred == label]
    area_intersect = histc(intersect, num_classes, 0, num_classes - 1)
    area_pred = histc(pred, num_classes, 0, num_classes - 1)
    area_label = histc(label, num_classes, 0, num_classes - 1)
    return area_intersect, area_pred + area_label - area_intersect, area_pred, area_label


def mmseg_compute_metrics(results, dtype):
    """IoUMetric.compute_metrics with total_area_to_metrics ('mIoU'), in `dtype` (mmseg: float32)."""
    total_intersect, total_union, _, total_label = (sum(np.asarray(r, dtype) for r in part) for part in zip(*results))
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = {"aAcc": total_intersect.sum() / total_label.sum(), "IoU": total_intersect / total_union,
               "Acc": total_intersect / total_label}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN: NaN, as in mmseg
        summary = {("aAcc" if k == "aAcc" else "m" + k): np.round(np.nanmean(v) * 100, 2) for k, v in ret.items()}
    return summary, ret


@pytest.mark.parametrize(("seed", "num_classes"), [(0, 2), (1, 3), (2, 6), (3, 12), (4, 30)])
def test_scores_equal_mmseg_formula(seed, num_classes):
    pairs = random_pairs(seed, num_classes, images=4)
    # make one class absent from both truth and prediction, and one only predicted, when there is room
    if num_classes >= 3:
        for pred, target in pairs:
            pred[pred == num_classes - 1] = 0
            target[target == num_classes - 1] = 0
            target[target == num_classes - 2] = 0
    results = [mmseg_intersect_and_union(p.astype(np.int64), t.astype(np.int64), num_classes, 255) for p, t in pairs]
    summary, ret = mmseg_compute_metrics(results, np.float64)
    ours = evaluate_masks(pairs, num_classes)

    assert ours.summary() == {key: float(value) for key, value in summary.items()}
    np.testing.assert_allclose(ours.iou, ret["IoU"] * 100, rtol=1e-12)
    np.testing.assert_allclose(ours.acc, ret["Acc"] * 100, rtol=1e-12)
    totals = [sum(r[k] for r in results) for k in range(4)]
    for theirs, mine in zip(totals, areas(ours.matrix)):
        np.testing.assert_array_equal(theirs, mine)
    # mmseg itself counts in float32: the same to far below the 0.01 it prints
    summary32, _ = mmseg_compute_metrics(results, np.float32)
    for key, value in summary32.items():
        assert abs(float(value) - getattr(ours, key)) <= 0.005 + 1e-4, key


def test_chunked_counting_equals_one_pass(monkeypatch):
    pairs = random_pairs(7, 5, images=2)
    whole = ConfusionMatrix(5)
    for pred, target in pairs:
        whole.update(pred, target)
    monkeypatch.setattr(metrics, "_CHUNK", 7)
    chunked = ConfusionMatrix(5)
    for pred, target in pairs:
        chunked.update(pred, target)
    np.testing.assert_array_equal(chunked.matrix, whole.matrix)


def test_batches_and_merged_matrices_equal_one_pass():
    rng = np.random.default_rng(3)
    target = rng.integers(0, 4, (6, 10, 12))
    pred = rng.integers(0, 4, (6, 10, 12))
    batch = ConfusionMatrix(4)
    batch.update(pred, target)
    parts = [ConfusionMatrix(4) for _ in range(3)]
    for k, part in enumerate(parts):
        part.update(pred[2 * k:2 * k + 2], target[2 * k:2 * k + 2])
    merged = ConfusionMatrix(4)
    for part in parts:
        merged += part
    np.testing.assert_array_equal(merged.matrix, batch.matrix)
    np.testing.assert_array_equal((parts[0] + parts[1] + parts[2]).matrix, batch.matrix)
    np.testing.assert_array_equal(parts[0].matrix.sum(), 240)  # `+` left its operands alone
    with pytest.raises(InputError, match="cannot merge"):
        batch.merge(ConfusionMatrix(5))


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pred", "target", "message"), [
    ([0, 3], [0, 1], "prediction holds value 3, outside the class indices 0..2"),
    ([0, -1], [0, 1], "prediction holds value -1"),
    ([0, 1], [0, 4], "target holds value 4, outside the class indices 0..2 or the ignore index 255"),
    ([0.0, 1.0], [0, 1], "prediction has dtype float64"),
    ([0, 1, 1], [0, 1], "prediction shape (3,) differs from target shape (2,)"),
])
def test_bad_masks_are_refused(pred, target, message):
    with pytest.raises(InputError, match=re.escape(message)):
        ConfusionMatrix(3).update(np.asarray(pred), np.asarray(target))


def test_bad_setup_is_refused():
    with pytest.raises(InputError, match="ignore index 1 is a class index"):
        ConfusionMatrix(3, ignore_index=1)
    with pytest.raises(InputError, match="at least one class"):
        ConfusionMatrix(0)
    with pytest.raises(InputError, match="2 class names for 3 classes"):
        scores(np.eye(3, dtype=int), ["a", "b"])
    with pytest.raises(InputError, match="square"):
        scores(np.zeros((2, 3), int))


# -- JSON, summary, table -----------------------------------------------------------------------------


def test_json_writes_nan_as_null_and_reads_back():
    result = score_pairs([([0, 1, 1, 1], [0, 0, 1, 1])], 3)
    result = scores(result.matrix, ["background", "scratch", "dent"])
    data = result.to_json()
    text = json.dumps(data, allow_nan=False)  # strict JSON: would raise on NaN
    assert data["classes"][2] == {"name": "dent", "IoU": None, "Acc": None, "pixels": 0}
    assert data["classes"][0]["pixels"] == 2 and data["num_pixels"] == 4
    assert data["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    back = SegScores.from_json(json.loads(text))
    assert back.to_json() == data
    assert math.isnan(back.iou[2]) and back.iou[:2] == result.iou[:2] and back.mIoU == result.mIoU
    assert back.class_names == ("background", "scratch", "dent")
    np.testing.assert_array_equal(back.matrix, result.matrix)


def test_from_json_refuses_malformed_input():
    with pytest.raises(InputError, match="eval.json: missing mAcc"):
        SegScores.from_json({"mIoU": 1, "aAcc": 1, "classes": []}, "eval.json")
    with pytest.raises(InputError, match="expected a number or null"):
        SegScores.from_json({"mIoU": "high", "aAcc": 1, "mAcc": 1, "classes": []})
    with pytest.raises(InputError, match="confusion_matrix has 2 classes"):
        SegScores.from_json({"mIoU": 1, "aAcc": 1, "mAcc": 1, "classes": [{"name": "a"}],
                             "confusion_matrix": [[1, 0], [0, 1]]})


def test_summary_rounds_like_mmseg_and_table_has_two_decimals():
    result = score_pairs([([0, 1, 1, 1], [0, 0, 1, 1])], 3)  # IoU (50, 66.67, nan), Acc (50, 100, nan)
    assert result.summary() == {"aAcc": 75.0, "mIoU": 58.33, "mAcc": 75.0}
    assert result.mIoU != 58.33  # kept unrounded
    table = result.to_markdown()
    assert "| class 1 | 66.67 | 100.00 |" in table and "| class 2 | nan | nan |" in table and "**58.33**" in table


def test_mmseg_label_reduce_zero_label_and_label_map():
    label = np.array([0, 1, 2, 255, 3], np.uint8)
    np.testing.assert_array_equal(mmseg_label(label, reduce_zero_label=True), [255, 0, 1, 255, 2])
    # the map reads the values before any replacement: 1->2 and 2->1 swap instead of collapsing
    np.testing.assert_array_equal(mmseg_label(label, label_map={1: 2, 2: 1}), [0, 2, 1, 255, 3])
    # reduce first, then map (mmseg 1.x LoadAnnotations)
    np.testing.assert_array_equal(mmseg_label(label, True, {0: 5}), [255, 5, 1, 255, 2])


def test_metrics_and_plots_import_without_torch():
    code = ("import sys, defectspectrum.seg.metrics, defectspectrum.seg.plots; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- plot ---------------------------------------------------------------------------------------------


def test_confusion_png_opens_with_a_sensible_size(tmp_path):
    matrix = np.array([[500, 20, 3], [4, 90, 0], [0, 0, 0]])
    path = write_confusion_png(tmp_path / "eval" / "confusion.png", matrix, ["background", "scratch", "dent"],
                               counts=True)
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        assert 300 <= image.width <= 1200 and 300 <= image.height <= 1200
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_confusion_png_for_thirty_long_named_classes(tmp_path):
    n = 30
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (n, n)) + np.diag(rng.integers(100, 10_000, n))
    names = [f"object {k // 5} / a rather long defect name {k}" for k in range(n)]
    path = write_confusion_png(tmp_path / "c.png", matrix, names, normalize="pred")
    with Image.open(path) as image:
        assert 1000 <= image.width <= 2500 and 1000 <= image.height <= 2500
    fig = confusion_figure(matrix, names)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert all(len(label) <= 20 for label in labels)
    assert len(set(labels)) == n  # shortened in the middle, the names stay apart


def test_confusion_figure_values_and_errors():
    fig = confusion_figure(np.array([[3, 1], [0, 0]]), ["bg", "fg"])
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["25.0", "75.0"]  # row %; the empty truth row and the zero cell stay blank
    raw = confusion_figure(np.array([[3, 1], [0, 0]]), ["bg", "fg"], normalize="none")
    assert sorted(t.get_text() for t in raw.axes[0].texts) == ["1", "3"]
    with pytest.raises(InputError, match="unknown normalize"):
        confusion_figure(np.eye(2, dtype=int), ["a", "b"], normalize="rows")
    with pytest.raises(InputError, match="1 class names for a 2-class matrix"):
        confusion_figure(np.eye(2, dtype=int), ["a"])
