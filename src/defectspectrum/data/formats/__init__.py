"""Source layouts: one module a layout, each a `Reader` (and a writer where it makes sense).

`READERS` maps the `--from` names to reader classes; `open_reader` builds one, `detect_format`
guesses the layout of a folder.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from defectspectrum.data.formats.base import BinaryMask, IndexMask, Reader, SourceSample
from defectspectrum.errors import FormatError, InputError

READERS: dict[str, type[Reader]] = {}


def register(cls: type[Reader]) -> type[Reader]:
    """Class decorator: make a reader available under its `name`."""
    READERS[cls.name] = cls
    return cls


def _load_builtin_readers() -> None:
    # Imported for their @register side effect; order is the detection order (most specific first).
    from defectspectrum.data.formats import (  # noqa: F401
        coco,
        cotton,
        dagm,
        ds,
        ds_release,
        folder,
        magnetic_tile,
        mmseg,
        mvtec,
        sd900,
        vision,
    )


def detect_format(root: Path) -> str:
    """The name of the one layout `root` looks like, or FormatError listing the choices."""
    _load_builtin_readers()
    root = Path(root)
    if root.is_file():  # only readers with `reads_files = True` (coco: a .json) take a file
        file_readers = [name for name, cls in READERS.items() if getattr(cls, "reads_files", False)]
        for name in file_readers:
            if READERS[name].detect(root):
                return name
        raise FormatError(f"{root}: is a file; pass the data set's folder "
                          f"(only {', '.join(file_readers)} reads a file)")
    if not root.is_dir():
        raise InputError(f"{root}: folder not found; check the path")
    for name, cls in READERS.items():
        if name != "folder" and cls.detect(root):
            return name
    if READERS["folder"].detect(root):
        return "folder"
    raise FormatError(f"{root}: cannot tell the layout; pass --from with one of: {', '.join(READERS)}")


def open_reader(fmt: str, root: Path, **options: Any) -> Reader:
    """A reader of format `fmt` ('auto' detects it) over `root`; options not None go to the reader."""
    _load_builtin_readers()
    name = detect_format(root) if fmt == "auto" else fmt
    if name not in READERS:
        raise InputError(f"unknown format {fmt!r}; choose one of: auto, {', '.join(READERS)}")
    cls = READERS[name]
    given = {key: value for key, value in options.items() if value is not None}
    accepted = inspect.signature(cls.__init__).parameters
    wrong = sorted(key for key in given if key not in accepted)
    if wrong:
        flags = ", ".join("--" + key.replace("_", "-") for key in wrong)
        raise InputError(f"option(s) {flags} do not apply to format {name!r}")
    return cls(root, **given)


def reader_names() -> list[str]:
    """Every registered format name."""
    _load_builtin_readers()
    return list(READERS)


__all__ = ["READERS", "BinaryMask", "IndexMask", "Reader", "SourceSample", "detect_format", "open_reader",
           "reader_names", "register"]
