"""QC rules: per object, the defect classes that are never acceptable and the limits a minor one must
keep. Written in YAML against a DS folder's class names, validated with pydantic.

```yaml
version: 1
pixel_size_mm: 0.05        # optional: mm per pixel, so that areas may be written as "2 mm2"
min_region_area: 0         # regions smaller than this (px) are specks and ignored (default 0: none)
objects:
  pill:
    forbidden: [crack]                        # any region of these rejects the product
    limits:                                   # acceptable while every limit holds (limits are inclusive)
      contamination: {max_total_area: 3999}   # the class's area summed over the image, px
      color: {max_area: 299}                  # each connected region's area
      scratch: {max_count: 2, max_area: "0.5 mm2", min_region_area: 5}
    accept: [faulty_imprint]                  # acceptable at any size
    other_classes: reject                     # classes named nowhere above: reject (default) or accept
default:                                      # optional: objects not listed under objects
  other_classes: reject
```

Areas are pixels (a number, or "N px") or square millimetres ("N mm2", needing `pixel_size_mm`
on the object or the file). A limit is the largest acceptable value: `max_area: 4799` accepts
a region of 4799 px and rejects one of 4800 (the paper's "fabric defect < 4800 pixels").
Regions are 8-connected (`regions.py`). `Rules.policies(objects)` checks every name against a
data set's class maps and gives each object's `Policy`, every area in pixels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BeforeValidator, Field, model_validator

from defectspectrum.config_file import StrictModel, config_error, load_config
from defectspectrum.data.classes import BACKGROUND, ClassMap
from defectspectrum.errors import InputError

LIMIT_NAMES = ("max_area", "max_total_area", "max_count", "min_region_area")
_AREA = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(px|mm2|mm\^2|mm²)?\s*$")


class Area(NamedTuple):
    """An area as written: a number and its unit (`px` or `mm2`)."""

    value: float
    unit: str

    def pixels(self, pixel_size_mm: float | None) -> float:
        """The area in pixels (`pixel_size_mm` is mm per pixel, needed for `mm2`)."""
        if self.unit == "px":
            return self.value
        if pixel_size_mm is None:
            raise ValueError("needs pixel_size_mm")
        return self.value / (pixel_size_mm * pixel_size_mm)

    def __str__(self) -> str:
        number = f"{self.value:g}"
        return number if self.unit == "px" else f"{number} {self.unit}"


def _area(value: Any) -> Area:
    if isinstance(value, Area):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"an area is a number of pixels or a text such as '2.5 mm2', not {value!r}")
    if isinstance(value, str):
        match = _AREA.match(value)
        if not match:
            raise ValueError(f"area {value!r}: write a number of pixels (e.g. 300) or '<number> mm2'")
        number, unit = float(match.group(1)), "mm2" if match.group(2) and match.group(2) != "px" else "px"
    else:
        number, unit = float(value), "px"
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"area {value!r} must be a finite number of at least 0")
    return Area(number, unit)


AreaValue = Annotated[Area, BeforeValidator(_area)]
Count = Annotated[int, Field(ge=0, strict=True)]
PixelSize = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Limits(StrictModel):
    """The limits one minor defect class must keep; every one given must hold (inclusive)."""

    max_area: AreaValue | None = None  # each connected region
    max_total_area: AreaValue | None = None  # the class's regions summed
    max_count: Count | None = None  # number of regions
    min_region_area: AreaValue | None = None  # this class's speck size (default: the object's)

    @model_validator(mode="after")
    def _some_limit(self) -> Limits:
        if self.max_area is None and self.max_total_area is None and self.max_count is None:
            raise config_error("give max_area, max_total_area or max_count (list the class under accept to "
                               "accept it at any size)")
        return self


class ObjectRules(StrictModel):
    """The rules of one object (or the `default` for objects not listed)."""

    forbidden: tuple[str, ...] = ()
    limits: dict[str, Limits] = Field(default_factory=dict)
    accept: tuple[str, ...] = ()
    other_classes: Literal["reject", "accept"] = "reject"
    min_region_area: AreaValue | None = None  # default: the file's
    pixel_size_mm: PixelSize | None = None  # default: the file's

    @model_validator(mode="after")
    def _each_class_once(self) -> ObjectRules:
        seen: dict[str, str] = {}
        for group, names in (("forbidden", self.forbidden), ("limits", tuple(self.limits)), ("accept", self.accept)):
            for index, name in enumerate(names):
                at = (group, name) if group == "limits" else (group, index)
                if name == BACKGROUND:
                    raise config_error(f"{BACKGROUND!r} is not a defect class; leave it out", *at)
                if name in seen:
                    also = "twice" if seen[name] == group else f"in {seen[name]} and in {group}"
                    raise config_error(f"class {name!r} is named {also}; give each class one rule", *at)
                seen[name] = group
        return self

    @property
    def named_classes(self) -> tuple[str, ...]:
        return (*self.forbidden, *self.limits, *self.accept)


class Rules(StrictModel):
    """A rules file: settings for every object, the objects' rules and an optional default."""

    version: Literal[1] = 1
    pixel_size_mm: PixelSize | None = None
    min_region_area: AreaValue = Area(0.0, "px")
    objects: dict[str, ObjectRules] = Field(default_factory=dict)
    default: ObjectRules | None = None

    @model_validator(mode="after")
    def _complete(self) -> Rules:
        if not self.objects and self.default is None:
            raise config_error("no rules: give `objects:` (rules per object) or a `default:`")
        if self.default is not None and self.default.named_classes:
            raise config_error("default rules apply to objects of any class map, so they cannot name classes; "
                               "give other_classes, min_region_area or pixel_size_mm only", "default")
        for name, rules in [*self.objects.items(), ("", self.default)]:
            if rules is None:
                continue
            size = rules.pixel_size_mm or self.pixel_size_mm
            base: tuple[str, ...] = ("objects", name) if name else ("default",)
            areas = [(("min_region_area",), rules.min_region_area)] + [
                (("limits", cls, key), getattr(limit, key)) for cls, limit in rules.limits.items()
                for key in ("max_area", "max_total_area", "min_region_area")]
            for at, area in areas:
                if area is not None and area.unit != "px" and size is None:
                    raise config_error(f"area '{area}' needs pixel_size_mm (mm per pixel) on the object or at the "
                                       "top of the file", *base, *at)
        if self.min_region_area.unit != "px" and self.pixel_size_mm is None:
            raise config_error(f"area '{self.min_region_area}' needs pixel_size_mm (mm per pixel)",
                               "min_region_area")
        return self

    def policies(self, objects: Mapping[str, ClassMap], data: str = "the data set",
                 only: Iterable[str] | None = None) -> dict[str, Policy]:
        """`Policy` of each object in `only` (default: all of `objects`, name -> class map, e.g. a DS
        folder's); InputError for an object of the rules that `objects` lacks, a class name the object
        does not have (listing its classes), or a wanted object with neither rules nor a default."""
        unknown = [name for name in self.objects if name not in objects]
        if unknown:
            raise InputError(f"{self.where('objects', unknown[0])}: object {unknown[0]!r} is not in {data}; "
                             f"its objects: {', '.join(objects) or 'none'}")
        wanted = list(objects) if only is None else list(only)
        missing = [name for name in wanted if name not in objects]
        if missing:
            raise InputError(f"object {missing[0]!r} is not in {data}; its objects: {', '.join(objects) or 'none'}")
        uncovered = [name for name in wanted if name not in self.objects]
        if uncovered and self.default is None:
            shown = ", ".join(uncovered[:5]) + (f" and {len(uncovered) - 5} more" if len(uncovered) > 5 else "")
            raise InputError(f"{self.where()}: no rules for object(s) {shown} of {data}; add them under `objects:`, "
                             "add a `default:` section, or choose the objects that have rules with --object")
        return {name: self._policy(name, objects[name]) for name in wanted}

    def _policy(self, name: str, class_map: ClassMap) -> Policy:
        rules = self.objects.get(name) or self.default
        assert rules is not None  # policies() checked
        size = rules.pixel_size_mm or self.pixel_size_mm
        for group in ("forbidden", "limits", "accept"):
            members = tuple(getattr(rules, group))
            for index, cls in enumerate(members):
                if cls not in class_map.names:
                    at = (group, cls) if group == "limits" else (group, index)
                    raise InputError(f"{self.where('objects', name, *at)}: {cls!r} is not a class of {name}; "
                                     f"its classes: {', '.join(class_map.defects) or 'none'}")
        speck = (rules.min_region_area or self.min_region_area).pixels(size)
        limits = {class_map.index(cls): PixelLimits(
            max_area=None if limit.max_area is None else limit.max_area.pixels(size),
            max_total_area=None if limit.max_total_area is None else limit.max_total_area.pixels(size),
            max_count=limit.max_count,
            min_region_area=None if limit.min_region_area is None else limit.min_region_area.pixels(size),
        ) for cls, limit in rules.limits.items()}
        return Policy(object=name, classes=class_map, min_region_area=speck,
                      forbidden=frozenset(class_map.index(c) for c in rules.forbidden), limits=limits,
                      accept=frozenset(class_map.index(c) for c in rules.accept),
                      reject_others=rules.other_classes == "reject")


@dataclass(frozen=True)
class PixelLimits:
    """One class's limits in pixels (None: no such limit)."""

    max_area: float | None = None
    max_total_area: float | None = None
    max_count: int | None = None
    min_region_area: float | None = None

    @property
    def limited(self) -> bool:
        """True where some maximum is set (a speck size alone limits nothing)."""
        return self.max_area is not None or self.max_total_area is not None or self.max_count is not None


@dataclass(frozen=True)
class Policy:
    """One object's rules resolved against its class map: class indices and pixel areas."""

    object: str
    classes: ClassMap
    min_region_area: float = 0.0
    forbidden: frozenset[int] = frozenset()
    limits: Mapping[int, PixelLimits] = field(default_factory=dict)
    accept: frozenset[int] = frozenset()
    reject_others: bool = True

    def speck_size(self, index: int) -> float:
        """Regions of class `index` smaller than this are ignored."""
        limit = self.limits.get(index)
        own = limit.min_region_area if limit is not None else None
        return self.min_region_area if own is None else own


def load_rules(path: Path) -> Rules:
    """Read and validate a rules file (InputError naming the file and line)."""
    return load_config(Path(path), Rules)
