"""The data layer's report sections, drawn from a DS folder alone: overview, validation, stats, splits, overlays.

Validation, statistics and overlays are computed when the context does not already hold them;
`load_validation` and `load_stats` read the JSON files `data validate --json` and
`data stats --json` write, checked so that a wrong file is one clear error, not a crash mid-page.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defectspectrum.data.classes import MAX_CLASSES
from defectspectrum.errors import InputError
from defectspectrum.report.html import Report
from defectspectrum.report.sections import ReportContext, section

if TYPE_CHECKING:
    from defectspectrum.data.sample import Sample
    from defectspectrum.data.validate import ValidationReport

UNASSIGNED = "unassigned"  # the split key of samples without a split (as in `compute_stats`)
MIN_OVERLAYS = 24  # overlays drawn at least when no limit is given (as `data show`)
GALLERY_SIZE = 9  # captioned examples under the contact sheet
ISSUES_SHOWN = 10  # validation issues listed one by one
PLOT_MAX_CLASSES = 300  # more (object, class) rows than this are listed but not plotted


def _split_keys(counts: Counter[str] | dict[str, int]) -> list[str]:
    """The split names present in `counts`: train, val, test first, others after, `unassigned` last."""
    from defectspectrum.data.sample import SPLITS

    present = [key for key, n in counts.items() if n and key != UNASSIGNED]
    return sorted(present, key=lambda key: (SPLITS.index(key) if key in SPLITS else len(SPLITS), key))


def _stale_note(report: Report, what: str, counted: Any, folder_size: int, command: str) -> None:
    if isinstance(counted, int) and counted != folder_size:
        report.add_text(f"This {what} covers {counted:,} samples but the folder now has {folder_size:,}: "
                        f"re-run `{command}` for current figures.", kind="warn")


# -- overview -----------------------------------------------------------------------------------------------


@section("overview", "Overview")
def overview_section(context: ReportContext, report: Report) -> None:
    """Headline counts (objects, classes, samples, defect-free, splits, captions) and each object's classes."""
    folder = context.folder
    samples = list(folder)
    good = sum(1 for s in samples if s.is_good)
    splits = Counter(s.split or UNASSIGNED for s in samples)
    keys = _split_keys(splits)
    metrics: dict[str, Any] = {
        "objects": len(folder.objects),
        "defect classes": sum(len(cm.defects) for cm in folder.objects.values()),
        "samples": len(samples), "marked good": good,
    }
    if keys:
        metrics[" / ".join(keys)] = " / ".join(f"{splits[key]:,}" for key in keys)
    if splits[UNASSIGNED]:
        metrics["no split"] = splits[UNASSIGNED]
    synthetic = sum(1 for s in samples if s.synthetic)
    if synthetic:
        metrics["synthetic"] = synthetic
    metrics["captioned"] = sum(1 for s in samples if s.caption)
    report.add_metrics(metrics)
    report.add_text(f"DS folder `{folder.name}` at `{folder.root.resolve()}`. Marked good: the samples whose source "
                    "marks them defect-free (`defect_type` good); the statistics below count what the masks hold.")
    if not folder.objects:
        report.add_text("The folder has no objects yet.", kind="note")
        return
    per_object = Counter(s.object for s in samples)
    good_per_object = Counter(s.object for s in samples if s.is_good)
    report.add_table([(name, ", ".join(cm.defects) or None, per_object[name], good_per_object[name])
                      for name, cm in folder.objects.items()],
                     header=["object", "defect classes", "samples", "marked good"])


# -- validation -----------------------------------------------------------------------------------------------


def validation_from_json(data: Any, where: str) -> ValidationReport:
    """A `ValidationReport` rebuilt from the JSON of `data validate --json`, or InputError naming `where`."""
    from defectspectrum.data.validate import Issue, ValidationReport

    def bad(what: str) -> InputError:
        return InputError(f"{where}: not a validation report ({what}); write one with "
                          "`defectspectrum data validate DS --json FILE`")

    if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
        raise bad("no 'summary' mapping")
    summary, issues = data["summary"], data.get("issues")
    if not _is_count(summary.get("samples")):
        raise bad("'summary.samples' is not a count")
    if not isinstance(issues, list):
        raise bad("no 'issues' list")
    parsed = []
    for number, issue in enumerate(issues, 1):
        if not isinstance(issue, dict):
            raise bad(f"issue {number} is not a mapping")
        if not all(isinstance(issue.get(key), str) for key in ("level", "code", "message")):
            raise bad(f"issue {number} lacks a 'level', 'code' or 'message' string")
        if not all(issue.get(key) is None or isinstance(issue.get(key), str) for key in ("sample", "file", "other")):
            raise bad(f"issue {number}: 'sample', 'file' and 'other' must be strings or null")
        group = issue.get("group")
        if group is not None and not (isinstance(group, list) and all(isinstance(name, str) for name in group)):
            raise bad(f"issue {number}: 'group' must be a list of sample ids or absent")
        parsed.append(Issue(level=issue["level"], code=issue["code"], sample=issue.get("sample"),
                            file=issue.get("file"), message=issue["message"], other=issue.get("other"),
                            group=None if group is None else tuple(group)))
    distance = summary.get("hash_distance")
    return ValidationReport(root=str(data.get("root") or ""), samples=summary["samples"],
                            hash_distance=distance if _is_count(distance) else 0, issues=parsed)


def load_validation(path: Path) -> ValidationReport:
    """Read a `data validate --json` file (checked; see `validation_from_json`)."""
    from defectspectrum.io import read_json

    return validation_from_json(read_json(Path(path)), str(path))


@section("validation", "Validation")
def validation_section(context: ReportContext, report: Report) -> None:
    """The verdict, issue counts per code, and the first issues one by one."""
    if context.validation is None:
        from defectspectrum.data.validate import validate

        context.validation = validate(context.folder)
    validation = context.validation
    _stale_note(report, "validation", validation.samples, len(context.folder), "defectspectrum data validate")
    errors, warnings = validation.errors, validation.warnings
    counts = f"{validation.samples:,} samples checked: {len(errors)} error(s), {len(warnings)} warning(s)."
    if validation.ok and not warnings:
        report.add_text(f"OK. {counts}", kind="ok")
    elif validation.ok:
        report.add_text(f"OK with warnings. {counts}", kind="warn")
    else:
        report.add_text(f"FAILED. {counts}", kind="error")
    if not validation.issues:
        return
    levels = {i.code: i.level for i in validation.issues}
    report.add_table([(code, levels[code], n) for code, n in validation.counts().items()],
                     header=["issue", "level", "count"])
    first = sorted(validation.issues, key=lambda i: (i.level != "error", i.code, i.sample or ""))[:ISSUES_SHOWN]
    more = "" if len(first) == len(validation.issues) else \
        "; `defectspectrum data validate DS --json FILE` lists them all"
    report.add_table([(i.level, i.code, i.sample, i.message) for i in first],
                     header=["level", "issue", "sample", "message"],
                     caption=f"First {len(first)} of {len(validation.issues)} issues{more}")


# -- statistics -----------------------------------------------------------------------------------------------


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_stats_json(data: Any, where: str) -> dict[str, Any]:
    """`data` when it has the shape of `compute_stats(...).to_json()` (every field the report reads), else
    InputError naming `where`."""

    def bad(what: str) -> InputError:
        return InputError(f"{where}: not a statistics file ({what}); write one with "
                          "`defectspectrum data stats DS --json FILE`")

    if not isinstance(data, dict) or not isinstance(data.get("objects"), dict):
        raise bad("no 'objects' mapping")
    for name, obj in data["objects"].items():
        if not isinstance(obj, dict):
            raise bad(f"object {name!r} is not a mapping")
        for key in ("samples", "defective", "defect_free"):
            if not _is_count(obj.get(key)):
                raise bad(f"object {name!r}: {key!r} is not a count")
        splits = obj.get("splits")
        if not isinstance(splits, dict) or not all(_is_count(n) for n in splits.values()):
            raise bad(f"object {name!r}: 'splits' is not a mapping of counts")
        sizes = obj.get("image_sizes")
        if not isinstance(sizes, list) or not all(
                isinstance(s, dict) and _is_count(s.get("height")) and _is_count(s.get("width")) for s in sizes):
            raise bad(f"object {name!r}: 'image_sizes' is not a list of heights and widths")
        classes = obj.get("classes")
        if not isinstance(classes, list):
            raise bad(f"object {name!r}: 'classes' is not a list")
        for cls in classes:
            if not (isinstance(cls, dict) and _is_count(cls.get("index")) and isinstance(cls.get("name"), str)
                    and _is_count(cls.get("images")) and _is_count(cls.get("regions"))):
                raise bad(f"object {name!r}: a class lacks its index, name, images or regions")
            if not 0 < cls["index"] < MAX_CLASSES:
                raise bad(f"object {name!r}, class {cls['name']!r}: index {cls['index']} is not 1..{MAX_CLASSES - 1}")
            for key in ("area_px", "area_pct"):
                area = cls.get(key)
                if area is not None and not (isinstance(area, dict) and all(
                        _is_number(area.get(p)) for p in ("p5", "p25", "p50", "p75", "p95"))):
                    raise bad(f"object {name!r}, class {cls['name']!r}: {key!r} is not a set of finite percentiles")
    return data


def load_stats(path: Path) -> dict[str, Any]:
    """Read a `data stats --json` file (checked; see `check_stats_json`)."""
    from defectspectrum.io import read_json

    return check_stats_json(read_json(Path(path)), str(path))


def _size_text(sizes: Sequence[dict[str, int]]) -> str | None:
    if not sizes:
        return None
    common = f"{sizes[0]['height']}×{sizes[0]['width']}"
    return common if len(sizes) == 1 else f"{common} +{len(sizes) - 1} more"


@section("stats", "Statistics")
def stats_section(context: ReportContext, report: Report) -> None:
    """Samples per object and split, regions and areas per class, and the stats plot."""
    from defectspectrum.report.plots import stats_figure

    if context.stats is None:
        from defectspectrum.data.stats import compute_stats

        context.stats = compute_stats(context.folder).to_json()
    stats = context.stats
    _stale_note(report, "statistics file", stats.get("samples"), len(context.folder), "defectspectrum data stats")
    objects: dict[str, Any] = stats["objects"]
    if not objects:
        report.add_text("No objects, so no statistics.", kind="note")
        return
    unreadable = stats.get("unreadable") or []
    if unreadable:
        shown = ", ".join(map(str, unreadable[:5])) + (", ..." if len(unreadable) > 5 else "")
        report.add_text(f"{len(unreadable)} mask(s) could not be read and are left out of the counts ({shown}); "
                        "see Validation.", kind="warn")
    split_totals: Counter[str] = Counter()
    for obj in objects.values():
        split_totals.update(obj["splits"])
    columns = _split_keys(split_totals) + ([UNASSIGNED] if split_totals[UNASSIGNED] else [])
    report.add_table([(name, obj["samples"], obj["defective"], obj["defect_free"],
                       *(obj["splits"].get(key, 0) for key in columns), _size_text(obj["image_sizes"]))
                      for name, obj in objects.items()],
                     header=["object", "samples", "defective", "defect-free", *columns, "image size"],
                     caption="Defective: the mask has at least one defect pixel.")
    class_rows = []
    for name, obj in objects.items():
        for cls in obj["classes"]:
            px, pct = cls.get("area_px") or {}, cls.get("area_pct") or {}
            class_rows.append((name, cls["name"], cls["images"], cls["regions"], px.get("p50"), px.get("p95"),
                               pct.get("p50")))
    if not class_rows:
        report.add_text("No defect classes in the class maps.", kind="note")
        return
    report.add_table(class_rows, header=["object", "class", "images", "regions", "median area (px)",
                                         "p95 area (px)", "median area (% of image)"],
                     caption="Regions are 8-connected components of one class.")
    if len(class_rows) > PLOT_MAX_CLASSES:
        report.add_text(f"{len(class_rows):,} classes are too many to plot; the table lists them all.", kind="note")
        return
    report.add_figure(stats_figure(stats), "stats", "Left: images containing each class and its regions. Right: "
                                                    "region area percentiles; colours match the overlays.")


# -- splits -----------------------------------------------------------------------------------------------


@section("splits", "Splits")
def splits_section(context: ReportContext, report: Report) -> None:
    """Samples per split and object, and per (object, defect type)."""
    folder = context.folder
    samples = list(folder)
    totals = Counter(s.split or UNASSIGNED for s in samples)
    keys = _split_keys(totals)
    if not keys:
        report.add_text("No sample has a split yet; assign them with `defectspectrum data split DS`."
                        if samples else "The folder has no samples.", kind="note")
        return
    columns = keys + ([UNASSIGNED] if totals[UNASSIGNED] else [])
    if totals[UNASSIGNED]:
        report.add_text(f"{totals[UNASSIGNED]:,} of {len(samples):,} samples have no split yet.", kind="warn")
    by_object: dict[str, Counter[str]] = {name: Counter() for name in folder.objects}
    by_type: dict[tuple[str, str], Counter[str]] = {}
    for sample in samples:
        split = sample.split or UNASSIGNED
        by_object[sample.object][split] += 1
        by_type.setdefault((sample.object, sample.defect_type or "unknown"), Counter())[split] += 1
    report.add_table([(name, *(c[key] for key in columns), sum(c.values())) for name, c in by_object.items()]
                     + [("all", *(totals[key] for key in columns), len(samples))],
                     header=["object", *columns, "total"])
    report.add_table([(name, ", ".join(f"{dtype} " + "/".join(str(c[key]) for key in columns)
                                       for (obj, dtype), c in sorted(by_type.items()) if obj == name))
                      for name in folder.objects if by_object[name]],
                     header=["object", f"defect type {'/'.join(columns)}"], caption="Per defect type")


# -- overlays -----------------------------------------------------------------------------------------------


@section("overlays", "Overlays")
def overlays_section(context: ReportContext, report: Report) -> None:
    """A contact sheet of mask overlays and a gallery of captioned examples."""
    folder = context.folder
    defective = [s for s in folder if not s.is_good]
    types = {(s.object, s.defect_type) for s in defective}
    if context.overlays is None:
        if not defective:
            report.add_text("No defective samples to draw.", kind="note")
            return
        from defectspectrum.data.show import write_overlays

        limit = context.limit or max(MIN_OVERLAYS, len(types))
        context.overlays = write_overlays(folder, context.asset_dir("overlays"), limit=limit)
    shown = context.overlays
    drawn = {(s.object, s.defect_type) for s in shown.samples}
    coverage = ("every defect type of every object" if types <= drawn else
                f"{len(drawn & types)} of {len(types)} (object, defect type) groups; a larger limit draws more")
    report.add_text(f"{len(shown.overlays)} samples, {coverage}. Class colours are blended over the image and each "
                    "region is outlined; the legend lists each object's classes.")
    report.add_image(shown.contact_sheet, "Contact sheet: one thumbnail per sample, captioned with its id.")
    picks = gallery_picks(shown.samples, shown.overlays)
    captioned = any(sample.caption for sample, _ in picks)
    report.add_heading("Examples with captions" if captioned else "Examples", level=3)
    report.add_gallery((overlay, f"{sample.id}: {sample.caption}" if sample.caption else sample.id)
                       for sample, overlay in picks)


def gallery_picks(samples: Sequence[Sample], overlays: Sequence[Path],
                  size: int = GALLERY_SIZE) -> list[tuple[Sample, Path]]:
    """Up to `size` overlays, cycling over objects and preferring defect types not shown yet."""
    pairs = list(zip(samples, overlays))
    objects = list(dict.fromkeys(s.object for s, _ in pairs))
    picks: list[tuple[Sample, Path]] = []
    shown_types: set[str | None] = set()
    while len(picks) < min(size, len(pairs)):
        for name in objects:
            rest = [p for p in pairs if p[0].object == name and p not in picks]
            if not rest or len(picks) >= size:
                continue
            # a type no other picture shows yet, multi-class `combined` images first
            rest.sort(key=lambda p: (p[0].defect_type in shown_types, p[0].defect_type != "combined"))
            picks.append(rest[0])
            shown_types.add(rest[0][0].defect_type)
    return picks
