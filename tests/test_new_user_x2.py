"""Regressions from trying every command as a new user would (issue 12, helper X2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.synth import write_ds_folder
from defectspectrum.io import MAX_PIXELS_ENV


def run_cli(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    return result.exit_code, result.output


@pytest.fixture
def small_ds(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    write_ds_folder(root, materials=["metal"], n_defective_per_type=1, n_good=1, size=(32, 32), seed=3)
    return root


@pytest.mark.parametrize("command", [
    ["data", "validate", "{ds}"],
    ["data", "stats", "{ds}"],
    ["data", "show", "{ds}", "{tmp}/overlays"],
    ["data", "caption", "{ds}"],
    ["data", "export", "{ds}", "{tmp}/export", "--to", "coco"],
    ["report", "{ds}", "--out", "{tmp}/report"],
])
def test_bad_pixel_limit_variable_is_one_error_not_one_per_image(small_ds: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 command: list[str]) -> None:
    """A bad $DEFECTSPECTRUM_MAX_PIXELS used to be counted against every image: validate listed an error
    per file, stats called every mask unreadable and the report was written with warnings (exit 0)."""
    monkeypatch.setenv(MAX_PIXELS_ENV, "abc")
    args = [part.format(ds=small_ds, tmp=tmp_path) for part in command]
    code, output = run_cli(args)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {MAX_PIXELS_ENV}='abc'"), output
    assert not (tmp_path / "overlays").exists() and not (tmp_path / "export").exists()
    assert not (tmp_path / "report").exists()


def test_report_takes_max_pixels(small_ds: Path, tmp_path: Path) -> None:
    """The report reads every image (validation, statistics, overlays) so it takes --max-pixels like them."""
    code, output = run_cli(["report", small_ds, "--out", tmp_path / "report", "--sections", "validation",
                            "--max-pixels", "100"])
    assert code == 0, output
    html = (tmp_path / "report" / "report.html").read_text()
    assert "too-large" in html and "above the limit of 100 pixels" in html
