"""Export a DS folder to another layout, through a registry of writers (`--to` names).

A writer is a function `writer(folder: DSFolder, dst: Path, **options) -> Path` returning what it
wrote. `register_writer(name, summary)` makes one available (as a decorator); the built-in ones
(`coco`, `mmseg`, `ds-release`) live in their layout's module under `formats/` and are registered
here by "module:function" so that listing them imports nothing heavy. `export` looks a writer up,
passes keyword options through and refuses an option the writer does not take with one line.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from defectspectrum.errors import InputError

if TYPE_CHECKING:
    from defectspectrum.data.dsfolder import DSFolder

WriterFunction = Callable[..., Path]
W = TypeVar("W", bound=WriterFunction)


@dataclass(frozen=True)
class Writer:
    """One `--to` layout: its name, a one-line summary and the function (or "module:function") that writes it."""

    name: str
    summary: str
    target: WriterFunction | str

    def load(self) -> WriterFunction:
        """The writer function (imported on first use when registered by name)."""
        if callable(self.target):
            return self.target
        module, _, attribute = self.target.partition(":")
        function: WriterFunction = getattr(importlib.import_module(module), attribute)
        return function

    def options(self) -> list[str] | None:
        """The keyword options the writer takes after (folder, dst); None where it takes any (**kwargs)."""
        parameters = list(inspect.signature(self.load()).parameters.values())[2:]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return None
        return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


WRITERS: dict[str, Writer] = {}


def register_writer(name: str, summary: str) -> Callable[[W], W]:
    """Decorator: make `function(folder, dst, **options) -> Path` available as `data export --to <name>`."""

    def decorate(function: W) -> W:
        WRITERS[name] = Writer(name, summary, function)
        return function

    return decorate


def _register_builtin(name: str, summary: str, target: str) -> None:
    WRITERS[name] = Writer(name, summary, target)


_register_builtin("coco", "standard COCO folder: annotations/instances_<split>.json + images/<split>/ (copied); "
                  "one RLE (or --polygons) annotation per connected region of a class",
                  "defectspectrum.data.formats.coco:export_coco")
_register_builtin("mmseg", "mmsegmentation folder: img_dir/ + ann_dir/ per split, one label space over all objects",
                  "defectspectrum.data.formats.mmseg:export_mmseg")
_register_builtin("ds-release", "Defect Spectrum release layout: <object>/image, mask (class indices), rbg_mask; "
                  "like the release, it keeps no splits and no synthetic flag",
                  "defectspectrum.data.formats.ds_release:export_ds_release")

EXPORT_FORMATS = tuple(WRITERS)  # the built-in names; `writer_names()` includes writers registered later


def writer_names() -> list[str]:
    """Every registered `--to` name, in registration order."""
    return list(WRITERS)


def get_writer(name: str) -> Writer:
    """The writer registered as `name`, or InputError listing the choices."""
    if name not in WRITERS:
        raise InputError(f"--to {name!r}: choose one of {', '.join(WRITERS)}")
    return WRITERS[name]


def export(folder: DSFolder, dst: Path, to: str, **options: Any) -> Path:
    """Write `folder` to `dst` in layout `to`; returns the written file or folder.

    Options whose value is None are left to the writer's default; an option the writer does not
    take is an InputError, unless it is None or False (a CLI flag that was not given). A folder
    without samples is refused: no layout reads an empty export back.
    """
    writer = get_writer(to)
    if not len(folder):
        raise InputError(f"{folder.root}: holds no samples; nothing to export")
    accepted = writer.options()
    given = {key: value for key, value in options.items() if value is not None}
    if accepted is not None:
        wrong = sorted(key for key, value in given.items() if key not in accepted and value is not False)
        if wrong:
            flags = ", ".join("--" + key.replace("_", "-") for key in wrong)
            raise InputError(f"option(s) {flags} do not apply to --to {to}")
        given = {key: value for key, value in given.items() if key in accepted}
    return Path(writer.load()(folder, Path(dst), **given))


__all__ = ["EXPORT_FORMATS", "WRITERS", "Writer", "export", "get_writer", "register_writer", "writer_names"]
