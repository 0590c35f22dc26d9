"""Export a DS folder to another layout: `coco` (the standard COCO folder), `mmseg` and `ds-release` folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.errors import InputError

EXPORT_FORMATS = ("coco", "mmseg", "ds-release")
COCO_OPTIONS = ("polygons", "link")  # keyword options only the coco writer takes


def export(folder: DSFolder, dst: Path, to: str, **options: Any) -> Path:
    """Write `folder` to `dst` in layout `to`; returns the written file or folder.

    `options` (None/False: not given) go to the writer: `polygons`, `link` for coco.
    """
    dst = Path(dst)
    given = {key: value for key, value in options.items() if value is not None and value is not False}
    wrong = sorted(key for key in given if to != "coco" or key not in COCO_OPTIONS)
    if wrong and to in EXPORT_FORMATS:
        flags = ", ".join("--" + key.replace("_", "-") for key in wrong)
        raise InputError(f"option(s) {flags} do not apply to --to {to}")
    if to == "coco":
        from defectspectrum.data.formats.coco import export_coco

        return export_coco(folder, dst, **given)
    if to == "mmseg":
        from defectspectrum.data.formats.mmseg import export_mmseg

        return export_mmseg(folder, dst)
    if to == "ds-release":
        from defectspectrum.data.formats.ds_release import export_ds_release

        return export_ds_release(folder, dst)
    raise InputError(f"--to {to!r}: choose one of {', '.join(EXPORT_FORMATS)}")
