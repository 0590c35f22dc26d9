"""Class maps: per-object class names (index 0 = background) and the global class list across objects."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from defectspectrum.errors import InputError
from defectspectrum.paths import is_safe_name, safe_name

BACKGROUND = "background"
MAX_CLASSES = 256  # masks are uint8


@dataclass(frozen=True)
class ClassMap:
    """The class names of one object; a name's position is its mask index and index 0 is background."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        for name in names:  # first: a list among the names would make the checks below raise TypeError
            if not isinstance(name, str) or not name.strip():
                raise InputError(f"class map {list(names)}: every class name must be a non-empty string, "
                                 f"not {name!r}")
        if not names or names[0] != BACKGROUND:
            raise InputError(f"class map {list(names)}: index 0 must be {BACKGROUND!r}")
        if len(set(names)) != len(names):
            raise InputError(f"class map {list(names)}: class names must be unique")
        if len(names) > MAX_CLASSES:
            raise InputError(f"class map has {len(names)} classes; masks are uint8, so at most {MAX_CLASSES}")

    @classmethod
    def from_defects(cls, defects: Sequence[str]) -> ClassMap:
        """Background followed by `defects` in order (1, 2, ...)."""
        return cls((BACKGROUND, *defects))

    @property
    def defects(self) -> tuple[str, ...]:
        """The defect classes (every name but background)."""
        return self.names[1:]

    def index(self, name: str) -> int:
        """The mask index of class `name`."""
        try:
            return self.names.index(name)
        except ValueError:
            raise InputError(f"unknown class {name!r}; known classes: {', '.join(self.names)}") from None

    def with_class(self, name: str) -> ClassMap:
        """This map with `name` appended (unchanged if it is already there)."""
        return self if name in self.names else ClassMap((*self.names, name))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> str:
        return self.names[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)


@dataclass(frozen=True)
class GlobalClass:
    """One entry of the global class list: an (object, class) pair, or background (object None)."""

    index: int
    object: str | None
    name: str

    @property
    def label(self) -> str:
        """`object/class`, or `background`."""
        return self.name if self.object is None else f"{self.object}/{self.name}"


def global_classes(objects: Mapping[str, ClassMap]) -> list[GlobalClass]:
    """Background, then every object's defect classes in object order: one list to train one model on."""
    entries = [GlobalClass(0, None, BACKGROUND)]
    for object_name, class_map in objects.items():
        for name in class_map.defects:
            entries.append(GlobalClass(len(entries), object_name, name))
    return entries


def global_lookup(objects: Mapping[str, ClassMap]) -> dict[str, np.ndarray]:
    """Per object, a table (int64: any number of objects fits) mapping its local mask index to the
    global class index."""
    tables: dict[str, np.ndarray] = {}
    offset = 0
    for object_name, class_map in objects.items():
        table = np.zeros(MAX_CLASSES, dtype=np.int64)
        table[1 : len(class_map)] = np.arange(offset + 1, offset + len(class_map), dtype=np.int64)
        tables[object_name] = table
        offset += len(class_map) - 1
    return tables


def class_maps_from_json(objects: Any, where: str, error: type[InputError] = InputError) -> dict[str, ClassMap]:
    """Parse `{"object": {"classes": ["background", ...]}, ...}` (as in dataset.json); `error`
    (naming `where`) for anything else. Object names name folders, so each must be a safe name
    (`paths.is_safe_name`)."""
    if not isinstance(objects, dict) or not all(
        isinstance(spec, dict) and isinstance(spec.get("classes"), list) for spec in objects.values()
    ):
        raise error(f"{where}: 'objects' must map object names to {{'classes': [...]}}")
    maps: dict[str, ClassMap] = {}
    for name, spec in objects.items():
        if not is_safe_name(name):
            raise error(f"{where}: object name {name!r} must be letters, digits, '.', '_' or '-' (it names a "
                        f"folder); rename it, e.g. to {safe_name(name)!r}")
        try:
            maps[name] = ClassMap(tuple(spec["classes"]))
        except InputError as exc:
            raise error(f"{where}: object {name!r}: {exc}") from exc
    return maps
