"""Drawing shared by every stage: class colours, mask overlays, shrinking that keeps thin defects,
side-by-side panels and contact sheets with a class-colour legend.

Everything here works on plain arrays and names (no DS folder), so the report and every stage
can draw without reaching into `data/`.
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from defectspectrum.errors import InputError
from defectspectrum.io import atomic_path

THUMB_MAX_SIDE = 240  # longest side of a contact-sheet thumbnail (pixels at SHEET_DPI)
SHEET_DPI = 100
SHEET_MAX_BYTES = 3_000_000

# Okabe & Ito's colour-blind-safe palette (orange, sky blue, bluish green, yellow, reddish purple,
# blue, vermillion), then Paul Tol's "muted" colours; further classes get golden-angle hues.
_BASE_COLORS = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (204, 121, 167), (0, 114, 178),
    (213, 94, 0), (136, 204, 238), (68, 170, 153), (221, 204, 119), (170, 68, 153), (51, 34, 136),
    (204, 102, 119), (17, 119, 51), (153, 153, 51), (136, 34, 85),
)


def class_colors(n: int) -> np.ndarray:
    """(n, 3) uint8 RGB colours for class indices 0..n-1: index 0 (background) is black, the rest distinct.

    The colours depend only on the index, so class i has the same colour in every object and run.
    """
    if n < 0:
        raise InputError(f"class_colors: n must be >= 0, got {n}")
    colors: list[tuple[int, int, int]] = [(0, 0, 0)]
    seen = set(colors)
    k = 0
    while len(colors) < n:
        if k < len(_BASE_COLORS):
            rgb = _BASE_COLORS[k]
        else:
            j = k - len(_BASE_COLORS)
            hue = (j * 0.618033988749895) % 1.0
            sat, val = (0.85, 0.95, 0.65)[j % 3], (0.95, 0.75, 0.9)[(j // 3) % 3]
            rgb = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val))  # type: ignore[assignment]
        k += 1
        if rgb not in seen:
            seen.add(rgb)
            colors.append(rgb)
    return np.array(colors[:n], dtype=np.uint8).reshape(n, 3)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2).astype(np.uint8, copy=False)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2).astype(np.uint8, copy=False)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[..., :3]).astype(np.uint8, copy=False)
    raise InputError(f"overlay: expected a grey (H, W) or colour (H, W, 3) image, got shape {image.shape}")


def outline_thickness(shape: tuple[int, ...]) -> int:
    """Outline width in pixels for an image of `shape`: 1 px up to ~512 px, thicker on large images."""
    return max(1, round(min(shape[:2]) / 512))


def overlay(image: np.ndarray, mask: np.ndarray, colors: np.ndarray, alpha: float = 0.45,
            outline: bool = True) -> np.ndarray:
    """`image` (grey or RGB) with each class region of `mask` tinted in its colour; (H, W, 3) uint8.

    Pixels with class 0 are left as they are. With `outline`, each region's contour is drawn in the
    full class colour (cv2), so hair-thin defects stay visible where a tint alone would not.
    """
    rgb = _as_rgb(image)
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise InputError(f"overlay: mask shape {mask.shape} does not match image size {rgb.shape[:2]}; "
                         "resize the mask to its image")
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    top = int(mask.max(initial=0))
    if top >= len(colors):
        raise InputError(f"overlay: mask index {top} has no colour (only {len(colors)} given); "
                         "pass class_colors(len(class_map))")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"overlay: alpha must lie in [0, 1], got {alpha}")
    out = rgb.copy()
    labelled = mask > 0
    if labelled.any():
        tint = colors[mask[labelled]].astype(np.float32)
        out[labelled] = np.clip((1.0 - alpha) * rgb[labelled] + alpha * tint + 0.5, 0, 255).astype(np.uint8)
    if outline:
        thickness = outline_thickness(rgb.shape)
        for index in np.unique(mask[labelled]) if labelled.any() else ():
            region = (mask == index).astype(np.uint8)
            contours, _ = cv2.findContours(region, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            color = tuple(int(c) for c in colors[index])
            cv2.drawContours(out, contours, -1, color, thickness, lineType=cv2.LINE_8)
    return out


def shrink(image: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask scaled so the longer side is at most `max_side`, keeping thin regions.

    The image is area-averaged; a pixel of the small mask takes the class covering most of it, and
    any class coverage counts, so a 1-px scratch does not vanish when shrunk.
    """
    h, w = mask.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return image, mask
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_mask = np.zeros((size[1], size[0]), dtype=mask.dtype)
    best = np.zeros((size[1], size[0]), dtype=np.float32)
    for index in np.unique(mask):
        if index == 0:
            continue
        cover = cv2.resize((mask == index).astype(np.float32), size, interpolation=cv2.INTER_AREA)
        win = cover > best
        small_mask[win] = index
        best[win] = cover[win]
    return small_image, small_mask


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """`left` and `right` (H, W, 3) next to each other with a white gap."""
    h = left.shape[0]
    spacer = np.full((h, gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, spacer, right], axis=1)


def _columns(n: int) -> int:
    """Grid columns for `n` thumbnails: 4-6 (10 for many), choosing the count that leaves fewest empty cells."""
    if n <= 4:
        return n
    options = (6, 5, 4) if n <= 36 else (10, 9, 8)
    return min(options, key=lambda c: (math.ceil(n / c) * c - n, -c))


def _legend_handles(class_names: Sequence[str]) -> tuple[list, list[str]]:
    from matplotlib.patches import Patch

    colors = class_colors(len(class_names))
    handles = [Patch(facecolor=colors[i] / 255.0, edgecolor="#333333", linewidth=0.5)
               for i in range(1, len(class_names))]
    return handles, list(class_names[1:])


def write_contact_sheet(thumbs: Sequence[np.ndarray], captions: Sequence[str], legend: Mapping[str, Sequence[str]],
                        path: Path, columns: int | None = None) -> Path:
    """A grid of thumbnails captioned below the image, then a class-colour legend per object (matplotlib, Agg).

    `legend` maps each object to its class names, background first (a ClassMap's `names`).
    """
    _save_figure_png(contact_sheet_figure(thumbs, captions, legend, path, columns), path, SHEET_MAX_BYTES)
    return path


def contact_sheet_figure(thumbs: Sequence[np.ndarray], captions: Sequence[str], legend: Mapping[str, Sequence[str]],
                         path: Path, columns: int | None = None) -> Any:
    """The matplotlib Figure of `write_contact_sheet` (`path` only names it in errors).

    Each thumbnail gets a square box with its caption's room below it, between the rows, so a tall
    or wide image shrinks into its box and never covers a neighbour or its caption."""
    from matplotlib.figure import Figure

    n = len(thumbs)
    if n == 0:
        raise InputError(f"{path}: no thumbnails to put on a contact sheet")
    cols = columns or _columns(n)
    rows = math.ceil(n / cols)
    cell_px = THUMB_MAX_SIDE if n <= 36 else max(96, int(THUMB_MAX_SIDE * math.sqrt(36 / n)))
    cell_w = cell_px / SHEET_DPI
    caption_h = 0.28  # inches below each thumbnail for its caption
    cell_h = cell_w + caption_h
    fig_w = max(cols * cell_w, 4.0)
    longest = max((len(name) for names in legend.values() for name in names[1:]), default=0)
    legend_ncol = 2 if longest <= 14 else 1  # class-name columns inside one object's legend
    slot_w = 0.3 + legend_ncol * (0.35 + 0.055 * min(longest, 28))  # inches one object's legend needs
    legend_cols = max(1, min(len(legend), int(fig_w / slot_w)))
    legend_rows = math.ceil(len(legend) / legend_cols) if legend else 0
    biggest = max((len(names) - 1 for names in legend.values()), default=0)
    legend_h = (0.35 + 0.17 * math.ceil(biggest / legend_ncol)) if legend else 0.0
    fig_h = rows * cell_h + legend_rows * legend_h + 0.15
    fig = Figure(figsize=(fig_w, fig_h), dpi=SHEET_DPI, facecolor="white")
    top = 1.0 - 0.05 / fig_h
    sheet_bottom = 1.0 - (rows * cell_h + 0.05) / fig_h  # below the last row's captions
    # rows of square boxes cell_w high, the captions in the gaps between them (hspace: gap / box height)
    grid = fig.add_gridspec(rows, cols, left=0.005, right=0.995, top=top, bottom=sheet_bottom + caption_h / fig_h,
                            wspace=0.04, hspace=caption_h / cell_w)
    max_chars = max(8, int(cell_px / 6.6))
    for i, (thumb, caption) in enumerate(zip(thumbs, captions)):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        ax.imshow(thumb, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor("#bbbbbb")
            spine.set_linewidth(0.6)
        text = caption if len(caption) <= max_chars else caption[: max_chars - 1] + "\u2026"
        ax.set_xlabel(text, fontsize=8, labelpad=2, color="#222222")
    if legend:
        lgrid = fig.add_gridspec(legend_rows, legend_cols, left=0.01, right=0.99, top=sheet_bottom - 0.02 / fig_h,
                                 bottom=0.05 / fig_h, wspace=0.05, hspace=0.1)
        for i, (object_name, class_names) in enumerate(legend.items()):
            ax = fig.add_subplot(lgrid[i // legend_cols, i % legend_cols])
            ax.axis("off")
            handles, labels = _legend_handles(class_names)
            if handles:
                ax.legend(handles, labels, title=object_name, loc="upper left", ncol=legend_ncol, fontsize=7.5,
                          title_fontproperties={"weight": "bold", "size": 8}, frameon=False, handlelength=1.2,
                          handleheight=1.0, columnspacing=1.0, borderaxespad=0.1, alignment="left")
    return fig


def _save_figure_png(fig: Any, path: Path, max_bytes: int) -> None:
    """Save `fig` as PNG atomically; quantised to 256 colours where the full-colour file would be too large."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=SHEET_DPI, facecolor="white")
    data = buffer.getvalue()
    if len(data) > max_bytes:
        image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                                      dither=Image.Dither.FLOYDSTEINBERG)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)
