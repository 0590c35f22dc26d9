"""What every source-layout reader provides, and the mask recipes most of them share.

A reader lists its samples cheaply (paths and a small, picklable mask recipe each) and turns a
recipe into a class-index mask on demand, so conversion can run in worker processes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from defectspectrum.data.classes import ClassMap
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import read_binary_mask, read_mask_pixels


@dataclass(frozen=True)
class BinaryMask:
    """Recipe: a binary mask file (0/255, 0/1 or JPEG-damaged) whose foreground is one class."""

    path: Path
    class_index: int


@dataclass(frozen=True)
class IndexMask:
    """Recipe: a single-channel mask file whose pixel values are class indices already."""

    path: Path


@dataclass
class SourceSample:
    """One image found in a source layout, before conversion.

    `mask` is the reader's recipe for the class-index mask (None: defect-free, all background).
    `name` must be unique within `object` (the converter makes it file-safe). `source` is where the
    image came from (None: `image` itself); `extra` holds index fields a DS folder source kept.
    `empty_means_good`: `defect_type` is not the source's own grouping (unknown, or one class guessed
    for a whole folder), so a mask without a defect pixel makes the sample `good`, as no mask would.
    """

    object: str
    name: str
    image: Path
    mask: Any = None
    defect_type: str | None = None
    split: str | None = None
    caption: str | None = None
    synthetic: bool = False
    empty_means_good: bool = False
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mask_origin(self) -> str:
        """Where the mask comes from, for error messages."""
        path = getattr(self.mask, "path", None)
        return str(path) if path is not None else f"annotations of {self.image}"


class Reader(ABC):
    """A source layout. Subclasses set `name` and `summary` and implement the abstract methods."""

    name: ClassVar[str]
    summary: ClassVar[str]
    skipped: int = 0  # unlabelled images a reader left out on purpose (counted once samples() ran)

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.exists():
            raise InputError(f"{root}: folder not found; check the path")
        if not root.is_dir():
            raise InputError(f"{root}: not a folder; pass the data set's top folder")
        self.root = root

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True where `root` looks like this layout (used by `--from auto`)."""
        return False

    @abstractmethod
    def class_maps(self) -> dict[str, ClassMap]:
        """Class map of every object this source holds."""

    @abstractmethod
    def samples(self) -> Iterator[SourceSample]:
        """Every labelled image of the source, in a stable order."""

    def load_mask(self, sample: SourceSample, size: tuple[int, int]) -> np.ndarray:
        """The class-index mask of `sample`; `size` is the image's (height, width).

        Handles the shared recipes (None, BinaryMask, IndexMask); readers with their own recipes
        override this and call `super().load_mask` for the rest. The result may differ in size
        from the image: the converter checks that.
        """
        recipe = sample.mask
        if recipe is None:
            return np.zeros(size, dtype=np.uint8)
        if isinstance(recipe, BinaryMask):
            return read_binary_mask(recipe.path).astype(np.uint8) * np.uint8(recipe.class_index)
        if isinstance(recipe, IndexMask):
            pixels = read_mask_pixels(recipe.path)
            if pixels.ndim == 3:
                raise FormatError(f"{recipe.path}: expected a single-channel class-index mask, found a colour image; "
                                  "save the mask as grey class indices (or read colour masks with --from folder "
                                  "--palette)")
            return pixels
        raise TypeError(f"{type(self).__name__} has no loader for mask recipe {recipe!r}")

    def meta(self) -> dict[str, Any]:
        """Data-set-wide fields to keep in the new DS folder's dataset.json (a DS folder source's own)."""
        return {}

    def empty_error(self) -> FormatError:
        """The error for a source that holds no usable images."""
        return FormatError(f"{self.root}: no {self.name} images found; check the folder or the --from format")
