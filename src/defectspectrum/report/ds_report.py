"""`defectspectrum report DS_DIR`: the registered sections of one DS folder, written as a report folder.

The report lives in a folder of its own (default `<DS_DIR>_report/report.html` beside the DS
folder), never inside the DS folder. The folder is built beside its target and renamed into
place, so a reader sees the old report or the new one, never half of one. An existing folder is
replaced only when it holds the `.defectspectrum-report` marker this writes; anything else is refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from defectspectrum.errors import InputError
from defectspectrum.report.sections import ReportContext, SectionProblem, build_report, get_sections

MARKER = ".defectspectrum-report"
HTML_SUFFIXES = (".html", ".htm")


@dataclass
class WrittenReport:
    """Where the report went, which sections it holds, and those that could not be drawn."""

    html: Path
    sections: list[str]
    problems: list[SectionProblem] = field(default_factory=list)


def default_out(ds: Path) -> Path:
    """`<DS_DIR>_report/report.html` beside the DS folder (as named: a symbolic link is not followed)."""
    root = Path(os.path.abspath(ds))
    if not root.name:
        raise InputError(f"{ds}: has no folder name to name its report after; pass --out")
    return root.parent / f"{root.name}_report" / "report.html"


def report_target(ds_root: Path, out: Path | None) -> tuple[Path, bool]:
    """The HTML path for `out` (a folder gets `report.html`) and whether its folder is an old report to replace.

    InputError when the folder is, or lies inside, the DS folder, holds the DS folder, or exists
    with other contents (no marker file).
    """
    html = default_out(ds_root) if out is None else Path(os.path.abspath(out))
    if html.is_dir() or (out is not None and not html.suffix):
        html = html / "report.html"
    if html.suffix.lower() not in HTML_SUFFIXES:
        raise InputError(f"{out}: a report is an .html file; pass e.g. --out {html.with_suffix('.html')}")
    folder = html.parent
    ds_root = Path(ds_root).resolve()
    resolved = folder.resolve()
    if resolved == ds_root or ds_root in resolved.parents:
        where = "is the DS folder" if resolved == ds_root else f"is inside the DS folder {ds_root}"
        raise InputError(f"{folder}: {where}; write the report beside it, e.g. --out {default_out(ds_root)}")
    if resolved in ds_root.parents:
        raise InputError(f"{folder}: holds the DS folder {ds_root}; choose a folder of its own for the report, "
                         f"e.g. --out {default_out(ds_root)}")
    if folder.is_symlink():
        raise InputError(f"{folder}: is a symbolic link; choose a plain folder for the report")
    if not folder.exists():
        return html, False
    if not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder; choose another --out")
    if (folder / MARKER).is_file():
        return html, True
    if any(folder.iterdir()):
        raise InputError(f"{folder}: exists, is not empty and is not a report folder (no {MARKER} file); "
                         "choose a new folder for --out or empty it yourself")
    return html, False


def write_ds_report(ds: Path, out: Path | None = None, sections: Sequence[str] | None = None, *,
                    validation: Path | None = None, stats: Path | None = None, limit: int | None = None,
                    title: str | None = None) -> WrittenReport:
    """Write the report of the DS folder `ds` with `sections` (all registered ones when None).

    `validation` / `stats` are JSON files of `data validate --json` / `data stats --json` to show
    instead of computing them again; `limit` is the number of overlays drawn (default: one per
    defect type of each object, at least 24).
    """
    from defectspectrum.data.dsfolder import DSFolder
    from defectspectrum.io import write_text_atomic
    from defectspectrum.report.data_sections import load_stats, load_validation
    from defectspectrum.staging import staged_folder

    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: draw at least 1 overlay")
    chosen = get_sections(sections)
    folder = DSFolder.open(Path(ds))
    html, replace = report_target(folder.root, out)
    loaded_validation = load_validation(validation) if validation is not None else None
    loaded_stats = load_stats(stats) if stats is not None else None
    with staged_folder(html.parent, may_replace=lambda folder: replace and (folder / MARKER).is_file()) as staging:
        write_text_atomic(staging / MARKER, "Written by `defectspectrum report`; the next report into this folder "
                                            "replaces it.\n")
        context = ReportContext(folder, html=staging / html.name, limit=limit, validation=loaded_validation,
                                stats=loaded_stats)
        report, problems = build_report(context, chosen, title or f"{folder.name}: data report",
                                        subtitle=f"DS folder {folder.root.resolve()}")
        report.write(context.html)
    return WrittenReport(html=html, sections=[s.name for s in chosen], problems=problems)
