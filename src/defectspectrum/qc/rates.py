"""Image-level rates of a QC simulation, defective being positive, in percent as in the paper's Table 5.

recall = TP / (TP + FN), FPR = FP / (FP + TN), precision = TP / (TP + FP). A rate whose denominator
is 0 (no defective images, say) is undefined: `None` in JSON, "n/a" in tables, never 0 or 100.
escape rate = FN / (TP + FN) = 100 - recall (defective products accepted); false-reject rate = FPR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

OUTCOMES = ("TP", "FN", "FP", "TN")
RATE_COLUMNS = ("recall", "fpr", "precision", "tp", "fn", "fp", "tn")  # the CSV columns of `Counts.cells`


def rate(numerator: int, denominator: int) -> float | None:
    """`numerator / denominator` in percent, or None where the denominator is 0."""
    return None if denominator == 0 else 100.0 * numerator / denominator


def outcome(truth_defective: bool, predicted_defective: bool) -> str:
    """TP, FN (an escape), FP (a false reject) or TN."""
    if truth_defective:
        return "TP" if predicted_defective else "FN"
    return "FP" if predicted_defective else "TN"


@dataclass
class Counts:
    """Confusion counts of image verdicts."""

    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0

    def add(self, truth_defective: bool, predicted_defective: bool) -> str:
        """Count one image; returns its outcome."""
        name = outcome(truth_defective, predicted_defective)
        setattr(self, name.lower(), getattr(self, name.lower()) + 1)
        return name

    @property
    def defective(self) -> int:
        return self.tp + self.fn

    @property
    def benign(self) -> int:
        return self.fp + self.tn

    @property
    def recall(self) -> float | None:
        return rate(self.tp, self.defective)

    @property
    def fpr(self) -> float | None:
        return rate(self.fp, self.benign)

    @property
    def precision(self) -> float | None:
        return rate(self.tp, self.tp + self.fp)

    @property
    def escape_rate(self) -> float | None:
        return rate(self.fn, self.defective)

    def cells(self) -> list[Any]:
        """The `RATE_COLUMNS` of a table row: the rates as `percent` text, then the counts."""
        return [percent(self.recall), percent(self.fpr), percent(self.precision), self.tp, self.fn, self.fp, self.tn]

    def rates_json(self) -> dict[str, Any]:
        return {"recall": self.recall, "fpr": self.fpr, "precision": self.precision,
                "counts": {"tp": self.tp, "fn": self.fn, "fp": self.fp, "tn": self.tn,
                           "defective": self.defective, "benign": self.benign}}


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion, in percent; None for no trials. It stays inside
    0..100 and is sound for small counts and for 0 or all successes (where the normal one collapses)."""
    if trials <= 0:
        return None
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} must be between 0 and 1")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def percent(value: float | None, digits: int = 2) -> str:
    """A rate for tables: `12.50`, or `n/a` where undefined."""
    return "n/a" if value is None else f"{value:.{digits}f}"
