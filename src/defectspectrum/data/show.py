"""`data show`: pick samples of a DS folder and draw their mask overlays and a contact sheet (see `draw`)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.sample import Sample
from defectspectrum.draw import THUMB_MAX_SIDE, class_colors, overlay, shrink, side_by_side, write_contact_sheet
from defectspectrum.errors import InputError
from defectspectrum.io import read_json, save_png_atomic, write_json_atomic
from defectspectrum.paths import safe_name
from defectspectrum.progress import track

CONTACT_SHEET = "contact_sheet.png"
MANIFEST = "show.json"  # the files the last `write_overlays` wrote into its folder
PANEL_MAX_SIDE = 768  # longest side of each panel of a per-sample overlay file


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


def write_overlays(folder: DSFolder | Path, out_dir: Path, limit: int = 24, object_name: str | None = None,
                   include_good: bool = False) -> ShowResult:
    """Draw up to `limit` samples (defective first, every object and defect type) into `out_dir`.

    Each sample gets `<object>__<name>.png`: the image beside its overlay; `contact_sheet.png` shows
    all of them as thumbnails captioned with the sample id, with a class-colour legend per object.
    Overlays an earlier run listed in `show.json` are removed first, so the folder shows one run;
    other files in `out_dir` are left alone, and one that a file of this run would replace is an
    InputError before anything is drawn.
    """
    if not isinstance(folder, DSFolder):
        folder = DSFolder.open(Path(folder))
    out_dir = Path(out_dir)
    inside, root = out_dir.resolve(), folder.root.resolve()
    if inside == root or root in inside.parents:
        raise InputError(f"{out_dir}: is {'the DS folder itself' if inside == root else 'inside the DS folder'}; "
                         "choose a folder outside it for the overlays")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose a folder for the overlays")
    samples = select_samples(folder, limit, object_name, include_good)
    previous = _previous_files(out_dir)
    for name in [*(overlay_file_name(s) for s in samples), CONTACT_SHEET, MANIFEST]:
        if name not in previous and os.path.lexists(out_dir / name):
            raise InputError(f"{out_dir / name}: exists and was not written by `data show`; move it away or choose "
                             "another folder for the overlays")
    for name in previous - {MANIFEST}:
        (out_dir / name).unlink(missing_ok=True)
    written: list[Path] = []
    thumbs: list[np.ndarray] = []
    for sample in track(samples, "drawing overlays"):
        mask = folder.load_checked_mask(sample)
        image = folder.load_image(sample)
        colors = class_colors(len(folder.classes(sample.object)))
        panel_image, panel_mask = shrink(image, mask, PANEL_MAX_SIDE)
        drawn = overlay(panel_image, panel_mask, colors)
        path = out_dir / overlay_file_name(sample)
        save_png_atomic(side_by_side(panel_image, drawn), path, compress_level=6)
        written.append(path)
        thumb_image, thumb_mask = shrink(image, mask, THUMB_MAX_SIDE)
        thumbs.append(overlay(thumb_image, thumb_mask, colors))
    sheet = out_dir / CONTACT_SHEET
    write_contact_sheet(thumbs, [s.id for s in samples],
                        {name: folder.objects[name].names for name in dict.fromkeys(s.object for s in samples)}, sheet)
    write_json_atomic(out_dir / MANIFEST, {"overlays": [p.name for p in written], "contact_sheet": sheet.name})
    return ShowResult(overlays=written, contact_sheet=sheet, samples=samples)


def _previous_files(out_dir: Path) -> set[str]:
    """The files a previous run listed in its manifest (plain PNG names inside `out_dir` only), and the
    manifest itself: what this run may replace."""
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        return set()
    listed = read_json(manifest)
    listed = listed if isinstance(listed, dict) else {}
    overlays = listed.get("overlays")
    names = [*(overlays if isinstance(overlays, list) else []), listed.get("contact_sheet")]
    return {MANIFEST} | {name for name in names
                         if isinstance(name, str) and name == Path(name).name and name.endswith(".png")}


