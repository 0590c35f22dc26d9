"""Convert any source layout into a DS folder (one process or several), streaming: the reader's
samples are converted as they are listed and each index line is written as its sample is done
(`dsfolder.IndexWriter`), so what stays in memory is one lower-case name a sample (the names are
made unique, and clashes told, against them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import (
    DSFolder,
    IndexWriter,
    check_mask,
    kept_as_is,
    staged_ds_folder,
    write_sample_files,
)
from defectspectrum.data.formats import open_reader
from defectspectrum.data.formats.base import Reader, SourceSample
from defectspectrum.data.sample import GOOD, Sample
from defectspectrum.errors import InputError
from defectspectrum.io import check_image_file, check_image_pixels, open_image, pixel_limit
from defectspectrum.paths import require_apart, safe_name
from defectspectrum.progress import track
from defectspectrum.workers import ordered_map


@dataclass(frozen=True)
class _Context:
    """What every sample's conversion shares; sent once to each worker process."""

    reader: Reader
    root: Path
    class_maps: dict[str, ClassMap]
    resize_masks: bool


class ConvertedSample(NamedTuple):
    """One converted sample: its index record, and whether its written mask has a defect pixel."""

    sample: Sample
    has_defect: bool


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote, counted from the masks written (not from the samples' defect types):
    counts only, so that nothing of the size of the data set is held (`open()` reads the folder)."""

    root: Path  # the DS folder written
    samples: int
    objects: int  # objects in its dataset.json
    with_defects: int  # samples whose mask has at least one non-background pixel
    skipped: int = 0  # source images the reader left out on purpose (e.g. VOC images without a mask)

    @property
    def defect_free(self) -> int:
        """Samples whose mask is all background."""
        return self.samples - self.with_defects

    def open(self) -> DSFolder:
        """The DS folder written, read from disk."""
        return DSFolder.open(self.root)

    def summary(self) -> str:
        """`400 samples (52 with defects, 348 defect-free) in 1 object(s)`, plus the skipped images."""
        text = (f"{self.samples} samples ({self.with_defects} with defects, {self.defect_free} defect-free) "
                f"in {self.objects} object(s)")
        return text + (f"; skipped {self.skipped} unlabelled image(s)" if self.skipped else "")


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


def convert_sample(context: _Context, item: SourceSample, name: str) -> ConvertedSample:
    """Read, check and write one sample into the private staging folder `context.root` (its files
    are written directly: the folder's final rename publishes them); returns its index record and
    whether the mask written has a defect pixel.

    A damaged, oversized or float image is an InputError before anything of it is written. An image
    copied byte for byte (PNG, JPEG) is checked without decoding it (`io.check_image_file`: header,
    chunks and checksums, end marker), its size read from the header; one to re-encode is decoded
    once, and the decoded image serves the re-encoding."""
    decoded = None
    if kept_as_is(item.image):
        size = check_image_file(item.image)
    else:
        decoded = open_image(item.image)
        check_image_pixels(decoded, item.image)
        size = (decoded.height, decoded.width)
    mask = fit_mask(context.reader.load_mask(item, size), size, item, context.resize_masks)
    mask = check_mask(mask, context.class_maps[item.object], item.mask_origin)
    image_rel, mask_rel = write_sample_files(context.root, item.object, name, item.image, mask, decoded=decoded,
                                             atomic=False, checked=True)
    has_defect = bool(mask.any())
    sample = Sample(id=f"{item.object}/{name}", object=item.object, image=image_rel, mask=mask_rel,
                    split=item.split, caption=item.caption, synthetic=item.synthetic,
                    source=item.source if item.source is not None else str(Path(item.image).absolute()),
                    defect_type=GOOD if item.empty_means_good and not has_defect else item.defect_type,
                    extra=dict(item.extra))
    return ConvertedSample(sample, has_defect)


def _convert_task(context: _Context, task: tuple[SourceSample, str]) -> ConvertedSample:
    return convert_sample(context, *task)


def named(items: Iterable[SourceSample], index: IndexWriter) -> Iterator[tuple[SourceSample, str]]:
    """Each item with its file-safe sample name, unique within its object ignoring case (`-2`, `-3`, ...
    appended on clashes: `IndexWriter.name`), as the items come."""
    for item in items:
        yield item, index.name(item.object, safe_name(item.name))


def convert(source: Path, dst: Path, fmt: str = "auto", *, workers: int = 1, overwrite: bool = False,
            resize_masks: bool = False, name: str | None = None, kept: list[str] | None = None,
            max_pixels: int | None = None, **reader_options: Any) -> DSFolder:
    """Convert the data set at `source` into a new DS folder at `dst` (see `convert_counted`); returns
    the folder, read back from `dst`."""
    return convert_counted(source, dst, fmt, workers=workers, overwrite=overwrite, resize_masks=resize_masks,
                           name=name, kept=kept, max_pixels=max_pixels, **reader_options).open()


def convert_counted(source: Path, dst: Path, fmt: str = "auto", *, workers: int = 1, overwrite: bool = False,
                    resize_masks: bool = False, name: str | None = None, kept: list[str] | None = None,
                    max_pixels: int | None = None, **reader_options: Any) -> ConvertResult:
    """Convert the data set at `source` (layout `fmt`, or detected) into a new DS folder at `dst`;
    returns the counts of what it wrote (`ConvertResult`: samples, objects, samples whose written mask
    has a defect pixel, images the reader skipped).

    Sources are only read. `dst` must be new or empty (or a DS folder with `overwrite`). The
    folder is written beside `dst` and moved into place only when every sample converted, so a
    failed conversion leaves `dst` as it was. Files of the user's own in a replaced DS folder are
    carried into the new one; `kept`, where given, receives their paths relative to `dst`.
    Images above `max_pixels` (default `io.max_pixels()`) are refused from their header, before
    they are decoded.

    The source is read as it is converted (with `workers`, a bounded window ahead), and each
    sample's index line written once it is done; an error in the source's listing (say a missing
    mask) comes where it stands, after the samples before it.
    """
    with pixel_limit(max_pixels):
        return _convert(Path(source), Path(dst), fmt, workers, overwrite, resize_masks, name, kept, reader_options)


def _convert(source: Path, dst: Path, fmt: str, workers: int, overwrite: bool, resize_masks: bool,
             name: str | None, kept: list[str] | None, reader_options: dict[str, Any]) -> ConvertResult:
    reader = open_reader(fmt, source, **reader_options)
    require_apart(source, dst, "choose another DST")
    class_maps = reader.class_maps()
    listed = iter(reader.samples())
    first = next(listed, None)
    if first is None:
        raise reader.empty_error()
    with staged_ds_folder(dst, overwrite, kept) as staging:
        meta = {**reader.meta(), "source": {"format": reader.name, "path": str(source.absolute())}}
        with IndexWriter(staging, name or dst.name, class_maps, meta) as index:
            context = _Context(reader, staging, class_maps, resize_masks)
            with_defects = 0
            tasks = named(chain([first], listed), index)
            # closed on an error, so that no worker still writes into the staging folder as it is removed
            with closing(ordered_map(_convert_task, tasks, workers, context)) as converted:
                for sample, has_defect in track(converted, f"converting {reader.name}"):
                    index.add(sample)
                    with_defects += has_defect
    return ConvertResult(dst, index.count, len(class_maps), with_defects, reader.skipped)
