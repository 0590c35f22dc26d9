"""Segmentation scores exactly as mmsegmentation's `IoUMetric`, from a confusion matrix (numpy only).

mmseg counts, per class over the whole evaluation set, the intersection and the union of prediction
and truth (background is a class like any other), then: IoU = intersect / union, Acc = intersect /
truth pixels, aAcc = all intersections / all labelled pixels, and mIoU / mAcc = the NaN-mean over
classes in percent. A class with union 0 over the set (in neither truth nor prediction) has IoU NaN
and is left out of mIoU; a class only predicted has IoU 0 (it counts) and Acc NaN (it does not).
Pixels whose truth is the ignore index are not counted at all.

All of that follows from one (C, C) matrix of pixel counts, rows = truth, columns = prediction:
intersect = its diagonal, truth area = row sums, predicted area = column sums.

Where this differs from mmseg, on purpose: mmseg's `torch.histc` silently drops values outside
0..C-1, so a predicted class that does not exist counts as a miss, and a truth value that is neither
a class nor ignored still adds its prediction to that class's predicted area while being no class's
truth; here both are an `InputError`. mmseg accumulates counts in float32 (exact up to 2**24 pixels
per class); here they are int64, exact at any size (the two agree far below the 0.01 printed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from defectspectrum.errors import InputError
from defectspectrum.seg.labels import IGNORE_INDEX

_CHUNK = 1 << 22  # pixels per bincount call: bounds the temporary int64 index array to 32 MiB


def _class_indices(values: np.ndarray, what: str) -> np.ndarray:
    """`values` as an integer array, or an error naming `what` (a float array is most likely logits)."""
    if values.dtype.kind not in "biu":
        raise InputError(f"{what} has dtype {values.dtype}; pass integer class indices (e.g. the argmax of the "
                         "logits over the class axis)")
    return values


class ConfusionMatrix:
    """Pixel counts of (truth, prediction) pairs; `matrix[t, p]` = pixels of class t predicted as p.

    `update` takes masks of any shape (one image, a batch); pixels whose truth is `ignore_index` are
    skipped (their prediction is not looked at). Matrices of disjoint parts of a set add up (`+=`,
    `merge`) to the matrix of the whole set, which is what mmseg's summed areas are.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if int(num_classes) < 1:
            raise InputError(f"num_classes is {num_classes}; a segmentation has at least one class (background)")
        if 0 <= ignore_index < num_classes:
            raise InputError(f"ignore index {ignore_index} is a class index (0..{num_classes - 1}); "
                             f"use one outside the classes, normally {IGNORE_INDEX}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    @classmethod
    def from_array(cls, matrix: Any, ignore_index: int = IGNORE_INDEX) -> ConfusionMatrix:
        """A confusion matrix holding the given (C, C) counts (e.g. after summing matrices across processes)."""
        counts = np.asarray(matrix)
        if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 1:
            raise InputError(f"a confusion matrix is square (C, C); got shape {counts.shape}")
        if counts.dtype.kind not in "biuf" or not np.all(np.isfinite(counts)) or np.any(counts < 0) \
                or np.any(counts != np.round(counts)):
            raise InputError("a confusion matrix holds non-negative whole pixel counts")
        result = cls(counts.shape[0], ignore_index)
        result.matrix[...] = counts.astype(np.int64)
        return result

    def update(self, pred: Any, target: Any) -> None:
        """Count one prediction against its truth (integer arrays of one shape)."""
        pred = _class_indices(np.asarray(pred), "prediction")
        target = _class_indices(np.asarray(target), "target")
        if pred.shape != target.shape:
            raise InputError(f"prediction shape {pred.shape} differs from target shape {target.shape}; "
                             "resize the prediction to the mask (nearest neighbour) before scoring")
        flat_pred, flat_target = pred.reshape(-1), target.reshape(-1)
        c = self.num_classes
        counts = np.zeros(c * c, dtype=np.int64)
        for start in range(0, flat_target.size, _CHUNK):
            t = flat_target[start:start + _CHUNK]
            p = flat_pred[start:start + _CHUNK]
            keep = t != self.ignore_index
            if not keep.all():
                t, p = t[keep], p[keep]
            if t.size == 0:
                continue
            self._check_range(p, "prediction")
            self._check_range(t, "target")
            counts += np.bincount(t.astype(np.int64) * c + p.astype(np.int64), minlength=c * c)
        self.matrix += counts.reshape(c, c)

    def _check_range(self, values: np.ndarray, what: str) -> None:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            extra = f" or the ignore index {self.ignore_index}" if what == "target" else ""
            raise InputError(f"{what} holds value {bad}, outside the class indices 0..{self.num_classes - 1}{extra}; "
                             "check num_classes and the label mapping")

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add `other`'s counts to this matrix (same classes and ignore index); returns self."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise InputError(f"cannot merge a {other.num_classes}-class confusion matrix (ignore {other.ignore_index})"
                             f" into a {self.num_classes}-class one (ignore {self.ignore_index})")
        self.matrix += other.matrix
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return ConfusionMatrix.from_array(self.matrix, self.ignore_index).merge(other)

    def scores(self, class_names: Sequence[str] | None = None, nan_to_num: float | None = None) -> SegScores:
        """`scores(self.matrix, class_names, nan_to_num)`."""
        return scores(self.matrix, class_names, nan_to_num)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.matrix.sum())})"


def areas(matrix: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mmseg's four per-class totals from a confusion matrix: (intersect, union, predicted, truth) pixels."""
    counts = np.asarray(matrix, dtype=np.int64)
    intersect = np.diagonal(counts).copy()
    area_pred = counts.sum(axis=0)
    area_label = counts.sum(axis=1)
    return intersect, area_pred + area_label - intersect, area_pred, area_label


def _nanmean(values: np.ndarray) -> float:
    """np.nanmean without the warning for all-NaN input (the result is NaN, as mmseg's)."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _num(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _float(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: expected a number or null, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SegScores:
    """mmseg IoUMetric results in percent: `mIoU`, `aAcc`, `mAcc` and per class `iou`, `acc`.

    Values are unrounded (mmseg rounds to 2 decimals when it reports: use `summary()` for its
    returned dict and `to_markdown()` for its per-class table). NaN marks a class with no union
    (IoU) or no truth pixels (Acc); `to_json` writes NaN as null.
    """

    mIoU: float
    aAcc: float
    mAcc: float
    iou: tuple[float, ...]
    acc: tuple[float, ...]
    class_names: tuple[str, ...]
    num_pixels: int = 0  # labelled (not ignored) pixels counted
    matrix: np.ndarray | None = field(default=None, compare=False, repr=False)  # rows truth, columns prediction

    def summary(self, decimals: int = 2) -> dict[str, float]:
        """`{"aAcc", "mIoU", "mAcc"}` rounded as mmseg's `compute_metrics` returns them (np.round)."""
        return {key: float(np.round(getattr(self, key), decimals)) for key in ("aAcc", "mIoU", "mAcc")}

    def to_markdown(self, decimals: int = 2) -> str:
        """mmseg's per-class table (Class, IoU, Acc) and a summary row, values with `decimals` places."""
        def cell(value: float) -> str:
            return "nan" if math.isnan(value) else f"{value:.{decimals}f}"

        lines = ["| Class | IoU | Acc |", "|---|---:|---:|"]
        lines += [f"| {name} | {cell(i)} | {cell(a)} |" for name, i, a in zip(self.class_names, self.iou, self.acc)]
        lines.append(f"| **mean** (aAcc {cell(self.aAcc)}) | **{cell(self.mIoU)}** | **{cell(self.mAcc)}** |")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Strict-JSON dict: `mIoU`, `aAcc`, `mAcc`, `classes` [{name, IoU, Acc, pixels}], `num_pixels`, and the
        `confusion_matrix` (rows truth) when known; NaN is null."""
        truth = self.matrix.sum(axis=1) if self.matrix is not None else None
        classes = []
        for k, (name, iou, acc) in enumerate(zip(self.class_names, self.iou, self.acc)):
            entry: dict[str, Any] = {"name": name, "IoU": _num(iou), "Acc": _num(acc)}
            if truth is not None:
                entry["pixels"] = int(truth[k])
            classes.append(entry)
        data: dict[str, Any] = {"mIoU": _num(self.mIoU), "aAcc": _num(self.aAcc), "mAcc": _num(self.mAcc),
                                "classes": classes, "num_pixels": int(self.num_pixels)}
        if self.matrix is not None:
            data["confusion_matrix"] = self.matrix.astype(np.int64).tolist()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "scores JSON") -> SegScores:
        """Read back `to_json()`'s dict; `where` names the source in errors."""
        if not isinstance(data, Mapping):
            raise InputError(f"{where}: expected an object with mIoU, aAcc, mAcc and classes")
        missing = [key for key in ("mIoU", "aAcc", "mAcc", "classes") if key not in data]
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}; write it with SegScores.to_json()")
        entries = data["classes"]
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) and "name" in e for e in entries):
            raise InputError(f"{where}: 'classes' must be a list of {{name, IoU, Acc}} objects")
        matrix = None
        if data.get("confusion_matrix") is not None:
            matrix = ConfusionMatrix.from_array(data["confusion_matrix"]).matrix
            if matrix.shape[0] != len(entries):
                raise InputError(f"{where}: confusion_matrix has {matrix.shape[0]} classes, 'classes' {len(entries)}")
        return cls(
            mIoU=_float(data["mIoU"], f"{where} mIoU"), aAcc=_float(data["aAcc"], f"{where} aAcc"),
            mAcc=_float(data["mAcc"], f"{where} mAcc"),
            iou=tuple(_float(e.get("IoU"), f"{where} {e['name']} IoU") for e in entries),
            acc=tuple(_float(e.get("Acc"), f"{where} {e['name']} Acc") for e in entries),
            class_names=tuple(str(e["name"]) for e in entries),
            num_pixels=int(data.get("num_pixels", 0)), matrix=matrix)


def _names(class_names: Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
    if class_names is None:
        return tuple(f"class {k}" for k in range(num_classes))
    names = tuple(str(name) for name in class_names)
    if len(names) != num_classes:
        raise InputError(f"{len(names)} class names for {num_classes} classes; give one name per class index")
    return names


def scores(matrix: Any, class_names: Sequence[str] | None = None, nan_to_num: float | None = None) -> SegScores:
    """mmseg IoUMetric (mIoU, Acc) scores of a confusion matrix, rows = truth, columns = prediction.

    As mmseg's `total_area_to_metrics` and `compute_metrics`: IoU = intersect / union and
    Acc = intersect / truth area per class (NaN where the denominator is 0), aAcc = intersect.sum()
    / truth.sum(), and the means are `nanmean(ratio) * 100`. `nan_to_num` (mmseg's option, default
    off) replaces NaN before the means, so absent classes then count with that value. Unrounded.
    """
    counts = ConfusionMatrix.from_array(matrix).matrix
    names = _names(class_names, counts.shape[0])
    intersect, union, _, area_label = areas(counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersect / union
        acc = intersect / area_label
        all_acc = np.float64(intersect.sum()) / np.float64(area_label.sum())
    if nan_to_num is not None:
        iou, acc = np.nan_to_num(iou, nan=nan_to_num), np.nan_to_num(acc, nan=nan_to_num)
        all_acc = np.nan_to_num(all_acc, nan=nan_to_num)
    return SegScores(
        mIoU=_nanmean(iou) * 100, aAcc=float(all_acc) * 100, mAcc=_nanmean(acc) * 100,
        iou=tuple(float(v) for v in iou * 100), acc=tuple(float(v) for v in acc * 100), class_names=names,
        num_pixels=int(area_label.sum()), matrix=counts)


def evaluate_masks(pairs: Iterable[tuple[Any, Any]], num_classes: int, class_names: Sequence[str] | None = None,
                   ignore_index: int = IGNORE_INDEX) -> SegScores:
    """Scores of (prediction, truth) mask pairs, counted over the whole set (mmseg's way, not a per-image mean)."""
    names = _names(class_names, num_classes)
    confusion = ConfusionMatrix(num_classes, ignore_index)
    for pred, target in pairs:
        confusion.update(pred, target)
    return confusion.scores(names)


def mmseg_label(label: Any, reduce_zero_label: bool = False, label_map: Mapping[int, int] | None = None) -> np.ndarray:
    """A truth mask prepared as mmseg's `LoadAnnotations` does before its metric sees it (int64 copy).

    `reduce_zero_label`: 0 becomes 255 (ignored) and every other value drops by one (255 stays 255);
    then `label_map` {old: new} is applied, each lookup on the values before any replacement.
    """
    out = np.array(_class_indices(np.asarray(label), "label"), dtype=np.int64)
    if reduce_zero_label:
        out[out == 0] = 255
        out -= 1
        out[out == 254] = 255
    if label_map:
        before = out.copy()
        for old, new in label_map.items():
            out[before == old] = new
    return out
