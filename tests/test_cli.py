"""The command line's own surface: version, the format list, help with examples on every command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from defectspectrum import __version__
from defectspectrum.cli import app
from defectspectrum.data.formats import reader_names

DATA_COMMANDS = ["convert", "formats", "export", "stats", "validate", "show", "split", "caption", "synth"]


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"defectspectrum {__version__}"


def test_formats_lists_every_reader() -> None:
    result = CliRunner().invoke(app, ["data", "formats"], terminal_width=200)
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.splitlines()[1:] if line and not line.startswith(" ")]
    assert listed == reader_names()
    assert {"ds", "ds-release", "mvtec", "vision", "dagm", "cotton", "magnetic-tile", "sd900", "mmseg", "coco",
            "folder"} == set(listed)


@pytest.mark.parametrize("command", [c for c in DATA_COMMANDS if c != "formats"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(app, ["data", command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Example" in result.output and f"defectspectrum data {command}" in result.output


def test_unknown_format_is_one_line_with_the_choices(tmp_path) -> None:
    result = CliRunner().invoke(app, ["data", "convert", "--from", "pascal", str(tmp_path), str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: unknown format 'pascal'; choose one of: auto, {', '.join(reader_names())}"]
