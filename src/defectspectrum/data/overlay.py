"""Mask overlays: class colours blended over images, region outlines, and a contact sheet with a legend."""

from __future__ import annotations

import colorsys
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import DSFolder, safe_name
from defectspectrum.data.io import atomic_path, read_json, save_png_atomic, write_json_atomic
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError
from defectspectrum.progress import track

CONTACT_SHEET = "contact_sheet.png"
MANIFEST = "show.json"  # the files the last `write_overlays` wrote into its folder
PANEL_MAX_SIDE = 768  # longest side of each panel of a per-sample overlay file
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
            rgb = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, sat, val))  # type: ignore[assignment]
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
    return max(1, int(round(min(shape[:2]) / 512)))


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
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
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


@dataclass
class ShowResult:
    """What `write_overlays` wrote: one overlay PNG per drawn sample (same order as `samples`) and the sheet."""

    overlays: list[Path]
    contact_sheet: Path
    samples: list[Sample] = field(default_factory=list)


def select_samples(folder: DSFolder, limit: int, object_name: str | None = None,
                   include_good: bool = False) -> list[Sample]:
    """Up to `limit` samples, defective first, taken round-robin over (object, defect type) groups.

    Every defect type of every object is drawn once before any is drawn twice, and a `limit` below
    the number of types still spreads over all objects. With `include_good`, each object's
    defect-free samples form one more group, taken after the defect types in every sweep.
    The result is ordered by object, then defect type, for display.
    """
    if limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    if object_name is not None:
        folder.classes(object_name)
    objects = [object_name] if object_name is not None else list(folder.objects)
    defective: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    good: dict[str, list[Sample]] = defaultdict(list)
    for sample in folder:
        if sample.object not in objects:
            continue
        if sample.is_good:
            good[sample.object].append(sample)
        else:
            defective[(sample.object, sample.defect_type or "")].append(sample)
    order = {name: i for i, name in enumerate(objects)}
    rank = {key: sum(1 for other in defective if other[0] == key[0] and other[1] < key[1]) for key in defective}
    # the first sweep takes every object's first type, then every object's second type, ...
    groups = [defective[key] for key in sorted(defective, key=lambda key: (rank[key], order[key[0]]))]
    if include_good:  # each object's defect-free samples are one more group, last in every sweep
        groups += [good[name] for name in objects if good[name]]
    chosen = _round_robin(groups, limit)
    if not chosen:
        what = f"object {object_name!r} of {folder.root}" if object_name else str(folder.root)
        hint = "" if include_good else "; pass include_good (--include-good) to draw defect-free ones"
        raise InputError(f"{what}: no {'samples' if include_good else 'defective samples'} to draw{hint}")
    position = {sample.id: i for i, sample in enumerate(folder)}
    return sorted(chosen, key=lambda s: (order[s.object], s.is_good, s.defect_type or "", position[s.id]))


def _round_robin(groups: Sequence[list[Sample]], limit: int) -> list[Sample]:
    chosen: list[Sample] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(g) for g in groups):
        for group in groups:
            if depth < len(group) and len(chosen) < limit:
                chosen.append(group[depth])
        depth += 1
    return chosen


def overlay_file_name(sample: Sample) -> str:
    """The overlay PNG's file name of a sample: `<object>__<name>.png`."""
    return f"{safe_name(sample.object)}__{safe_name(sample.name)}.png"


def _side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    h = left.shape[0]
    spacer = np.full((h, gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, spacer, right], axis=1)


def write_overlays(folder: DSFolder | Path, out_dir: Path, limit: int = 24, object_name: str | None = None,
                   include_good: bool = False) -> ShowResult:
    """Draw up to `limit` samples (defective first, every object and defect type) into `out_dir`.

    Each sample gets `<object>__<name>.png`: the image beside its overlay; `contact_sheet.png` shows
    all of them as thumbnails captioned with the sample id, with a class-colour legend per object.
    Overlays an earlier run listed in `show.json` are removed first, so the folder shows one run;
    other files in `out_dir` are left alone.
    """
    if not isinstance(folder, DSFolder):
        folder = DSFolder.open(Path(folder))
    out_dir = Path(out_dir)
    if out_dir.resolve() == folder.root.resolve():
        raise InputError(f"{out_dir}: is the DS folder itself; choose another folder for the overlays")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose a folder for the overlays")
    samples = select_samples(folder, limit, object_name, include_good)
    _remove_previous_overlays(out_dir)
    written: list[Path] = []
    thumbs: list[np.ndarray] = []
    for sample in track(samples, "drawing overlays"):
        mask = folder.load_checked_mask(sample)
        image = folder.load_image(sample)
        colors = class_colors(len(folder.classes(sample.object)))
        panel_image, panel_mask = shrink(image, mask, PANEL_MAX_SIDE)
        drawn = overlay(panel_image, panel_mask, colors)
        path = out_dir / overlay_file_name(sample)
        save_png_atomic(_side_by_side(panel_image, drawn), path, compress_level=6)
        written.append(path)
        thumb_image, thumb_mask = shrink(image, mask, THUMB_MAX_SIDE)
        thumbs.append(overlay(thumb_image, thumb_mask, colors))
    sheet = out_dir / CONTACT_SHEET
    write_contact_sheet(thumbs, [s.id for s in samples],
                        {name: folder.objects[name] for name in dict.fromkeys(s.object for s in samples)}, sheet)
    write_json_atomic(out_dir / MANIFEST, {"overlays": [p.name for p in written], "contact_sheet": sheet.name})
    return ShowResult(overlays=written, contact_sheet=sheet, samples=samples)


def _remove_previous_overlays(out_dir: Path) -> None:
    """Delete the overlays listed in a previous run's manifest (plain names inside `out_dir` only)."""
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        return
    listed = read_json(manifest)
    names = listed.get("overlays", []) if isinstance(listed, dict) else []
    for name in names:
        if isinstance(name, str) and name == Path(name).name and name.endswith(".png"):
            (out_dir / name).unlink(missing_ok=True)


def _columns(n: int) -> int:
    """Grid columns for `n` thumbnails: 4-6 (10 for many), choosing the count that leaves fewest empty cells."""
    if n <= 4:
        return n
    options = (6, 5, 4) if n <= 36 else (10, 9, 8)
    return min(options, key=lambda c: (math.ceil(n / c) * c - n, -c))


def _legend_handles(class_map: ClassMap) -> tuple[list, list[str]]:
    from matplotlib.patches import Patch

    colors = class_colors(len(class_map))
    handles = [Patch(facecolor=colors[i] / 255.0, edgecolor="#333333", linewidth=0.5) for i in range(1, len(class_map))]
    return handles, list(class_map.defects)


def write_contact_sheet(thumbs: Sequence[np.ndarray], captions: Sequence[str], legend: dict[str, ClassMap],
                        path: Path, columns: int | None = None) -> Path:
    """A grid of thumbnails captioned below the image, then a class-colour legend per object (matplotlib, Agg)."""
    from matplotlib.figure import Figure

    n = len(thumbs)
    if n == 0:
        raise InputError(f"{path}: no thumbnails to put on a contact sheet")
    cols = columns or _columns(n)
    rows = math.ceil(n / cols)
    cell_px = THUMB_MAX_SIDE if n <= 36 else max(96, int(THUMB_MAX_SIDE * math.sqrt(36 / n)))
    cell_w = cell_px / SHEET_DPI
    cell_h = cell_w + 0.28  # room for the caption
    fig_w = max(cols * cell_w, 4.0)
    longest = max((len(name) for cm in legend.values() for name in cm.defects), default=0)
    legend_ncol = 2 if longest <= 14 else 1  # class-name columns inside one object's legend
    slot_w = 0.3 + legend_ncol * (0.35 + 0.055 * min(longest, 28))  # inches one object's legend needs
    legend_cols = max(1, min(len(legend), int(fig_w / slot_w)))
    legend_rows = math.ceil(len(legend) / legend_cols) if legend else 0
    biggest = max((len(cm) - 1 for cm in legend.values()), default=0)
    legend_h = (0.35 + 0.17 * math.ceil(biggest / legend_ncol)) if legend else 0.0
    fig_h = rows * cell_h + legend_rows * legend_h + 0.15
    fig = Figure(figsize=(fig_w, fig_h), dpi=SHEET_DPI, facecolor="white")
    top = 1.0 - 0.05 / fig_h
    grid_bottom = 1.0 - (rows * cell_h + 0.05) / fig_h
    grid = fig.add_gridspec(rows, cols, left=0.005, right=0.995, top=top, bottom=grid_bottom, wspace=0.04, hspace=0.0)
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
        lgrid = fig.add_gridspec(legend_rows, legend_cols, left=0.01, right=0.99, top=grid_bottom - 0.02 / fig_h,
                                 bottom=0.05 / fig_h, wspace=0.05, hspace=0.1)
        for i, (object_name, class_map) in enumerate(legend.items()):
            ax = fig.add_subplot(lgrid[i // legend_cols, i % legend_cols])
            ax.axis("off")
            handles, labels = _legend_handles(class_map)
            if handles:
                ax.legend(handles, labels, title=object_name, loc="upper left", ncol=legend_ncol, fontsize=7.5,
                          title_fontproperties={"weight": "bold", "size": 8}, frameon=False, handlelength=1.2,
                          handleheight=1.0, columnspacing=1.0, borderaxespad=0.1, alignment="left")
    _save_figure_png(fig, path, SHEET_MAX_BYTES)
    return path


def _save_figure_png(fig, path: Path, max_bytes: int) -> None:
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
