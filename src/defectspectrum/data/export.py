"""Export a DS folder to another layout: `coco` (one JSON, RLE), `mmseg` and `ds-release` folders."""

from __future__ import annotations

from pathlib import Path

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.errors import InputError

EXPORT_FORMATS = ("coco", "mmseg", "ds-release")


def export(folder: DSFolder, dst: Path, to: str) -> Path:
    """Write `folder` to `dst` in layout `to`; returns the written file or folder."""
    dst = Path(dst)
    if to == "coco":
        from defectspectrum.data.formats.coco import export_coco

        return export_coco(folder, dst)
    if to == "mmseg":
        from defectspectrum.data.formats.mmseg import export_mmseg

        return export_mmseg(folder, dst)
    if to == "ds-release":
        from defectspectrum.data.formats.ds_release import export_ds_release

        return export_ds_release(folder, dst)
    raise InputError(f"--to {to!r}: choose one of {', '.join(EXPORT_FORMATS)}")
