"""COCO instance/semantic JSON (polygons or RLE): reader and writer.

Source: a `.json` file, or a folder holding exactly one. An image's `file_name` is looked up
relative to the JSON's folder, then in its `images/` subfolder (an absolute `file_name` is used
as is). All annotations of an image become one class-index mask (`coco_masks.rasterize_annotations`:
where shapes overlap, the smaller one wins); images without annotations are defect-free
samples. Box-only annotations have no pixels and are skipped (a file with boxes only is refused).

Classes: the categories ordered by id are classes 1..N; `--classes` instead fixes the order by
name (with or without a leading "background"; every category must be named). A category named
"background" (any case) is class 0. One object:
`--object`, else the JSON file's stem. A sample's defect type is its one category's name,
"combined" where it has several, "good" where it has none.

`export_coco` writes one compact JSON with one annotation per connected region (8-connectivity) of each
class, as compressed RLE, over the DS folder's global classes (category id = global index,
name "object/class", plus "object" and "class" fields). `file_name` is the image's path relative
to the JSON's folder (pointing into the DS folder, nothing is copied; an absolute path where no
relative path exists, e.g. another drive). A top-level "defectspectrum" block and per-image
fields (object, name, split, caption, defect_type, synthetic) let this reader restore the DS
folder's objects, class maps and samples exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pycocotools import mask as mask_utils

from defectspectrum.data.classes import (
    BACKGROUND,
    ClassMap,
    class_maps_from_json,
    global_lookup,
)
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import Reader, SourceSample
from defectspectrum.data.formats.coco_masks import (
    has_segmentation,
    rasterize_annotations,
)
from defectspectrum.data.formats.mmseg import class_map_from_names
from defectspectrum.data.sample import GOOD
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import read_json
from defectspectrum.paths import safe_name
from defectspectrum.progress import track
from defectspectrum.regions import regions
from defectspectrum.staging import write_text_new

WRITER_FORMAT = "defectspectrum-coco"
META_KEY = "defectspectrum"
COMBINED = "combined"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith("."))


def _looks_like_coco(path: Path) -> bool:
    try:
        data = read_json(path)
    except InputError:
        return False
    keys = ("images", "annotations", "categories")
    return isinstance(data, dict) and all(isinstance(data.get(k), list) for k in keys)


@dataclass(frozen=True)
class CocoMask:
    """Recipe: the annotations of one image, rasterised at (height, width) (None: the image's size)."""

    path: Path
    annotations: tuple[dict[str, Any], ...]
    category_to_index: dict[int, int]
    height: int | None
    width: int | None


@register
class CocoReader(Reader):
    """A COCO JSON with polygon or RLE segmentations (and COCO files this package exported)."""

    name = "coco"
    summary = "COCO JSON (polygons / RLE): a .json file or a folder holding one; images beside it or in images/"
    reads_files: ClassVar[bool] = True

    def __init__(self, root: Path, classes: list[str] | None = None, object_name: str | None = None) -> None:
        root = Path(root)
        if root.is_file():
            self.root = root
            self.json_path = root
        else:
            super().__init__(root)
            found = _json_files(root)
            if len(found) != 1:
                listed = ", ".join(p.name for p in found) or "none"
                raise FormatError(f"{root}: a COCO folder must hold exactly one .json file (found: {listed}); "
                                  "pass the annotation file itself")
            self.json_path = found[0]
        data = read_json(self.json_path)
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
            raise FormatError(f"{self.json_path}: not a COCO file (needs 'images' and 'categories' lists)")
        if not isinstance(data.get("annotations", []), list):
            raise FormatError(f"{self.json_path}: 'annotations' must be a list")
        meta = data.get(META_KEY)
        self.restoring = isinstance(meta, dict) and meta.get("format") == WRITER_FORMAT
        if self.restoring and (classes or object_name):
            raise InputError(f"{self.json_path}: this file was exported by defectspectrum and restores its own "
                             "objects and classes; drop --classes and --object")
        categories = self._categories(data["categories"])
        if self.restoring:
            assert isinstance(meta, dict)
            self._maps, self._category_object, self._category_index = self._restore_classes(meta, categories)
        else:
            self.object = object_name or safe_name(self.json_path.name.removesuffix(".json"))
            class_map, index = self._plain_classes(categories, classes)
            self._maps = {self.object: class_map}
            self._category_object = dict.fromkeys(categories, self.object)
            self._category_index = index
        self._category_names = {cid: category["name"] for cid, category in categories.items()}
        self._images, self._by_image = self._index_images(data)

    def __getstate__(self) -> dict[str, Any]:
        # Workers only need recipes: leave the parsed file behind.
        return {k: v for k, v in self.__dict__.items() if k not in ("_images", "_by_image")}

    @classmethod
    def detect(cls, root: Path) -> bool:
        if root.is_file():
            return root.suffix.lower() == ".json"
        found = _json_files(root)
        return len(found) == 1 and _looks_like_coco(found[0])

    # -- parsing -------------------------------------------------------------------------------

    def _categories(self, entries: list[Any]) -> dict[int, dict[str, Any]]:
        categories: dict[int, dict[str, Any]] = {}
        for entry in entries:
            if not (isinstance(entry, dict) and _is_int(entry.get("id")) and isinstance(entry.get("name"), str)):
                raise FormatError(f"{self.json_path}: category {entry!r} needs an integer 'id' and a string 'name'")
            if entry["id"] in categories:
                raise FormatError(f"{self.json_path}: category id {entry['id']} appears twice; make ids unique")
            categories[entry["id"]] = entry
        return dict(sorted(categories.items()))

    def _plain_classes(self, categories: dict[int, dict[str, Any]],
                       classes: list[str] | None) -> tuple[ClassMap, dict[int, int]]:
        def is_background(name: str) -> bool:
            return name.strip().lower() == BACKGROUND

        if classes:
            class_map = class_map_from_names(classes, "--classes")
        else:
            names = [c["name"] for c in categories.values() if not is_background(c["name"])]
            class_map = class_map_from_names(names, str(self.json_path))
        index = {}
        for cid, category in categories.items():
            name = category["name"].strip()
            if is_background(name):
                index[cid] = 0
            elif name in class_map.defects:
                index[cid] = class_map.index(name)
            else:
                raise FormatError(f"{self.json_path}: category {name!r} is not in --classes "
                                  f"{list(class_map.defects)}; add it")
        return class_map, index

    def _restore_classes(self, meta: dict[str, Any], categories: dict[int, dict[str, Any]]
                         ) -> tuple[dict[str, ClassMap], dict[int, str], dict[int, int]]:
        maps = class_maps_from_json(meta.get("objects"), f"{self.json_path} ({META_KEY})", FormatError)
        owner, index = {}, {}
        for cid, category in categories.items():
            object_name, class_name = category.get("object"), category.get("class")
            if object_name not in maps or class_name not in maps[object_name].names[1:]:
                raise FormatError(f"{self.json_path}: category {cid} names object/class {object_name!r}/{class_name!r} "
                                  f"not in '{META_KEY}.objects'; re-export the file")
            owner[cid], index[cid] = object_name, maps[object_name].index(class_name)
        return maps, owner, index

    def _index_images(self, data: dict[str, Any]) -> tuple[dict[int, dict[str, Any]], dict[int, list[dict[str, Any]]]]:
        images: dict[int, dict[str, Any]] = {}
        for entry in data["images"]:
            if not (isinstance(entry, dict) and _is_int(entry.get("id")) and isinstance(entry.get("file_name"), str)):
                raise FormatError(f"{self.json_path}: image {entry!r} needs an integer 'id' and a string 'file_name'")
            if entry["id"] in images:
                raise FormatError(f"{self.json_path}: image id {entry['id']} appears twice; make ids unique")
            images[entry["id"]] = entry
        by_image: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
        for number, annotation in enumerate(data.get("annotations", []), start=1):
            if not isinstance(annotation, dict):
                raise FormatError(f"{self.json_path}: annotation #{number} must be a JSON object")
            label = f"{self.json_path}: annotation {annotation.get('id', f'#{number}')}"
            if annotation.get("image_id") not in images:
                raise FormatError(f"{label}: image_id {annotation.get('image_id')!r} is not among the images")
            category = annotation.get("category_id")
            if category not in self._category_index:
                raise FormatError(f"{label}: category_id {category!r} is not among the categories "
                                  f"{sorted(self._category_index)}; fix the annotation or add the category")
            by_image[annotation["image_id"]].append(annotation)
        annotations = [a for group in by_image.values() for a in group]
        if annotations and not any(has_segmentation(a) for a in annotations):
            raise FormatError(f"{self.json_path}: the annotations hold bounding boxes only, no segmentation; "
                              "a class-index mask needs polygons or RLE")
        return images, by_image

    # -- Reader API ----------------------------------------------------------------------------

    def class_maps(self) -> dict[str, ClassMap]:
        return dict(self._maps)

    def _image_path(self, entry: dict[str, Any]) -> Path:
        file_name = entry["file_name"]
        base = self.json_path.parent
        candidates = ([Path(file_name)] if Path(file_name).is_absolute()
                      else [base / file_name, base / "images" / file_name])
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        looked = " or ".join(str(c) for c in candidates)
        raise FormatError(f"{self.json_path}: image {file_name!r} (id {entry['id']}) not found at {looked}; "
                          "put the image there or fix its file_name")

    def samples(self) -> Iterator[SourceSample]:
        for image_id, entry in self._images.items():
            annotations = self._by_image[image_id]
            image = self._image_path(entry)
            object_name = self._object_of(entry, annotations)
            category_to_index = {cid: index for cid, index in self._category_index.items()
                                 if self._category_object[cid] == object_name}
            height, width = entry.get("height"), entry.get("width")
            sized = _is_int(height) and _is_int(width)
            recipe = CocoMask(self.json_path, tuple(annotations), category_to_index,
                              height if sized else None, width if sized else None) if annotations else None
            if self.restoring:
                name = entry.get("name")
                yield SourceSample(object_name, name if isinstance(name, str) else Path(entry["file_name"]).stem,
                                   image, recipe, entry.get("defect_type"), entry.get("split"), entry.get("caption"),
                                   bool(entry.get("synthetic", False)))
            else:
                names = sorted({self._category_names[a["category_id"]] for a in annotations
                                if self._category_index[a["category_id"]] != 0})
                defect_type = GOOD if not names else names[0] if len(names) == 1 else COMBINED
                split, caption = entry.get("split"), entry.get("caption")
                yield SourceSample(object_name, Path(entry["file_name"]).stem, image, recipe, defect_type,
                                   split if isinstance(split, str) else None,
                                   caption if isinstance(caption, str) else None)

    def _object_of(self, entry: dict[str, Any], annotations: list[dict[str, Any]]) -> str:
        if not self.restoring:
            return self.object
        object_name = entry.get("object")
        if object_name not in self._maps:
            raise FormatError(f"{self.json_path}: image {entry['id']} names unknown object {object_name!r}; "
                              "re-export the file")
        for annotation in annotations:
            if self._category_object[annotation["category_id"]] != object_name:
                raise FormatError(f"{self.json_path}: annotation {annotation.get('id', '?')} of image {entry['id']} "
                                  f"(object {object_name!r}) has category {annotation['category_id']} of object "
                                  f"{self._category_object[annotation['category_id']]!r}; fix the file")
        return object_name

    def load_mask(self, sample: SourceSample, size: tuple[int, int]) -> np.ndarray:
        recipe = sample.mask
        if not isinstance(recipe, CocoMask):
            return super().load_mask(sample, size)
        height, width = size
        if recipe.height is not None and recipe.width is not None:
            height, width = recipe.height, recipe.width
        return rasterize_annotations(recipe.annotations, height, width, recipe.category_to_index,
                                     where=str(recipe.path))

    def empty_error(self) -> FormatError:
        return FormatError(f"{self.json_path}: lists no images; check the file")


# -- writer ------------------------------------------------------------------------------------


def _file_name(image: Path, base: Path) -> str:
    """`image` relative to `base` with '/' separators, or absolute where no relative path exists."""
    image = Path(os.path.abspath(image))
    try:
        return Path(os.path.relpath(image, os.path.abspath(base))).as_posix()
    except ValueError:  # another drive (Windows)
        return image.as_posix()


def region_annotation(region: np.ndarray) -> dict[str, Any]:
    """Segmentation (compressed RLE, counts as str), area and bbox of one bool region."""
    rle = mask_utils.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": int(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)]}


def export_coco(folder: DSFolder, dst: Path) -> Path:
    """Write `folder` as one COCO JSON at `dst` (a new `.json` file); images stay where they are."""
    dst = Path(dst)
    if dst.suffix.lower() != ".json":
        raise InputError(f"{dst}: a COCO export is one .json file; give a path ending in .json")
    if dst.exists():
        raise InputError(f"{dst}: exists; choose a new file name (export never overwrites)")
    lookup = global_lookup(folder.objects)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, sample in enumerate(track(list(folder), "exporting coco"), start=1):
        image_path = folder.checked_image_path(sample)
        mask = folder.load_checked_mask(sample)
        height, width = mask.shape
        images.append({"id": image_id, "file_name": _file_name(image_path, dst.parent), "height": height,
                       "width": width, "sample_id": sample.id, "object": sample.object, "name": sample.name,
                       "split": sample.split, "caption": sample.caption, "defect_type": sample.defect_type,
                       "synthetic": sample.synthetic})
        table = lookup[sample.object]
        for region in regions(mask):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(table[region.class_index]),
                                **region_annotation(region.binary()), "iscrowd": 0})
    categories = [{"id": e.index, "name": e.label, "supercategory": e.object, "object": e.object, "class": e.name}
                  for e in folder.global_classes()[1:]]
    document = {
        "info": {"description": f"{folder.name}, exported by defectspectrum", "version": "1"},
        "licenses": [],
        META_KEY: {"format": WRITER_FORMAT, "version": 1, "name": folder.name,
                   "objects": {name: {"classes": list(cm.names)} for name, cm in folder.objects.items()}},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    compact = json.dumps(document, ensure_ascii=False, separators=(",", ":"))  # compact: exports get big
    write_text_new(dst, compact + "\n")  # never replaces a file that appeared meanwhile
    return dst
