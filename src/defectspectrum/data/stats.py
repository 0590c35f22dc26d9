"""Data set statistics: per object and class, images, regions, region areas and image sizes.

One pass over the masks (images are not decoded: a DS mask has its image's size). Regions are
8-connected components of one class (`defectspectrum.regions`).
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import tee
from typing import Any

import numpy as np
from rich.console import Group
from rich.table import Table

from defectspectrum.cli_support import markup_text as escape
from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError
from defectspectrum.progress import track
from defectspectrum.regions import region_areas
from defectspectrum.workers import ordered_map

PERCENTILES = (5, 25, 50, 75, 95)
UNASSIGNED = "unassigned"  # split key of samples without a split


def _percentiles(values: Sequence[float], digits: int) -> dict[str, float] | None:
    if not values:
        return None
    points = np.percentile(np.asarray(values, dtype=np.float64), PERCENTILES)
    return {f"p{p}": round(float(v), digits) for p, v in zip(PERCENTILES, points)}


def _size_list(sizes: Counter[tuple[int, int]]) -> list[dict[str, int]]:
    """Distinct (height, width) with counts, most common first."""
    ordered = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    return [{"height": h, "width": w, "count": n} for (h, w), n in ordered]


def _extreme(sizes: Counter[tuple[int, int]], largest: bool) -> list[int] | None:
    """The smallest / largest size by pixel count (ties: by height, then width)."""
    if not sizes:
        return None
    key = lambda hw: (hw[0] * hw[1], hw)  # noqa: E731
    size = max(sizes, key=key) if largest else min(sizes, key=key)
    return [size[0], size[1]]


@dataclass
class ClassStats:
    """One defect class of one object."""

    index: int
    name: str
    images: int = 0  # samples whose mask contains the class
    regions: int = 0
    pixels: int = 0
    area_px: dict[str, float] | None = None  # region area percentiles, pixels
    area_pct: dict[str, float] | None = None  # region area percentiles, % of the image

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "images": self.images, "regions": self.regions,
                "pixels": self.pixels, "area_px": self.area_px, "area_pct": self.area_pct}


@dataclass
class ObjectStats:
    """One object: sample counts, splits, image sizes and its classes."""

    name: str
    samples: int = 0
    defective: int = 0  # mask has at least one non-background pixel
    defect_free: int = 0  # mask is all background
    synthetic: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    defect_types: dict[str, int] = field(default_factory=dict)
    image_sizes: list[dict[str, int]] = field(default_factory=list)
    min_size: list[int] | None = None  # [height, width], smallest by pixel count
    max_size: list[int] | None = None
    classes: list[ClassStats] = field(default_factory=list)
    out_of_map: dict[int, int] = field(default_factory=dict)  # mask index outside the class map -> images
    unreadable: list[str] = field(default_factory=list)  # sample ids whose mask could not be read

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "samples": self.samples, "defective": self.defective,
                "defect_free": self.defect_free, "synthetic": self.synthetic, "splits": self.splits,
                "defect_types": self.defect_types, "image_sizes": self.image_sizes, "min_size": self.min_size,
                "max_size": self.max_size, "classes": [c.to_json() for c in self.classes],
                "out_of_map": {str(k): v for k, v in self.out_of_map.items()}, "unreadable": self.unreadable}


@dataclass
class DatasetStats:
    """Statistics of a whole DS folder."""

    name: str
    root: str
    samples: int
    splits: dict[str, int]
    image_sizes: list[dict[str, int]]
    objects: dict[str, ObjectStats]

    @property
    def unreadable(self) -> list[str]:
        """Sample ids whose mask could not be read (left out of every count but `samples`)."""
        return [sample_id for obj in self.objects.values() for sample_id in obj.unreadable]

    def to_json(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict."""
        return {"name": self.name, "root": self.root, "samples": self.samples, "splits": self.splits,
                "image_sizes": self.image_sizes, "unreadable": self.unreadable,
                "objects": {name: obj.to_json() for name, obj in self.objects.items()}}


@dataclass(frozen=True)
class MaskFacts:
    """What the statistics take from one mask: its (height, width) and, per class index present,
    (pixels, region areas)."""

    shape: tuple[int, int]
    classes: dict[int, tuple[int, np.ndarray]]


def mask_facts(mask: np.ndarray, classes: int) -> MaskFacts:
    """`MaskFacts` of a class-index mask of an object with `classes` classes (indices beyond are counted
    as present, without regions)."""
    counts = np.bincount(mask.ravel(), minlength=classes)
    present = [int(i) for i in np.flatnonzero(counts) if i > 0]
    empty = np.zeros(0, np.int64)
    return MaskFacts((int(mask.shape[0]), int(mask.shape[1])),
                     {i: (int(counts[i]), region_areas(mask, i) if i < classes else empty) for i in present})


def _measure(context: DSFolder, sample: Sample) -> MaskFacts | None:
    """One sample's `MaskFacts`, None where its mask cannot be read (in a worker: `context` is the
    folder's files view)."""
    try:
        mask = context.load_mask(sample)
    except InputError:
        return None
    return mask_facts(mask, len(context.objects[sample.object]))


class _ObjectAccumulator:
    def __init__(self, name: str, class_map: ClassMap) -> None:
        self.name = name
        self.class_map = class_map
        self.samples = self.defective = self.synthetic = 0
        self.splits: Counter[str] = Counter()
        self.defect_types: Counter[str] = Counter()
        self.sizes: Counter[tuple[int, int]] = Counter()
        self.images: Counter[int] = Counter()
        self.pixels: Counter[int] = Counter()
        # region areas (pixels, % of the image) per class: 8 bytes a region, no Python object each
        self.areas: dict[int, array[int]] = {i: array("q") for i in range(1, len(class_map))}
        self.fractions: dict[int, array[float]] = {i: array("d") for i in range(1, len(class_map))}
        self.out_of_map: Counter[int] = Counter()
        self.unreadable: list[str] = []

    def add(self, facts: MaskFacts) -> None:
        height, width = facts.shape
        self.sizes[(height, width)] += 1
        if facts.classes:
            self.defective += 1
        for index, (pixels, areas) in facts.classes.items():
            if index >= len(self.class_map):
                self.out_of_map[index] += 1
                continue
            self.images[index] += 1
            self.pixels[index] += pixels
            self.areas[index].extend(int(a) for a in areas)
            self.fractions[index].extend(float(a) * 100.0 / (height * width) for a in areas)

    def result(self) -> ObjectStats:
        classes = [
            ClassStats(index=i, name=self.class_map[i], images=self.images[i], regions=len(self.areas[i]),
                       pixels=self.pixels[i], area_px=_percentiles(self.areas[i], 1),
                       area_pct=_percentiles(self.fractions[i], 4))
            for i in range(1, len(self.class_map))
        ]
        readable = self.samples - len(self.unreadable)
        return ObjectStats(
            name=self.name, samples=self.samples, defective=self.defective, defect_free=readable - self.defective,
            synthetic=self.synthetic, splits=dict(sorted(self.splits.items())),
            defect_types=dict(sorted(self.defect_types.items())), image_sizes=_size_list(self.sizes),
            min_size=_extreme(self.sizes, largest=False), max_size=_extreme(self.sizes, largest=True),
            classes=classes, out_of_map=dict(sorted(self.out_of_map.items())), unreadable=self.unreadable)


def compute_stats(folder: DSFolder, workers: int = 1) -> DatasetStats:
    """Statistics of `folder`, reading each mask once (in `workers` processes: the result is the same).

    Masks that cannot be read are listed in `unreadable` and left out of the counts (run
    `defectspectrum data validate` for details). "Defective" means the mask has a defect pixel.
    """
    accumulators = {name: _ObjectAccumulator(name, class_map) for name, class_map in folder.objects.items()}
    splits: Counter[str] = Counter()
    sizes: Counter[tuple[int, int]] = Counter()
    listed, measured = tee(folder)  # the samples streamed, a bounded window apart: never a list of them
    results = ordered_map(_measure, measured, workers, folder.files_view())
    for sample, facts in zip(listed, track(results, "stats", total=len(folder))):
        acc = accumulators[sample.object]
        acc.samples += 1
        acc.synthetic += int(sample.synthetic)
        acc.splits[sample.split or UNASSIGNED] += 1
        acc.defect_types[sample.defect_type or "unknown"] += 1
        splits[sample.split or UNASSIGNED] += 1
        if facts is None:
            acc.unreadable.append(sample.id)
            continue
        acc.add(facts)
        sizes[facts.shape] += 1
    return DatasetStats(name=folder.name, root=str(folder.root), samples=len(folder),
                        splits=dict(sorted(splits.items())),
                        image_sizes=_size_list(sizes),
                        objects={name: acc.result() for name, acc in accumulators.items()})


# -- display ------------------------------------------------------------------------------------------


def _fmt_size(size: list[int] | None) -> str:
    return "-" if size is None else f"{size[0]}x{size[1]}"


def _fmt_sizes(obj: ObjectStats) -> str:
    if not obj.image_sizes:
        return "-"
    if len(obj.image_sizes) == 1:
        return f"{_fmt_size([obj.image_sizes[0]['height'], obj.image_sizes[0]['width']])}"
    return f"{len(obj.image_sizes)} sizes, {_fmt_size(obj.min_size)} .. {_fmt_size(obj.max_size)}"


def stats_table(stats: DatasetStats) -> Group:
    """Two rich tables: objects (samples, splits, sizes) and classes (images, regions, area percentiles)."""
    objects = Table(title=f"{escape(stats.name)}: {stats.samples} samples", title_justify="left")
    # on a narrow terminal (or a pipe: 80 columns) text columns fold first, so numbers keep every digit
    # (where even that is too narrow they end in "…", never in fewer digits)
    for column in ("object", "samples", "defective", "free", "synth", "splits", "sizes HxW"):
        text = column in ("object", "splits", "sizes HxW")
        objects.add_column(column, justify="left" if text else "right", overflow="fold" if text else "ellipsis",
                           no_wrap=not text)
    for obj in stats.objects.values():
        splits = escape(", ".join(f"{k} {v}" for k, v in obj.splits.items()) or "-")
        objects.add_row(escape(obj.name), str(obj.samples), str(obj.defective), str(obj.defect_free),
                        str(obj.synthetic), splits, _fmt_sizes(obj))

    classes = Table(title="classes (region areas in pixels; regions are 8-connected)", title_justify="left")
    for column in ("object", "class", "images", "regions", *(f"p{p}" for p in PERCENTILES), "p50 %"):
        text = column in ("object", "class")
        classes.add_column(column, justify="left" if text else "right", overflow="fold" if text else "ellipsis",
                           no_wrap=not text)
    for obj in stats.objects.values():
        for cls in obj.classes:
            px = [f"{cls.area_px[f'p{p}']:.0f}" if cls.area_px else "-" for p in PERCENTILES]
            pct = f"{cls.area_pct['p50']:.2f}" if cls.area_pct else "-"
            classes.add_row(escape(obj.name), escape(cls.name), str(cls.images), str(cls.regions), *px, pct)
    parts: list[Any] = [objects, classes]
    notes = [f"[yellow]{escape(obj.name)}: mask index {index} is outside the class map in {n} image(s)[/]"
             for obj in stats.objects.values() for index, n in obj.out_of_map.items()]
    if stats.unreadable:
        notes.append(f"[yellow]{len(stats.unreadable)} mask(s) could not be read and are not counted "
                     f"(first: {escape(str(stats.unreadable[0]))}); run `defectspectrum data validate`[/]")
    parts.extend(notes)
    return Group(*parts)
