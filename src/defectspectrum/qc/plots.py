"""The sweep picture: recall against FPR as one limit varies (left), and both rates against the
limit's value (right), so an expert sees what each threshold costs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from defectspectrum.draw import SHEET_MAX_BYTES, _save_figure_png
from defectspectrum.qc.sweep import Calibration, SweepPoint


def _values(points: Sequence[SweepPoint], attribute: str) -> np.ndarray:
    return np.array([np.nan if getattr(p.counts, attribute) is None else getattr(p.counts, attribute)
                     for p in points], dtype=np.float64)


def sweep_figure(points: Sequence[SweepPoint], label: str, chosen: Calibration | None = None) -> Any:
    """Recall vs FPR (each point a value of the limit) and recall / FPR vs the value."""
    from matplotlib.figure import Figure

    values = np.array([p.value for p in points], dtype=np.float64)
    recall, fpr = _values(points, "recall"), _values(points, "fpr")
    fig = Figure(figsize=(9.5, 3.8), facecolor="white", layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(fpr, recall, marker="o", markersize=3)
    shown: list[tuple[float, float]] = []  # one label per distinct point (many values give the same rates)
    for i in range(len(points)):
        here = (float(fpr[i]), float(recall[i]))
        if not all(np.isfinite(here)) or any(abs(here[0] - x) < 4 and abs(here[1] - y) < 4 for x, y in shown):
            continue
        shown.append(here)
        left.annotate(f"{values[i]:g}", here, textcoords="offset points", xytext=(4, -10), fontsize=7, color="0.35")
    left.set_xlabel("FPR: benign rejected (%)")
    left.set_ylabel("recall: defective rejected (%)")
    left.set_xlim(-3, 103)
    left.set_ylim(-3, 103)
    left.set_title(f"varying {label}", fontsize=9)
    right.plot(values, recall, label="recall", marker=".")
    right.plot(values, fpr, label="FPR", marker=".")
    right.set_xlabel(f"{label} value")
    right.set_ylabel("%")
    right.set_ylim(-3, 103)
    if chosen is not None:
        right.axvline(chosen.value, color="0.3", linestyle="--", linewidth=1)
        right.annotate(f"calibrated: {chosen.value:g}", (chosen.value, 50), fontsize=7, rotation=90,
                       textcoords="offset points", xytext=(-10, 0))
    right.legend(fontsize=8, frameon=False)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return fig


def write_sweep_png(path: Path, points: Sequence[SweepPoint], label: str, chosen: Calibration | None = None) -> Path:
    """Write `sweep_figure` as PNG, atomically."""
    _save_figure_png(sweep_figure(points, label, chosen), Path(path), SHEET_MAX_BYTES)
    return Path(path)
