"""The NoC picture: mean IoU against the number of clicks, one line per model (thin objects dashed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from defectspectrum.click.noc import THRESHOLDS, ModelResult, mean_curve
from defectspectrum.draw import SHEET_MAX_BYTES, _save_figure_png


def noc_figure(results: Mapping[str, ModelResult], title: str = "") -> Any:
    """Mean IoU after clicks 1..max_clicks per model; the thin objects' mean dashed in the same colour."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 4.2), facecolor="white", layout="constrained")
    ax = fig.subplots()
    for i, (name, result) in enumerate(results.items()):
        color = f"C{i % 10}"
        clicks = range(1, result.max_clicks + 1)
        ax.plot(clicks, mean_curve(result.curves(), result.max_clicks), color=color, marker=".",
                label=f"{name} ({len(result.runs)} objects)")
        thin = result.curves(thin_only=True)
        if thin and len(thin) < len(result.runs):
            ax.plot(clicks, mean_curve(thin, result.max_clicks), color=color, linestyle="--", linewidth=1,
                    label=f"{name}, thin only ({len(thin)})")
    for threshold in THRESHOLDS:
        ax.axhline(threshold, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0.5, max((r.max_clicks for r in results.values()), default=1) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def write_noc_png(path: Path, results: Mapping[str, ModelResult], title: str = "") -> Path:
    """Write `noc_figure` as PNG, atomically."""
    _save_figure_png(noc_figure(results, title), Path(path), SHEET_MAX_BYTES)
    return Path(path)
