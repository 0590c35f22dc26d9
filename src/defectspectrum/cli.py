"""The `defectspectrum` command line: one typer sub-app a stage, mounted here.

Each stage's commands live beside its library (`data/cli.py`, later `seg/cli.py`, ...); they are
thin (parse, call, print) and turn the toolkit's errors into one line on stderr and exit code 2.
"""

from __future__ import annotations

import signal
from typing import Any

import typer

from defectspectrum.cli_support import out
from defectspectrum.click.cli import click_app
from defectspectrum.data.cli import data_app
from defectspectrum.gen.cli import gen_app
from defectspectrum.qc.cli import qc_app
from defectspectrum.report.cli import report_command
from defectspectrum.seg.cli import seg_app

app = typer.Typer(
    name="defectspectrum",
    help="Industrial defect inspection data: convert, check, view, split, caption and export defect data sets; "
         "train and benchmark segmentation models on them; judge their masks with quality-control rules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(seg_app, name="seg")
app.add_typer(qc_app, name="qc")
app.add_typer(gen_app, name="gen")
app.add_typer(click_app, name="click")
app.command("report")(report_command)


def _version(value: bool) -> None:
    if value:
        from defectspectrum import __version__

        out.print(f"defectspectrum {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Industrial defect inspection data: convert, check, view, split, caption and export defect data sets;
    train and benchmark segmentation models on them; judge their masks with quality-control rules."""


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Console-script entry point. SIGTERM and SIGHUP end the command as Ctrl-C does, through the normal
    exit path: staging folders are removed and worker processes stopped instead of being left behind."""
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _exit_on_signal)
    app()


if __name__ == "__main__":
    main()
