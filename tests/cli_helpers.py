"""Helpers the command-line tests share: run a command in-process, assert a one-line error, and a
tiny DS folder to run commands on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from typer.testing import CliRunner, Result

from defectspectrum.cli import app
from defectspectrum.data.dsfolder import DSFolder


def invoke(*args: str | Path, width: int = 100) -> Result:
    """Run `defectspectrum *args` in-process; a bug's exception is raised, not swallowed."""
    result = CliRunner().invoke(app, [str(a) for a in args], terminal_width=width)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def one_line_error(args: Sequence[str | Path], *fragments: str, width: int = 100) -> str:
    """Run the command; assert exit 2 and exactly one line on stderr, `error: ...` holding every fragment."""
    result = invoke(*args, width=width)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "error:" not in result.stdout, result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def make_ds(root: Path, name: str = "toy", objects: Mapping[str, Sequence[str]] | None = None) -> DSFolder:
    """A tiny DS folder: per object (default `plate` with class `dent`) one defective and one
    defect-free 16x16 sample."""
    objects = {"plate": ["dent"]} if objects is None else objects
    folder = DSFolder.create(root, name, objects)
    for obj in objects:
        mask = np.zeros((16, 16), np.uint8)
        mask[4:9, 4:9] = 1
        folder.add_sample(obj, "bad", np.full((16, 16, 3), 120, np.uint8), mask, defect_type="dent")
        folder.add_sample(obj, "good", np.full((16, 16, 3), 60, np.uint8), np.zeros((16, 16), np.uint8),
                          defect_type="good")
    folder.save()
    return folder
