"""The command line's own surface: version, the format list, help with examples on every command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from defectspectrum import __version__
from defectspectrum.cli import app
from defectspectrum.data.formats import reader_names

DATA_COMMANDS = ["convert", "formats", "export", "stats", "validate", "show", "clean", "split", "caption", "synth"]


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"defectspectrum {__version__}"


def test_formats_lists_every_reader_in_detection_order() -> None:
    result = CliRunner().invoke(app, ["data", "formats"], terminal_width=200)
    assert result.exit_code == 0
    readers = result.output.split("writers (")[0]
    listed = [line.split()[0] for line in readers.splitlines()[2:] if line.strip() and not line.startswith(" ")]
    assert listed == reader_names()
    assert {"ds", "ds-release", "mvtec", "vision", "dagm", "cotton", "magnetic-tile", "sd900", "mmseg", "coco",
            "folder"} == set(listed)


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(app, ["data", command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Example" in result.output and f"defectspectrum data {command}" in result.output


def test_unknown_format_is_one_line_with_the_choices(tmp_path) -> None:
    result = CliRunner().invoke(app, ["data", "convert", "--from", "pascal", str(tmp_path), str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: unknown format 'pascal'; choose one of: auto, {', '.join(reader_names())}"]


_KILLED_CONVERT = """
import os, signal, sys
from defectspectrum import cli
from defectspectrum.data.formats.folder import FolderReader

load_mask = FolderReader.load_mask
def killing_load_mask(self, sample, size):  # the first sample sends SIGTERM to the command's process
    if sample.name == "img00":
        os.kill(int(os.environ["CONVERT_PID"]), signal.SIGTERM)
    return load_mask(self, sample, size)

FolderReader.load_mask = killing_load_mask
os.environ["CONVERT_PID"] = str(os.getpid())
sys.argv = ["defectspectrum", "data", "convert", "--from", "folder", sys.argv[1], sys.argv[2], "-j", sys.argv[3]]
cli.main()
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_mid_conversion_leaves_no_staging_folder_and_no_workers(tmp_path, workers: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    source = tmp_path / "src"
    (source / "images").mkdir(parents=True)
    for number in range(40):
        Image.fromarray(np.full((16, 16, 3), number, np.uint8)).save(source / "images" / f"img{number:02d}.png")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-c", _KILLED_CONVERT, str(source), str(out), workers],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:  # returns only when every process holding the pipes has ended: orphaned workers time out
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("worker processes outlived the killed command")
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no out, no .out.*.partial
