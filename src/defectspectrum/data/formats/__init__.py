"""Source layouts: one module a layout, each a `Reader` (and a writer where it makes sense).

`READERS` maps the `--from` names to reader classes; `open_reader` builds one, `detect_format`
guesses the layout of a folder, asking the readers in `DETECTION_ORDER`.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from defectspectrum.data.formats.base import BinaryMask, IndexMask, Reader, SourceSample
from defectspectrum.errors import FormatError, InputError, SchemaError

READERS: dict[str, type[Reader]] = {}

# The order `--from auto` asks the readers in: the first whose `detect` says yes wins. Most specific
# sign first: a DS folder's own index; then layouts named by their files or folders (the DS release's
# subset names / class files / colour masks, VISION's per-split COCO files, one COCO JSON, MVTec's
# test + ground_truth, DAGM's ClassN, Magnetic-tile's MT_*, SD-900's two folders, mmseg's img_dir +
# ann_dir); then Cotton-Fabric (defect names in file names); `folder` (any images) last. A reader
# registered from outside the package and not listed here is asked after these, before `folder`.
DETECTION_ORDER: tuple[str, ...] = ("ds", "ds-release", "vision", "coco", "mvtec", "dagm", "magnetic-tile",
                                    "sd900", "mmseg", "cotton", "folder")
FALLBACK_READER = "folder"


def register(cls: type[Reader]) -> type[Reader]:
    """Class decorator: make a reader available under its `name`."""
    READERS[cls.name] = cls
    return cls


def _load_builtin_readers() -> None:
    # Imported for their @register side effect; the detection order is DETECTION_ORDER, not this one.
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


def detection_order() -> list[str]:
    """Every registered reader name in the order `--from auto` asks them (see DETECTION_ORDER)."""
    _load_builtin_readers()
    listed = [name for name in DETECTION_ORDER if name in READERS and name != FALLBACK_READER]
    others = [name for name in READERS if name not in DETECTION_ORDER]
    return listed + others + ([FALLBACK_READER] if FALLBACK_READER in READERS else [])


def _check_ds_index(root: Path) -> None:
    """SchemaError where `root` looks like a DS folder (a dataset.json beside samples.jsonl, or one
    that mentions defectspectrum) but its dataset.json is not a valid DS index: a damaged DS folder
    must be reported as such, not handed to another reader that then fails for another reason."""
    from defectspectrum.data.dsfolder import DATASET_FILE, FORMAT, SAMPLES_FILE
    from defectspectrum.io import open_regular, read_json

    index = root / DATASET_FILE
    beside = (root / SAMPLES_FILE).is_file()
    if not (index.is_file() or (beside and os.path.lexists(index))):
        return  # (beside samples.jsonl, a dataset.json that is a folder, pipe or broken link is damage)
    hint = "(this looks like a DS folder)"
    if not beside:
        with open_regular(index) as handle:
            if FORMAT.encode() not in handle.read(1 << 20):
                return  # some other data set's dataset.json
    try:
        data = read_json(index)
    except InputError as exc:
        raise SchemaError(f"{exc} {hint}") from exc
    if beside and not (isinstance(data, dict) and data.get("format") == FORMAT):
        found = repr(data.get("format")) if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise SchemaError(f"{index}: \"format\" must be {FORMAT!r}, found {found}; fix the file {hint}")


def detect_format(root: Path) -> str:
    """The name of the layout `root` looks like (readers asked in `detection_order()`), or FormatError."""
    _load_builtin_readers()
    root = Path(root)
    order = detection_order()
    if root.is_file():  # only readers with `reads_files = True` (coco: a .json) take a file
        file_readers = [name for name in order if getattr(READERS[name], "reads_files", False)]
        for name in file_readers:
            if READERS[name].detect(root):
                return name
        raise FormatError(f"{root}: is a file; pass the data set's folder "
                          f"(only {', '.join(file_readers)} reads a file)")
    if not root.is_dir():
        raise InputError(f"{root}: folder not found; check the path")
    _check_ds_index(root)
    for name in order:
        if READERS[name].detect(root):
            return name
    raise FormatError(f"{root}: cannot tell the layout; pass --from with one of: {', '.join(order)}")


def open_reader(fmt: str, root: Path, **options: Any) -> Reader:
    """A reader of format `fmt` ('auto' detects it) over `root`; options not None go to the reader."""
    _load_builtin_readers()
    name = detect_format(root) if fmt == "auto" else fmt
    if name not in READERS:
        raise InputError(f"unknown format {fmt!r}; choose one of: auto, {', '.join(detection_order())}")
    cls = READERS[name]
    given = {key: value for key, value in options.items() if value is not None}
    accepted = inspect.signature(cls.__init__).parameters
    wrong = sorted(key for key in given if key not in accepted)
    if wrong:
        flags = ", ".join("--" + key.replace("_", "-") for key in wrong)
        raise InputError(f"option(s) {flags} do not apply to format {name!r}")
    return cls(root, **given)


def reader_names() -> list[str]:
    """Every registered format name, in detection order."""
    return detection_order()


__all__ = ["DETECTION_ORDER", "READERS", "BinaryMask", "IndexMask", "Reader", "SourceSample", "detect_format",
           "detection_order", "open_reader", "reader_names", "register"]
