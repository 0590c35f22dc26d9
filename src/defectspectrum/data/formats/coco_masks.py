"""What every COCO-based reader shares: checked image entries (sizes, file names) and COCO
segmentations (polygons, RLE) rasterised into binary and class-index masks.

Rasterising uses pycocotools, so pixels match what COCO tools draw. Accepted `segmentation`s:

- polygons: a list of flat `[x1, y1, x2, y2, ...]` lists (several parts are merged); parts with
  fewer than 3 points cover no area and are ignored;
- uncompressed RLE: `{"size": [h, w], "counts": [int, ...]}` (column-major, as COCO);
- compressed RLE: `{"size": [h, w], "counts": "<string>"}` (str or bytes).

An annotation with no segmentation (missing, `null`, `[]` or `{}`: a bounding box only) has no
pixel shape: `annotation_to_binary` returns None and `rasterize_annotations` skips it.

Overlap rule of `rasterize_annotations`: annotations are painted largest area first (area = the
rasterised pixel count, not the file's `area` field), so a smaller annotation lying on a larger
one stays visible: where two overlap, the smaller one's class wins. Equal areas are painted in
ascending annotation `id` (the list position where an id is missing), so the higher id wins.

Hostile files are refused before anything is rasterised (FormatError naming the file and the
annotation): a mask size must be positive integers of at most `io.max_pixels()` pixels (`--max-pixels`); polygon
coordinates must be finite numbers at most `POLYGON_MARGIN` image sizes outside the image (so
`-4 * width <= x <= 5 * width`), and one annotation's polygon outline (the boundary pycocotools
walks, whose memory grows with it) at most `outline_limit(h, w)` pixels long; RLE sizes must match
the image and RLE runs must be non-negative and cover it exactly. Shapes are drawn run by run (time
grows with the shapes, not with their number times the image), and an image's shapes together may
take at most `MAX_PAINT_WORK` times its pixel count to draw (shapes that do not overlap always can).
The file's `bbox`, `area` and `iscrowd` fields are never used, so whatever they hold cannot break a
conversion.

`ImageLocator` finds the file an image entry's `file_name` names, only inside a given root (a
`file_name` that is absolute, or climbs out with `..` or a symbolic link, is refused), so a
crafted annotation file cannot make a conversion copy files from elsewhere.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from defectspectrum.errors import FormatError
from defectspectrum.io import max_pixels
from defectspectrum.paths import Containment

# Largest mask a COCO annotation may be rasterised at: 16384 x 16384. Rasterising costs about three
# bytes a pixel (0.8 GB here), and pycocotools' RLE positions are 32-bit. The lead may unify this
# with the global image pixel limit of defectspectrum.io.
POLYGON_MARGIN = 4  # polygon points may lie this many image widths/heights outside the image
MAX_OUTLINE = 20_000_000  # pixels of polygon outline per annotation, whatever the image size (~1.6 GB in pycocotools)
_RLE_CHARS_PER_RUN = 8  # a compressed RLE run of a 2**32-pixel mask takes at most 7 characters
_DRIVE = re.compile(r"^[A-Za-z]:")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def short(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters: file contents quoted in one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def has_segmentation(annotation: Mapping[str, Any]) -> bool:
    """True where the annotation carries a pixel shape (polygons or RLE), not just a bounding box."""
    segmentation = annotation.get("segmentation")
    return bool(segmentation)


def _label(annotation: Mapping[str, Any], where: str) -> str:
    ann_id = annotation.get("id", "?")
    return f"{where}: annotation {ann_id if _is_int(ann_id) or ann_id == '?' else short(ann_id)}"


# -- image entries -------------------------------------------------------------------------------


def check_size(height: Any, width: Any, where: str) -> tuple[int, int]:
    """(height, width) when both are positive integers of at most `io.max_pixels()` pixels (the one
    pixel limit, `--max-pixels`), else FormatError."""
    if not (_is_int(height) and _is_int(width) and height > 0 and width > 0):
        raise FormatError(f"{where}: size {short(width, 30)}x{short(height, 30)} (width x height) must be positive "
                          "integers; fix the image entry's width/height")
    limit = max_pixels()
    if height * width > limit:
        raise FormatError(f"{where}: size {short(width, 30)}x{short(height, 30)} is above the limit of {limit} pixels "
                          f"a mask is drawn at; fix the image entry's width/height, or if it is genuine pass "
                          f"--max-pixels {height * width}")
    return height, width


def image_entry_size(entry: Mapping[str, Any], where: str) -> tuple[int, int] | None:
    """The (height, width) an image entry declares, checked by `check_size`; None where it declares
    neither (the image file's own size is used then)."""
    height, width = entry.get("height"), entry.get("width")
    if height is None and width is None:
        return None
    return check_size(height, width, where)


class ImageLocator:
    """Finds the image file an entry's `file_name` names, inside `root` only.

    A relative `file_name` is looked up in the given folders in order (each should lie inside
    `root`); a candidate that leaves `root` (through `..` or a symbolic link) is never read. An
    absolute `file_name` is refused unless `absolute_ok` (then it must lie inside `root`, too).
    `hint` ends the error messages (how the user can point at the images instead).
    """

    def __init__(self, root: Path, *, absolute_ok: bool = False, hint: str = "") -> None:
        self.root = Path(os.path.abspath(root))
        self.absolute_ok = absolute_ok
        self.hint = hint
        self._containment = Containment(self.root)

    def _inside(self, candidate: Path) -> Path | None:
        """`candidate` with `..` resolved, where it stays inside the root (symbolic links followed)."""
        normal = Path(os.path.normpath(os.path.abspath(candidate)))
        try:
            relative = normal.relative_to(self.root)
        except ValueError:
            return None
        if relative.parts and not self._containment.inside(PurePosixPath(*relative.parts)):
            return None
        return normal

    def find(self, file_name: Any, folders: Sequence[Path], where: str) -> Path:
        """The file `file_name` names, or FormatError naming `where`."""
        if not isinstance(file_name, str) or not file_name.strip() or "\x00" in file_name:
            raise FormatError(f"{where}: file_name {short(file_name)} must be a non-empty file name; "
                              "fix the image entry")
        absolute = os.path.isabs(file_name) or bool(_DRIVE.match(file_name))
        if absolute and not self.absolute_ok:
            raise FormatError(f"{where}: file_name {short(file_name)} is an absolute path, which is not read; make it "
                              f"relative to the images' folder{self.hint}")
        candidates = [Path(file_name)] if absolute else [Path(folder) / file_name for folder in folders]
        looked: list[Path] = []
        escaped = False
        for candidate in candidates:
            inside = self._inside(candidate)
            if inside is None:
                escaped = True
                continue
            try:
                if inside.is_file():
                    return inside
            except OSError as exc:  # a name too long for the file system, ...
                raise FormatError(f"{where}: file_name {short(file_name)} cannot be looked up ({exc.strerror}); "
                                  "fix the image entry") from exc
            looked.append(inside)
        if escaped:
            raise FormatError(f"{where}: file_name {short(file_name)} leads outside {self.root} (through '..', an "
                              "absolute path or a symbolic link), which is not read; keep the images inside it"
                              f"{self.hint}")
        listed = " or ".join(str(path) for path in looked[:4]) + (" ..." if len(looked) > 4 else "")
        raise FormatError(f"{where}: file_name {short(file_name)} not found at {listed}; put the image there or fix "
                          f"its file_name{self.hint}")


# -- segmentations -----------------------------------------------------------------------------------


def outline_limit(height: int, width: int) -> int:
    """The longest polygon outline (pixels, summed over an annotation's parts) drawn at this size: an
    outline along pixel edges, holes joined in by cuts there and back, walks each of the about
    2 x h x w pixel edges at most twice; plus the frame of the allowed margin."""
    return min(MAX_OUTLINE, 4 * height * width + 4 * (2 * POLYGON_MARGIN + 1) * max(height, width))


def _decode_rle_string(counts: str | bytes, label: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (the format of pycocotools' rleFrString)."""
    text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
    runs: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise FormatError(f"{label}: compressed RLE counts end in the middle of a number; "
                                  "re-export the annotation")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise FormatError(f"{label}: compressed RLE counts hold an invalid character {text[position]!r}; "
                                  "re-export the annotation")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _rle_runs(segmentation: Mapping[str, Any], height: int, width: int, label: str) -> list[int]:
    size = segmentation.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) for v in size)):
        raise FormatError(f"{label}: RLE 'size' must be [height, width], found {short(size)}; fix the annotation")
    if tuple(size) != (height, width):
        raise FormatError(f"{label}: RLE size {short(size[1], 30)}x{short(size[0], 30)} (WxH) differs from the "
                          f"image's {width}x{height}; fix the annotation or the image entry's width/height")
    counts = segmentation.get("counts")
    if isinstance(counts, (str, bytes)):
        if len(counts) > _RLE_CHARS_PER_RUN * (height * width + 2):
            raise FormatError(f"{label}: compressed RLE counts are {len(counts)} characters long, more than a "
                              f"{width}x{height} mask can need; re-export the annotation")
        runs = _decode_rle_string(counts, label)
    elif isinstance(counts, list) and all(_is_int(v) for v in counts):
        runs = counts
    else:
        raise FormatError(f"{label}: RLE 'counts' must be a string or a list of integers; fix the annotation")
    if any(run < 0 for run in runs):
        raise FormatError(f"{label}: an RLE run is negative; re-export the annotation")
    covered = sum(runs)
    if covered != height * width:
        shown = covered if covered < 10**15 else "too many"
        raise FormatError(f"{label}: RLE runs cover {shown} pixels, not {height}x{width}={height * width}; "
                          "re-export the annotation")
    return runs


def _polygons(segmentation: list[Any], height: int, width: int, label: str) -> list[list[float]]:
    parts = []
    outline = 0.0
    for part in segmentation:
        if not isinstance(part, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in part):
            raise FormatError(f"{label}: a polygon must be a flat list of numbers [x1, y1, x2, y2, ...]; "
                              "fix the annotation")
        if len(part) % 2:
            raise FormatError(f"{label}: a polygon has an odd number ({len(part)}) of coordinates; fix the annotation")
        if len(part) < 6:  # fewer than 3 points cover no area (and 4 numbers would be read as a box)
            continue
        try:
            points = np.asarray(part, dtype=np.float64).reshape(-1, 2)
        except OverflowError:
            points = np.array([[math.inf, math.inf]])
        if not np.isfinite(points).all():
            raise FormatError(f"{label}: a polygon coordinate is not a finite number (NaN, Infinity or too large); "
                              "fix the annotation")
        low = -POLYGON_MARGIN * np.array([width, height], dtype=np.float64)
        high = (POLYGON_MARGIN + 1) * np.array([width, height], dtype=np.float64)
        outside = ((points < low) | (points > high)).any(axis=1)
        if outside.any():
            x, y = points[int(np.argmax(outside))]
            raise FormatError(f"{label}: polygon point ({x:.6g}, {y:.6g}) lies more than {POLYGON_MARGIN} image sizes "
                              f"outside the {width}x{height} image; fix the annotation or the image entry's "
                              "width/height")
        outline += float(np.abs(np.diff(points, axis=0, append=points[:1])).max(axis=1).sum())
        parts.append(points.ravel().tolist())
    limit = outline_limit(height, width)
    if outline > limit:
        raise FormatError(f"{label}: the polygon outline is {outline:.0f} pixels long, more than a {width}x{height} "
                          f"image allows ({limit}); fix the annotation")
    return parts


def annotation_to_rle(annotation: Mapping[str, Any], height: int, width: int, *,
                      where: str = "COCO annotations") -> dict[str, Any] | None:
    """The annotation's shape as one pycocotools RLE at (height, width), checked as the module says;
    None for a box-only annotation."""
    label = _label(annotation, where)
    check_size(height, width, label)
    segmentation = annotation.get("segmentation")
    if not segmentation:
        return None
    if isinstance(segmentation, list):
        parts = _polygons(segmentation, height, width, label)
        if not parts:
            return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
    if isinstance(segmentation, dict):
        runs = _rle_runs(segmentation, height, width, label)
        return mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    raise FormatError(f"{label}: 'segmentation' must be a list of polygons or an RLE object; fix the annotation")


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """A pycocotools RLE as a bool (height, width) array."""
    with warnings.catch_warnings():  # pycocotools' decode trips a NumPy 2 copy-keyword DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).view(bool)  # 0/1 bytes: a bool view, no copy


def annotation_to_binary(annotation: Mapping[str, Any], height: int, width: int, *,
                         where: str = "COCO annotations") -> np.ndarray | None:
    """The annotation's shape as a bool (height, width) array; None for a box-only annotation.

    `where` names the annotation file in errors (FormatError for malformed or hostile segmentations).
    """
    rle = annotation_to_rle(annotation, height, width, where=where)
    return None if rle is None else decode_rle(rle)


def rasterize_annotations(annotations: Iterable[Mapping[str, Any]], height: int, width: int,
                          category_to_index: Mapping[int, int], *, where: str = "COCO annotations") -> np.ndarray:
    """All annotations of one image as one uint8 (height, width) class-index mask.

    `category_to_index` maps COCO category ids to class indices; an annotation of another
    category is a FormatError naming `where`. Box-only annotations are skipped. Overlaps follow
    the module's rule: largest area painted first, so the smaller annotation wins; equal areas
    by ascending id, so the higher id wins. Every annotation is checked before any is drawn, and
    shapes are kept as RLE until painted run by run (memory: the mask and one shape's span), so the
    time grows with the shapes, not with their number times the image size; an image whose shapes
    would take more than MAX_PAINT_WORK times its pixel count to draw is a FormatError.
    """
    check_size(height, width, where)
    shapes: list[tuple[int, int, int, dict[str, Any], int]] = []  # (-area, id, position, rle, class)
    budget = MAX_PAINT_WORK * height * width
    for position, annotation in enumerate(annotations):
        category = annotation.get("category_id")
        if not isinstance(category, int) or isinstance(category, bool) or category not in category_to_index:
            raise FormatError(f"{_label(annotation, where)}: category_id {short(category)} is not among the "
                              f"categories {sorted(category_to_index)}; fix the annotation or add the category")
        rle = annotation_to_rle(annotation, height, width, where=where)
        if rle is None:
            continue
        ann_id = annotation.get("id")
        order = ann_id if isinstance(ann_id, int) and not isinstance(ann_id, bool) else position
        area = int(mask_utils.area(rle))
        budget -= _paint(None, rle, 0, area)
        if budget < 0:
            raise FormatError(f"{where}: its annotations take more than {MAX_PAINT_WORK} times the image's "
                              f"{width}x{height} pixels to draw (annotation {position + 1} reached that); "
                              "fix or thin out the annotations")
        shapes.append((-area, order, position, rle, int(category_to_index[category])))
    mask = np.zeros((height, width), dtype=np.uint8, order="F")
    flat = mask.reshape(-1, order="F")  # a view: RLE runs are column-major
    for area, _, _, rle, class_index in sorted(shapes, key=lambda item: item[:3]):
        _paint(flat, rle, class_index, -area)
    return np.ascontiguousarray(mask)


# An image's annotations may take this many times its pixel count to draw (in pixels of numpy work; a
# run drawn by a Python loop counts as RUN_COST pixels). Shapes that do not overlap (one mask's regions,
# as every export holds) take at most RUN_COST + 1 times, whatever they are; a hostile file of many
# large or overlapping shapes is refused before anything is drawn.
RUN_COST = 64
MAX_PAINT_WORK = 2 * RUN_COST


def _paint(flat: np.ndarray | None, rle: dict[str, Any], value: int, area: int) -> int:
    """Set the pixels of `rle` in `flat` (a column-major view of the mask) to `value`, run by run or
    over the span from its first to its last pixel, whichever is cheaper: time grows with the shape,
    never with the whole image as a full decode does. Returns that work (`flat` None: nothing drawn)."""
    if area == 0:
        return 1
    counts = rle["counts"]
    runs = np.asarray(_decode_rle_string(counts, "RLE") if isinstance(counts, (str, bytes)) else counts,
                      dtype=np.int64)
    ends = np.cumsum(runs)
    starts, stops = (ends - runs)[1::2], ends[1::2]
    keep = stops > starts
    starts, stops = starts[keep], stops[keep]
    low, high = int(starts[0]), int(stops[-1])
    by_runs = RUN_COST * len(starts) + area // RUN_COST
    if by_runs <= high - low:
        if flat is not None:
            for start, stop in zip(starts.tolist(), stops.tolist()):
                flat[start:stop] = value
        return by_runs
    if flat is not None:
        edges = np.zeros(high - low + 1, dtype=np.int8)
        edges[starts - low] += 1
        edges[stops - low] -= 1
        flat[low:high][np.cumsum(edges[:-1], dtype=np.int8).view(bool)] = value
    return high - low
