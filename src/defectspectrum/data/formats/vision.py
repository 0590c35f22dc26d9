"""VISION V1 (the 14 VISION workshop data sets) in its native layout.

```
<root>/<Dataset>/train/_annotations.coco.json   + the images it lists (beside it)
<root>/<Dataset>/val/_annotations.coco.json     + images
<root>/<Dataset>/inference/...                  unlabelled: skipped
```
`<root>` may also be one data set folder. Object = the data set folder name (Capacitor, Console, ...).

- Splits: `train/` -> train, `val/` (or Roboflow's `valid/`) -> val, a labelled `test/` -> test.
  `inference/` holds no labels, so its images are never converted.
- Classes: the COCO categories of the data set (union over its splits) in category-id order.
  Roboflow exports carry a dummy category named after the others' supercategory (e.g. id 0
  "defects"); a category that is some other category's `supercategory` and has no annotation in
  any split is dropped. One id with two names is a FormatError.
- Masks: ALL annotations of an image are rasterised into one class-index mask (the official
  converter keeps only the last one) by `coco_masks.rasterize_annotations`: polygons and RLE,
  larger areas painted first so the smaller annotation wins where two overlap, equal areas by
  annotation id (higher id wins). The mask is drawn at the image entry's width/height (the image
  file's size where the entry gives neither). Sizes and geometry are checked before anything is
  rasterised, and a `file_name` is read only inside the root folder (`coco_masks`).
- An image of a labelled split with no annotation is defect-free (defect_type "good"). An image
  whose annotations are all bounding boxes without segmentation has no pixel label and is left
  out (it is neither defect-free nor segmented) and counted in `skipped`, which `data convert`
  prints. Otherwise defect_type is its one category's
  name, or "combined" where it has several (as the generic `coco` reader and MVTec do).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectspectrum.data.classes import BACKGROUND, ClassMap
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import Reader, SourceSample
from defectspectrum.data.formats.coco_masks import (
    ImageLocator,
    has_segmentation,
    image_entry_size,
    rasterize_annotations,
)
from defectspectrum.data.sample import GOOD
from defectspectrum.errors import FormatError
from defectspectrum.io import read_json

ANNOTATIONS_FILE = "_annotations.coco.json"
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "test": "test"}  # folder -> DS split
COMBINED = "combined"  # defect_type of an image with annotations of several categories


@dataclass(frozen=True)
class CocoImageMask:
    """Recipe: the annotations of one image in a COCO file, drawn into one class-index mask."""

    path: Path  # the annotation file (named in errors)
    file_name: str
    annotations: tuple[dict[str, Any], ...]
    height: int | None
    width: int | None
    category_to_index: tuple[tuple[int, int], ...]


@dataclass
class _Split:
    """One parsed, checked `_annotations.coco.json`."""

    path: Path
    images: list[dict[str, Any]]
    categories: dict[int, dict[str, Any]]
    annotations: dict[Any, list[dict[str, Any]]]  # image id -> its annotations, in file order


def _is_dataset(folder: Path) -> bool:
    return any((folder / name / ANNOTATIONS_FILE).is_file() for name in ("train", "val"))


def _list_of_objects(data: dict[str, Any], key: str, path: Path, required: bool) -> list[dict[str, Any]]:
    value = data.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise FormatError(f"{path}: '{key}' must be a list of objects; is this a COCO annotation file?")
    return value


def _read_split(path: Path) -> _Split:
    data = read_json(path)
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a COCO object with images, annotations and categories")
    images = _list_of_objects(data, "images", path, required=True)
    categories: dict[int, dict[str, Any]] = {}
    for category in _list_of_objects(data, "categories", path, required=True):
        cid, name = category.get("id"), category.get("name")
        if not isinstance(cid, int) or not isinstance(name, str) or not name.strip():
            raise FormatError(f"{path}: category {category!r} needs an integer 'id' and a non-empty 'name'")
        if name == BACKGROUND:
            raise FormatError(f"{path}: category {cid} is named {BACKGROUND!r}, which is reserved for index 0; "
                              "rename it")
        if cid in categories:
            raise FormatError(f"{path}: category id {cid} is listed twice; give each category its own id")
        categories[cid] = category
    image_ids = set()
    for image in images:
        if not isinstance(image.get("id"), (int, str)) or not isinstance(image.get("file_name"), str):
            raise FormatError(f"{path}: image entry {image!r} needs an integer or string 'id' and a 'file_name'")
        if image["id"] in image_ids:
            raise FormatError(f"{path}: image id {image['id']!r} is listed twice; give each image its own id")
        image_ids.add(image["id"])
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for annotation in _list_of_objects(data, "annotations", path, required=False):
        category_id = annotation.get("category_id")
        if not isinstance(category_id, int) or category_id not in categories:
            raise FormatError(f"{path}: annotation {annotation.get('id', '?')} has category_id "
                              f"{annotation.get('category_id')!r}, which is not among the categories "
                              f"{sorted(categories)}; fix the annotation or add the category")
        image_id = annotation.get("image_id")
        if not isinstance(image_id, (int, str)) or image_id not in image_ids:
            raise FormatError(f"{path}: annotation {annotation.get('id', '?')} refers to image_id "
                              f"{annotation.get('image_id')!r}, which is not among the images; fix the file")
        by_image.setdefault(image_id, []).append(annotation)
    return _Split(path, images, categories, by_image)


@register
class VisionReader(Reader):
    """VISION V1: COCO annotation files per data set and split; object = data set folder."""

    name = "vision"
    summary = "VISION V1 native layout: <Dataset>/{train,val}/_annotations.coco.json + images (inference/ skipped)"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        if _is_dataset(self.root):
            self.datasets = [self.root]
        else:
            self.datasets = sorted(p for p in self.root.iterdir() if p.is_dir() and _is_dataset(p))
        if not self.datasets:
            raise FormatError(f"{self.root}: no VISION data set (a folder with train/ or val/ holding "
                              f"{ANNOTATIONS_FILE}) found; check the folder or the --from format")
        self._locator = ImageLocator(self.root)

    @classmethod
    def detect(cls, root: Path) -> bool:
        return _is_dataset(root) or any(p.is_dir() and _is_dataset(p) for p in root.iterdir())

    def _splits(self, dataset: Path) -> list[tuple[str, _Split]]:
        found = []
        for folder, split in SPLIT_FOLDERS.items():
            path = dataset / folder / ANNOTATIONS_FILE
            if path.is_file():
                found.append((split, _read_split(path)))
        return found

    def _class_map(self, splits: list[tuple[str, _Split]]) -> tuple[ClassMap, dict[str, int]]:
        names: dict[int, tuple[str, Path]] = {}
        used: set[str] = set()
        supercategories: set[str] = set()
        for _, split in splits:
            for cid, category in split.categories.items():
                name = category["name"]
                if cid in names and names[cid][0] != name:
                    raise FormatError(f"{split.path}: category id {cid} is {name!r} here but {names[cid][0]!r} in "
                                      f"{names[cid][1]}; make the category lists agree")
                names.setdefault(cid, (name, split.path))
                parent = category.get("supercategory")
                if isinstance(parent, str) and parent != name:
                    supercategories.add(parent)
            used.update(split.categories[a["category_id"]]["name"]
                        for annotations in split.annotations.values() for a in annotations)
        ordered: list[str] = []
        for cid in sorted(names):
            name = names[cid][0]
            if name in ordered or (name in supercategories and name not in used):
                continue
            ordered.append(name)
        class_map = ClassMap.from_defects(ordered)
        return class_map, {name: class_map.index(name) for name in ordered}

    def class_maps(self) -> dict[str, ClassMap]:
        return {dataset.name: self._class_map(self._splits(dataset))[0] for dataset in self.datasets}

    def samples(self) -> Iterator[SourceSample]:
        self.skipped = 0
        for dataset in self.datasets:
            splits = self._splits(dataset)
            class_map, index_of = self._class_map(splits)
            for split_name, split in splits:
                lookup = {cid: index_of[c["name"]] for cid, c in split.categories.items() if c["name"] in index_of}
                yield from self._split_samples(dataset.name, split_name, split, class_map, lookup)

    def _split_samples(self, object_name: str, split_name: str, split: _Split, class_map: ClassMap,
                       lookup: dict[int, int]) -> Iterator[SourceSample]:
        folder = split.path.parent
        for image in split.images:
            file_name = image["file_name"]
            where = f"{split.path} (image {file_name})"
            path = self._locator.find(file_name, [folder], f"{split.path}")
            name = f"{split_name}_{Path(file_name).with_suffix('').as_posix()}"
            annotations = [a for a in split.annotations.get(image["id"], []) if has_segmentation(a)]
            if not annotations:
                if split.annotations.get(image["id"]):
                    self.skipped += 1  # bounding boxes only: no pixel label (see the module docstring)
                    continue
                yield SourceSample(object_name, name, path, None, GOOD, split_name)
                continue
            indices = {lookup[a["category_id"]] for a in annotations}
            defect_type = class_map[indices.pop()] if len(indices) == 1 else COMBINED
            size = image_entry_size(image, where)
            height, width = size if size is not None else (None, None)
            recipe = CocoImageMask(split.path, file_name, tuple(annotations), height, width,
                                   tuple(sorted(lookup.items())))
            yield SourceSample(object_name, name, path, recipe, defect_type, split_name)

    def load_mask(self, sample: SourceSample, size: tuple[int, int]) -> np.ndarray:
        recipe = sample.mask
        if isinstance(recipe, CocoImageMask):
            height, width = (recipe.height, recipe.width) if recipe.height and recipe.width else size
            return rasterize_annotations(recipe.annotations, height, width, dict(recipe.category_to_index),
                                         where=f"{recipe.path} (image {recipe.file_name})")
        return super().load_mask(sample, size)
