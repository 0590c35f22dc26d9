"""Plots for reports (matplotlib, no pyplot state: figures are plain `Figure`s rendered with Agg)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from defectspectrum.draw import class_colors
from defectspectrum.errors import InputError


def _rows(stats: Mapping[str, Any]) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(object, class, class index, class stats) for every defect class, in object order."""
    objects = stats.get("objects")
    if not isinstance(objects, Mapping):
        raise InputError("stats_figure: expected the JSON of compute_stats(...).to_json() (an 'objects' mapping)")
    rows = []
    for object_name, obj in objects.items():
        for cls in obj.get("classes", []):
            rows.append((str(object_name), str(cls["name"]), int(cls["index"]), cls))
    return rows


def stats_figure(stats_json: Mapping[str, Any] | Any):
    """Per defect class of each object: images and regions (bars), and region area percentiles (boxes, log scale).

    `stats_json` is `compute_stats(folder).to_json()` (a `DatasetStats` is accepted too). Bars and
    boxes take each class's overlay colour; boxes span p25..p75 with whiskers at p5 and p95.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    if hasattr(stats_json, "to_json"):
        stats_json = stats_json.to_json()
    rows = _rows(stats_json)
    height = max(2.6, 0.24 * len(rows) + 1.4)
    fig = Figure(figsize=(11, height), facecolor="white")
    counts_ax, area_ax = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 1.15], "wspace": 0.06})
    if not rows:
        for ax in (counts_ax, area_ax):
            ax.text(0.5, 0.5, "no defect classes", ha="center", va="center", transform=ax.transAxes, color="#666")
            ax.set_xticks([])
            ax.set_yticks([])
        return fig

    positions = list(range(len(rows)))[::-1]  # first class at the top
    colors = [class_colors(index + 1)[index] / 255.0 for _, _, index, _ in rows]
    bar = 0.38
    images = [cls.get("images", 0) for *_, cls in rows]
    regions = [cls.get("regions", 0) for *_, cls in rows]
    counts_ax.barh([p + bar / 2 for p in positions], images, height=bar, color=colors, edgecolor="#333", linewidth=0.4)
    counts_ax.barh([p - bar / 2 for p in positions], regions, height=bar, color=colors, edgecolor="#333",
                   linewidth=0.4, hatch="////", alpha=0.75)
    counts_ax.set_yticks(positions, [f"{obj} / {name}" for obj, name, _, _ in rows], fontsize=8)
    counts_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    counts_ax.set_xlabel("count")
    counts_ax.set_title("Images and regions per class", fontsize=10, loc="left")
    counts_ax.legend(handles=[Patch(facecolor="#bbb", edgecolor="#333", label="images"),
                              Patch(facecolor="#bbb", edgecolor="#333", hatch="////", label="regions")],
                     fontsize=8, loc="lower right", frameon=False)

    boxes, box_positions, box_colors = [], [], []
    for pos, color, (_, name, _, cls) in zip(positions, colors, rows):
        pct = cls.get("area_pct")
        if not pct:
            continue
        floor = 1e-4
        boxes.append({"label": name, "whislo": max(pct["p5"], floor), "q1": max(pct["p25"], floor),
                      "med": max(pct["p50"], floor), "q3": max(pct["p75"], floor),
                      "whishi": max(pct["p95"], floor), "fliers": []})
        box_positions.append(pos)
        box_colors.append(color)
    if boxes:
        drawn = area_ax.bxp(boxes, positions=box_positions, orientation="horizontal", widths=0.6,
                            patch_artist=True, showfliers=False, manage_ticks=False,
                            medianprops={"color": "#111", "linewidth": 1.2})
        for patch, color in zip(drawn["boxes"], box_colors):
            patch.set_facecolor(color)
            patch.set_edgecolor("#333")
            patch.set_linewidth(0.5)
        area_ax.set_xscale("log")
    else:
        area_ax.text(0.5, 0.5, "no defect regions", ha="center", va="center", transform=area_ax.transAxes,
                     color="#666")
    area_ax.set_xlabel("region area, % of image (log scale; box p25–p75, whiskers p5–p95)")
    area_ax.set_title("Region area per class", fontsize=10, loc="left")
    area_ax.tick_params(axis="y", left=False)

    # separate objects with a thin line
    previous = None
    for pos, (obj, *_rest) in zip(positions, rows):
        if previous is not None and obj != previous:
            for ax in (counts_ax, area_ax):
                ax.axhline(pos + 0.5, color="#999", linewidth=0.6)
        previous = obj
    for ax in (counts_ax, area_ax):
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig
