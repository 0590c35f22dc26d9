"""Template captions from class-index masks: object, defect classes, counts, sizes and positions.

"A pill with 2 defects: a large color stain near the center and a small crack in the top-left."
"A defect-free wood surface."

Regions are 8-connected components per class (as in `data stats`). Size is the region's share of
the image: small < 0.25 %, medium < 1.5 %, large otherwise (about the terciles of MVTec AD region
areas). Position is the 3 x 3 cell holding the region's centroid. Regions of the same class, size
and position are merged ("2 small scratches on the left"); phrases are ordered by their largest
region, biggest first, and at most MAX_PHRASES are spelled out. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.progress import track
from defectspectrum.regions import regions

SMALL_MAX = 0.0025  # area fraction below which a region is "small"
MEDIUM_MAX = 0.015  # ... below which it is "medium"; at or above: "large"
MAX_PHRASES = 4
TEXTURES = frozenset({"carpet", "grid", "leather", "tile", "wood", "fabric", "cotton_fabric", "magnetic_tile",
                      "steel", "strip_steel", "dagm"})
POSITIONS = (("top-left", "top", "top-right"), ("left", "center", "right"), ("bottom-left", "bottom", "bottom-right"))
_PREPOSITION = {"top": "at the top", "bottom": "at the bottom", "left": "on the left", "right": "on the right",
                "center": "near the center"}
# class names that read as adjectives get a noun
_CLASS_NOUNS = {"color": "color stain", "colour": "colour stain", "bent": "bent part", "broken": "broken part",
                "combined": "combined defect", "missing": "missing part", "messy": "messy part",
                "misplaced": "misplaced part", "rough": "rough patch", "texture": "texture defect",
                "defective": "defect", "liquid": "liquid stain", "pill_type": "wrong pill type",
                "broken_large": "major break", "broken_small": "minor break", "scratch_head": "head scratch",
                "scratch_neck": "neck scratch", "thread_side": "side thread damage", "thread_top": "top thread damage"}


@dataclass(frozen=True)
class DescribedRegion:
    """One connected defect region."""

    class_index: int
    area: int
    size: str
    position: str


def size_word(fraction: float) -> str:
    """small / medium / large for a region covering `fraction` of the image."""
    return "small" if fraction < SMALL_MAX else "medium" if fraction < MEDIUM_MAX else "large"


def position_word(cx: float, cy: float, width: int, height: int) -> str:
    """The 3 x 3 grid cell (top-left ... center ... bottom-right) of the point (cx, cy)."""
    col = min(2, max(0, int(cx * 3 / width)))
    row = min(2, max(0, int(cy * 3 / height)))
    return POSITIONS[row][col]


def caption_regions(mask: np.ndarray) -> list[DescribedRegion]:
    """Every 8-connected region of every class in `mask`, biggest first (ties: class, position)."""
    height, width = mask.shape
    found = [DescribedRegion(r.class_index, r.area, size_word(r.area / (height * width)),
                    position_word(r.centroid[0], r.centroid[1], width, height)) for r in regions(mask)]
    order = {name: i for i, name in enumerate(p for row in POSITIONS for p in row)}
    return sorted(found, key=lambda r: (-r.area, r.class_index, order[r.position]))


def object_phrase(object_name: str) -> str:
    """"pill", "metal nut", "wood surface": the object as a noun phrase."""
    words = object_name.replace("_", " ").replace("-", " ").strip().lower()
    return f"{words} surface" if object_name.lower() in TEXTURES else words


def class_noun(name: str) -> str:
    """A class name as a noun ("color" -> "color stain", "broken_large" -> "broken large")."""
    return _CLASS_NOUNS.get(name.lower(), name.replace("_", " ").replace("-", " ").lower())


def plural(noun: str) -> str:
    """English plural of the last word of `noun` (crack -> cracks, scratch -> scratches)."""
    if noun.endswith(("teeth", "damage")):
        return noun
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    return noun + "s"


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _where(position: str) -> str:
    return _PREPOSITION.get(position, f"in the {position}")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def template_caption(object_name: str, class_map: ClassMap, mask: np.ndarray) -> str:
    """A one-sentence description of `mask` (class indices of `class_map`) on `object_name`."""
    thing = object_phrase(object_name)
    found = caption_regions(np.asarray(mask))
    if not found:
        return f"A defect-free {thing}."
    groups: dict[tuple[int, str, str], int] = {}
    for region in found:  # insertion order = biggest region first
        key = (region.class_index, region.size, region.position)
        groups[key] = groups.get(key, 0) + 1
    phrases = []
    for (index, size, position), count in list(groups.items())[:MAX_PHRASES]:
        noun = class_noun(class_map[index]) if index < len(class_map) else f"unknown defect {index}"
        quantity = f"{article(size)} {size} {noun}" if count == 1 else f"{count} {size} {plural(noun)}"
        phrases.append(f"{quantity} {_where(position)}")
    rest = sum(list(groups.values())[MAX_PHRASES:])
    if rest:
        phrases.append(f"{rest} more")
    head = f"{article(thing).capitalize()} {thing}"
    if len(found) == 1:
        return f"{head} with {phrases[0]}."
    return f"{head} with {len(found)} defects: {_join(phrases)}."


def caption_folder(folder: DSFolder, replace_existing: bool = False) -> int:
    """Write template captions into `folder`'s samples (the caller saves); returns how many were written.

    Samples that already have a caption (e.g. from DS-MVTec's captions.xlsx) keep it unless
    `replace_existing`.
    """
    todo = [s for s in folder if replace_existing or not (s.caption or "").strip()]
    updated = []
    for sample in track(todo, "captions"):
        mask = folder.load_mask(sample)
        updated.append(sample.replace(caption=template_caption(sample.object, folder.objects[sample.object], mask)))
    folder.update(updated)
    return len(updated)
