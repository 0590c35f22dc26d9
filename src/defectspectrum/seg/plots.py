"""Segmentation plots: the confusion matrix and the aug-study curve (matplotlib `Figure`s, no pyplot, no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from defectspectrum.draw import SHEET_MAX_BYTES, _save_figure_png
from defectspectrum.errors import InputError

NORMALIZE = ("true", "pred", "all", "none")  # % of each truth row, each predicted column, all pixels; or counts
NAME_CHARS = 20  # longer class names are cut to this many characters, "…" in the middle (the ends tell apart)
ANNOTATE_MAX = 30  # cells carry their numbers up to this many classes


def _short(name: str, limit: int = NAME_CHARS) -> str:
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    return name[:head] + "…" + name[len(name) - (limit - 1 - head):]


def _normalized(counts: np.ndarray, normalize: str) -> np.ndarray:
    """Percentages (NaN where a row/column has no pixels) or the counts as floats."""
    totals: Any
    if normalize == "true":
        totals = counts.sum(axis=1, keepdims=True)
    elif normalize == "pred":
        totals = counts.sum(axis=0, keepdims=True)
    elif normalize == "all":
        totals = counts.sum()
    else:
        return counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(totals > 0, counts * 100.0 / np.where(totals > 0, totals, 1), np.nan)


def _count_text(count: int) -> str:
    if count < 10_000:
        return str(count)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= limit:
            return f"{count / limit:.3g}{suffix}"
    return str(count)


def confusion_figure(matrix: Any, class_names: Sequence[str], normalize: str = "true", counts: bool = False,
                     title: str | None = None) -> Any:
    """The confusion matrix as a heat map: rows truth, columns prediction.

    `normalize`: "true" (default) shows each cell as % of its truth row (the diagonal is the class's
    Acc), "pred" % of its predicted column, "all" % of all counted pixels, "none" pixel counts.
    `counts=True` adds the pixel count under each percentage. A row with no pixels is grey.
    Cells with pixels carry numbers up to 30 classes; names longer than 20 characters are shortened.
    """
    import matplotlib as mpl
    from matplotlib.figure import Figure

    grid = np.asarray(matrix)
    if grid.ndim != 2 or grid.shape[0] != grid.shape[1] or grid.shape[0] < 1:
        raise InputError(f"confusion_figure: expected a square (C, C) matrix; got shape {grid.shape}")
    if normalize not in NORMALIZE:
        raise InputError(f"unknown normalize {normalize!r}; choose one of {', '.join(NORMALIZE)}")
    n = grid.shape[0]
    if len(class_names) != n:
        raise InputError(f"confusion_figure: {len(class_names)} class names for a {n}-class matrix")
    grid = grid.astype(np.int64)
    values = _normalized(grid, normalize)
    percent = normalize != "none"

    side = float(np.clip(2.8 + 0.42 * n, 4.5, 16.0))
    fig = Figure(figsize=(side + 1.4, side + 0.4), facecolor="white", layout="constrained")
    ax = fig.subplots()
    shown = np.ma.masked_invalid(values)
    cmap = mpl.colormaps["Blues"].with_extremes(bad="#e6e6e6")
    vmax = 100.0 if percent else max(float(np.nanmax(values)) if values.size else 1.0, 1.0)
    image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest", aspect="equal")
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
    colorbar.set_label("% of truth row" if normalize == "true" else "% of predicted column" if normalize == "pred"
                       else "% of pixels" if normalize == "all" else "pixels")

    labels = [_short(str(name)) for name in class_names]
    tick_size = 9 if n <= 12 else 7
    ax.set_xticks(range(n), labels, rotation=45 if n <= 12 else 90, ha="right" if n <= 12 else "center",
                  rotation_mode="anchor" if n <= 12 else "default", fontsize=tick_size)
    ax.set_yticks(range(n), labels, fontsize=tick_size)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title(title or f"Confusion matrix ({int(grid.sum()):,} pixels)", fontsize=10, loc="left")
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)

    if n <= ANNOTATE_MAX:
        font = 9 if n <= 8 else 7 if n <= 16 else 6
        for row in range(n):
            for col in range(n):
                value = values[row, col]
                if grid[row, col] == 0:  # empty cells stay blank, so the errors that happened stand out
                    continue
                text = ("<0.1" if value < 0.05 else f"{value:.1f}") if percent else _count_text(int(grid[row, col]))
                if counts and percent:
                    text += f"\n{_count_text(int(grid[row, col]))}"
                dark = value > 0.55 * vmax
                ax.text(col, row, text, ha="center", va="center", fontsize=font,
                        color="white" if dark else "#222", linespacing=1.0)
    return fig


def write_confusion_png(path: Path, matrix: Any, class_names: Sequence[str], normalize: str = "true",
                        counts: bool = False, title: str | None = None) -> Path:
    """Write `confusion_figure(...)` as a PNG at `path` atomically; returns `path`."""
    path = Path(path)
    _save_figure_png(confusion_figure(matrix, class_names, normalize, counts, title), path, SHEET_MAX_BYTES)
    return path


def study_figure(results: Sequence[dict[str, Any]]) -> Any:
    """mIoU against the synthetic share (aug-study results: rows like `20%`), mean ± std over seeds."""
    from matplotlib.figure import Figure

    ratios = sorted({float(str(r["row"]).rstrip("%")) for r in results})
    means, stds = [], []
    for ratio in ratios:
        values = [r["mIoU"] for r in results if float(str(r["row"]).rstrip("%")) == ratio and r["mIoU"] is not None]
        means.append(float(np.mean(values)) if values else np.nan)
        stds.append(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)
    fig = Figure(figsize=(5.5, 3.6), facecolor="white", layout="constrained")
    ax = fig.add_subplot()
    ax.errorbar(ratios, means, yerr=stds, marker="o", capsize=3)
    ax.set_xlabel("synthetic pairs added (% of real training pairs)")
    ax.set_ylabel("val mIoU (%)")
    ax.grid(alpha=0.3)
    return fig


def write_study_png(path: Path, results: Sequence[dict[str, Any]]) -> None:
    """Write `study_figure` as PNG, atomically."""
    _save_figure_png(study_figure(results), Path(path), SHEET_MAX_BYTES)
