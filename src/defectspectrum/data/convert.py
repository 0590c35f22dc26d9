"""Convert any source layout into a DS folder (one process or several)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import DSFolder, check_mask, safe_name, write_sample_files
from defectspectrum.data.formats import open_reader
from defectspectrum.data.formats.base import Reader, SourceSample
from defectspectrum.data.io import open_image
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError
from defectspectrum.progress import track


@dataclass(frozen=True)
class _Job:
    reader: Reader
    item: SourceSample
    name: str
    root: Path
    class_map: ClassMap
    resize_masks: bool


def fit_mask(mask: np.ndarray, size: tuple[int, int], item: SourceSample, resize: bool) -> np.ndarray:
    """`mask` at the image's (height, width): resampled nearest-neighbour if allowed, else InputError."""
    if mask.shape[:2] == size:
        return mask
    if not resize:
        raise InputError(
            f"{item.mask_origin}: mask is {mask.shape[1]}x{mask.shape[0]} but image {item.image} is "
            f"{size[1]}x{size[0]}; pass --resize-masks to resample masks to their image (nearest neighbour)"
        )
    return cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def convert_sample(job: _Job) -> Sample:
    """Read, check and write one sample; returns its index record."""
    item = job.item
    image = open_image(item.image)
    size = (image.height, image.width)
    mask = fit_mask(job.reader.load_mask(item, size), size, item, job.resize_masks)
    mask = check_mask(mask, job.class_map, item.mask_origin)
    image_rel, mask_rel = write_sample_files(job.root, item.object, job.name, item.image, mask, decoded=image)
    return Sample(id=f"{item.object}/{job.name}", object=item.object, image=image_rel, mask=mask_rel,
                  split=item.split, caption=item.caption, synthetic=item.synthetic, source=str(item.image),
                  defect_type=item.defect_type)


def unique_names(items: list[SourceSample]) -> list[str]:
    """File-safe sample names, unique within each object (`-2`, `-3`, ... appended on clashes)."""
    seen: set[tuple[str, str]] = set()
    names = []
    for item in items:
        base = safe_name(item.name)
        name, counter = base, 1
        while (item.object, name.lower()) in seen:
            counter += 1
            name = f"{base}-{counter}"
        seen.add((item.object, name.lower()))
        names.append(name)
    return names


def _check_paths(source: Path, dst: Path) -> None:
    src, out = source.resolve(), dst.resolve()
    if out == src or src in out.parents:
        raise InputError(f"{dst}: the output folder must lie outside the source {source}; choose another DST")
    if out in src.parents:
        raise InputError(f"{dst}: the output folder must not contain the source {source}; choose another DST")


def _run(jobs: list[_Job], workers: int) -> Iterator[Sample]:
    if workers <= 1:
        yield from map(convert_sample, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(convert_sample, jobs, chunksize=max(1, min(32, len(jobs) // (workers * 8) or 1)))


def convert(source: Path, dst: Path, fmt: str = "auto", *, workers: int = 1, overwrite: bool = False,
            resize_masks: bool = False, name: str | None = None, **reader_options: Any) -> DSFolder:
    """Convert the data set at `source` (layout `fmt`, or detected) into a new DS folder at `dst`.

    Sources are only read. `dst` must be new or empty (or a DS folder with `overwrite`); if the
    conversion fails, the partly written `dst` is removed again.
    """
    source, dst = Path(source), Path(dst)
    reader = open_reader(fmt, source, **reader_options)
    _check_paths(source, dst)
    class_maps = reader.class_maps()
    items = list(reader.samples())
    if not items:
        raise reader.empty_error()
    existed = dst.exists()
    folder = DSFolder.create(dst, name or dst.name, class_maps, overwrite=overwrite)
    folder.meta["source"] = {"format": reader.name, "path": str(source)}
    jobs = [_Job(reader, item, sample_name, dst, class_maps[item.object], resize_masks)
            for item, sample_name in zip(items, unique_names(items))]
    try:
        for sample in track(_run(jobs, workers), f"converting {reader.name}", total=len(jobs)):
            folder.add_record(sample)
        folder.save()
    except BaseException:
        if existed:
            for child in dst.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(dst, ignore_errors=True)
        raise
    return folder
