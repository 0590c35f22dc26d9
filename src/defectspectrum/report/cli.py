"""`defectspectrum report DS_DIR`: the typer command (thin: parse, call `write_ds_report`, print)."""

from __future__ import annotations

from pathlib import Path

import typer

from defectspectrum.cli_support import err, friendly, max_pixels_option, out, parse_csv
from defectspectrum.cli_support import markup_text as escape


@friendly
def report_command(
    ds: Path = typer.Argument(..., help="A DS folder."),
    out_path: Path | None = typer.Option(
        None, "--out", "-o",
        help="The report's HTML file (or a folder for report.html); default DS_DIR_report/report.html beside "
             "the DS folder. Its folder must be new, empty or an earlier report."),
    sections: str | None = typer.Option(
        None, "--sections", "-s",
        help="Comma-separated sections to include (default: all, in page order): overview, validation, stats, "
             "splits, overlays, and those later stages add."),
    validation: Path | None = typer.Option(
        None, "--validation", help="Show this `data validate --json` file instead of validating again."),
    stats: Path | None = typer.Option(
        None, "--stats", help="Show this `data stats --json` file instead of computing the statistics again."),
    limit: int | None = typer.Option(
        None, "--limit", "-n", min=1,
        help="Overlays to draw (default: one per defect type of each object, at least 24)."),
    max_pixels: int | None = max_pixels_option(),
) -> None:
    """Write an HTML report of a DS folder: overview, validation, statistics, splits and mask overlays.

    The report gets a folder of its own (default DS_DIR_report/), replaced on the next run; other folders are refused.

    Examples:

      defectspectrum report ds_mvtec

      defectspectrum report ds_mvtec --sections overview,stats --stats stats.json --out mvtec/index.html
    """
    from defectspectrum.io import pixel_limit
    from defectspectrum.report.ds_report import write_ds_report

    with pixel_limit(max_pixels):
        written = write_ds_report(ds, out_path, parse_csv(sections), validation=validation, stats=stats, limit=limit)
    for problem in written.problems:
        err.print(f"[yellow]warning:[/] section {escape(problem.name)}: {escape(problem.message)}",
                  highlight=False, soft_wrap=True)
    out.print(f"[green]wrote[/] {escape(str(written.html))} ({escape(', '.join(written.sections))})",
              highlight=False, soft_wrap=True)
