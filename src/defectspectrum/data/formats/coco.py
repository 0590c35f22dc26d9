"""COCO instance annotations (polygons or RLE): reader, and writer of the standard COCO layout.

Source (`data convert --from coco SOURCE ...`), one of:

- a folder in the standard layout: `annotations/instances_<split>.json` (every such file is read)
  with the images in `images/<split>/` (as datumaro and this writer lay it out) or `<split>/`
  (COCO 2017: `train2017/`); the `annotations/` folder itself is read the same way;
- one `.json` file, or a folder holding exactly one.

An image's `file_name` is looked up in `images/<split>/`, `<split>/` (for `instances_<split>.json`
files), the JSON's folder, its `images/` subfolder, the data set folder and its `images/` (the data
set folder is the one holding `annotations/`, else the JSON's folder); `--images DIR` replaces
them all with `DIR` and `DIR/<split>/`. A `file_name` is only ever read inside the data set
folder (or DIR): one that is absolute (unless it lies under DIR) or leads out through `..` or a
symbolic link is a FormatError, so a crafted file cannot make a conversion copy files from
elsewhere. Sizes and geometry are checked before anything is rasterised (see `coco_masks`).

All annotations of an image become one class-index mask (`coco_masks.rasterize_annotations`:
where shapes overlap, the smaller one wins); images without annotations are defect-free
samples. Box-only annotations have no pixels and are skipped; an image with box-only annotations
alone has no pixel label and is left out, counted in `skipped` (which `data convert` prints), never
made a defect-free sample (a file with boxes only is refused).

Classes: the categories (the union over the files; one id must keep one name) ordered by id are
classes 1..N; `--classes` instead fixes the order by name (with or without a leading
"background"; every category must be named). A category named "background" (any case) is class
0. One object: `--object`, else the data set folder's name for `instances_<split>.json` files,
else the JSON file's stem. A sample's split is the image entry's "split" (a string), else the
file's `<split>`: `train`, `val`/`valid`/`validation` and `test` (a trailing year dropped:
`train2017` is train), `unsplit`/`default`/`all` for none, any other name kept as it is. A
sample's defect type is its one category's name, "combined" where it has several, "good" where
it has none.

`export_coco` writes the standard layout into a new folder:
```
OUT/annotations/instances_<split>.json   one per split (train, val, test, ...); samples without a
                                        split go to instances_unsplit.json
OUT/images/<split>/<object>_<name>.<ext> the images, copied byte for byte (or hard-linked with
                                        `link=True`, a copy where the file system refuses)
```
`file_name` is the bare file name (relative to `images/<split>/`, as COCO does); names are
sanitised and unique per split (ignoring case and extension), and so are the `<split>`s (a split
`Train` beside `train` is written as `Train-2`: one folder on case-insensitive file systems). Each
JSON lists every category (the DS folder's global classes: id = global index, name "object/class",
plus "object" and "class" fields) and holds one annotation per connected region (8-connectivity) of
each class: as compressed RLE, or with `polygons=True` (for tools that read no RLE, such as Label
Studio's converter) as ONE polygon along the region's pixel corners that pycocotools rasterises
back to exactly the region. COCO polygons have no holes: a region's holes are joined into its
outline by zero-width vertical cuts (walked down and up again), which pycocotools' parity fill and
non-zero fills draw as holes; tools that require simple polygons (shapely) see such a polygon as
self-touching. Each polygon is rasterised back before it is written; a region where that does not
give its exact pixels, or whose outline is longer than the reader accepts
(`coco_masks.outline_limit`), is written as RLE, counted in the JSON's
`defectspectrum.rle_regions`.
A top-level "defectspectrum" block and per-image fields (object, name, split, caption,
defect_type, synthetic) let this reader restore the DS folder's objects, class maps and samples
exactly, from the folder or from any one of its JSON files.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Iterator
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
    ImageLocator,
    decode_rle,
    has_segmentation,
    image_entry_size,
    outline_limit,
    rasterize_annotations,
    short,
)
from defectspectrum.data.formats.mmseg import class_map_from_names
from defectspectrum.data.sample import GOOD, SPLITS, UNSPLIT, Sample, split_folder_names
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import read_json
from defectspectrum.json_stream import ArraySpool, write_object
from defectspectrum.paths import output_path, safe_name, unique_name
from defectspectrum.progress import track
from defectspectrum.regions import Region, regions
from defectspectrum.staging import require_new_folder, staged_folder

WRITER_FORMAT = "defectspectrum-coco"
META_KEY = "defectspectrum"
COMBINED = "combined"
ANNOTATIONS_DIR = "annotations"
IMAGES_DIR = "images"
_INSTANCES = re.compile(r"^instances_(.+)\.json$")
_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_NO_SPLIT_NAMES = (UNSPLIT, "default", "all")
_IMAGES_HINT = ", or pass --images DIR (the folder that holds the images)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith("."))


def _instance_files(folder: Path) -> list[tuple[Path, str]]:
    """`instances_<split>.json` files in `folder` with their `<split>`."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        match = _INSTANCES.match(path.name)
        if match and path.is_file():
            found.append((path, match.group(1)))
    return found


def _looks_like_coco(path: Path) -> bool:
    try:
        data = read_json(path)
    except InputError:
        return False
    keys = ("images", "annotations", "categories")
    return isinstance(data, dict) and all(isinstance(data.get(k), list) for k in keys)


def split_of(token: str | None) -> str | None:
    """The DS split of the `<split>` in `instances_<split>.json` (see the module docstring)."""
    if token is None or token.lower() in _NO_SPLIT_NAMES:
        return None
    return _SPLIT_NAMES.get(re.sub(r"\d{4}$", "", token.lower()), token)


def _locate_sources(root: Path) -> tuple[Path, list[tuple[Path, str | None]]]:
    """(the data set folder, [(annotation file, its `<split>` or None)]) of a COCO source."""
    if root.is_file():
        match = _INSTANCES.match(root.name)
        folder = root.parent
        base = folder.parent if folder.name == ANNOTATIONS_DIR and match else folder
        return base, [(root, match.group(1) if match else None)]
    found = _instance_files(root / ANNOTATIONS_DIR)
    if found:
        return root, list(found)
    if root.name == ANNOTATIONS_DIR and (found := _instance_files(root)):
        return root.parent, list(found)
    jsons = _json_files(root)
    if len(jsons) != 1:
        listed = ", ".join(p.name for p in jsons) or "none"
        raise FormatError(f"{root}: a COCO folder must hold {ANNOTATIONS_DIR}/instances_<split>.json files or exactly "
                          f"one .json file (found: {listed}); pass the annotation file itself")
    match = _INSTANCES.match(jsons[0].name)
    return root, [(jsons[0], match.group(1) if match else None)]


@dataclass(frozen=True)
class CocoMask:
    """Recipe: the annotations of one image, rasterised at (height, width) (None: the image's size)."""

    path: Path
    annotations: tuple[dict[str, Any], ...]
    category_to_index: dict[int, int]
    height: int | None
    width: int | None
    image_id: int = 0  # named in errors


@dataclass
class _AnnotationFile:
    """One parsed, checked annotation file."""

    path: Path
    token: str | None  # the <split> of instances_<split>.json
    data: dict[str, Any]
    images: dict[int, dict[str, Any]]
    by_image: dict[int, list[dict[str, Any]]]


@register
class CocoReader(Reader):
    """COCO instance annotations with polygon or RLE segmentations (and COCO folders this package exported)."""

    name = "coco"
    summary = ("COCO instances: a folder with annotations/instances_<split>.json + images/<split>/ (or <split>/), "
               "a .json file, or a folder holding one; --images DIR points at the images")
    reads_files: ClassVar[bool] = True

    def __init__(self, root: Path, classes: list[str] | None = None, object_name: str | None = None,
                 images: Path | None = None) -> None:
        root = Path(root)
        if not root.exists():
            raise InputError(f"{root}: not found; check the path")
        self.root = root
        self.dataset_root, sources = _locate_sources(root)
        self.images_dir = Path(images) if images is not None else None
        if self.images_dir is not None and not self.images_dir.is_dir():
            raise InputError(f"{self.images_dir}: --images must be an existing folder; check the path")
        self.json_path = sources[0][0]
        self._where = str(self.json_path) if len(sources) == 1 else str(self.json_path.parent)  # file-wide errors
        files = [self._read(path, token) for path, token in sources]
        restoring = [self._is_export(f.data) for f in files]
        self.restoring = all(restoring)
        if any(restoring) and not self.restoring:
            raise FormatError(f"{self.dataset_root}: mixes files exported by defectspectrum with other COCO files; "
                              "convert them separately")
        if self.restoring and (classes or object_name):
            raise InputError(f"{self._where}: this file was exported by defectspectrum and restores its own "
                             "objects and classes; drop --classes and --object")
        categories = self._categories(files)
        if self.restoring:
            self._maps, self._category_object, self._category_index = self._restore_classes(files, categories)
        else:
            self.object = object_name or self._default_object(sources)
            class_map, index = self._plain_classes(categories, classes)
            self._maps = {self.object: class_map}
            self._category_object = dict.fromkeys(categories, self.object)
            self._category_index = index
        self._category_names = {cid: category["name"] for cid, category in categories.items()}
        for annotation_file in files:
            self._index(annotation_file)
        annotations = [a for f in files for group in f.by_image.values() for a in group]
        if annotations and not any(has_segmentation(a) for a in annotations):
            raise FormatError(f"{self._where}: the annotations hold bounding boxes only, no segmentation; "
                              "a class-index mask needs polygons or RLE")
        self._files = files
        if self.images_dir is not None:
            self._locator = ImageLocator(self.images_dir, absolute_ok=True)
        else:
            self._locator = ImageLocator(self.dataset_root, hint=_IMAGES_HINT)

    def __getstate__(self) -> dict[str, Any]:
        # Workers only need recipes: leave the parsed files behind.
        return {k: v for k, v in self.__dict__.items() if k not in ("_files", "_locator")}

    @classmethod
    def detect(cls, root: Path) -> bool:
        if root.is_file():
            return root.suffix.lower() == ".json"
        if _instance_files(root / ANNOTATIONS_DIR) or (root.name == ANNOTATIONS_DIR and _instance_files(root)):
            return True
        found = _json_files(root)
        return len(found) == 1 and _looks_like_coco(found[0])

    # -- parsing -------------------------------------------------------------------------------

    @staticmethod
    def _read(path: Path, token: str | None) -> _AnnotationFile:
        data = read_json(path)
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
            raise FormatError(f"{path}: not a COCO file (needs 'images' and 'categories' lists)")
        if data.get("annotations") is None:
            data["annotations"] = []
        if not isinstance(data["annotations"], list):
            raise FormatError(f"{path}: 'annotations' must be a list")
        return _AnnotationFile(path, token, data, {}, {})

    @staticmethod
    def _is_export(data: dict[str, Any]) -> bool:
        meta = data.get(META_KEY)
        return isinstance(meta, dict) and meta.get("format") == WRITER_FORMAT

    def _default_object(self, sources: list[tuple[Path, str | None]]) -> str:
        if all(token is not None for _, token in sources):
            return safe_name(Path(os.path.abspath(self.dataset_root)).name)
        return safe_name(self.json_path.name.removesuffix(".json"))

    def _categories(self, files: list[_AnnotationFile]) -> dict[int, dict[str, Any]]:
        categories: dict[int, dict[str, Any]] = {}
        for annotation_file in files:
            seen: set[int] = set()
            for entry in annotation_file.data["categories"]:
                if not (isinstance(entry, dict) and _is_int(entry.get("id")) and isinstance(entry.get("name"), str)):
                    raise FormatError(f"{annotation_file.path}: category {short(entry)} needs an integer 'id' and a "
                                      "string 'name'")
                cid = entry["id"]
                if cid in seen:
                    raise FormatError(f"{annotation_file.path}: category id {cid} appears twice; make ids unique")
                seen.add(cid)
                if cid in categories and categories[cid]["name"] != entry["name"]:
                    raise FormatError(f"{annotation_file.path}: category id {cid} is {entry['name']!r} here but "
                                      f"{categories[cid]['name']!r} in another file; make the category lists agree")
                categories.setdefault(cid, entry)
        return dict(sorted(categories.items()))

    def _plain_classes(self, categories: dict[int, dict[str, Any]],
                       classes: list[str] | None) -> tuple[ClassMap, dict[int, int]]:
        def is_background(name: str) -> bool:
            return name.strip().lower() == BACKGROUND

        if classes:
            class_map = class_map_from_names(classes, "--classes")
        else:
            names = [c["name"] for c in categories.values() if not is_background(c["name"])]
            class_map = class_map_from_names(names, self._where)
        index = {}
        for cid, category in categories.items():
            name = category["name"].strip()
            if is_background(name):
                index[cid] = 0
            elif name in class_map.defects:
                index[cid] = class_map.index(name)
            else:
                raise FormatError(f"{self._where}: category {name!r} is not in --classes "
                                  f"{list(class_map.defects)}; add it")
        return class_map, index

    def _restore_classes(self, files: list[_AnnotationFile], categories: dict[int, dict[str, Any]]
                         ) -> tuple[dict[str, ClassMap], dict[int, str], dict[int, int]]:
        objects = files[0].data[META_KEY].get("objects")
        for annotation_file in files[1:]:
            if annotation_file.data[META_KEY].get("objects") != objects:
                raise FormatError(f"{annotation_file.path}: its '{META_KEY}.objects' differ from those of "
                                  f"{files[0].path}; the files come from different exports")
        maps = class_maps_from_json(objects, f"{files[0].path} ({META_KEY})", FormatError)
        owner, index = {}, {}
        for cid, category in categories.items():
            object_name, class_name = category.get("object"), category.get("class")
            if object_name not in maps or class_name not in maps[object_name].names[1:]:
                raise FormatError(f"{self._where}: category {cid} names object/class {short(object_name)}/"
                                  f"{short(class_name)} not in '{META_KEY}.objects'; re-export the file")
            owner[cid], index[cid] = object_name, maps[object_name].index(class_name)
        return maps, owner, index

    def _index(self, annotation_file: _AnnotationFile) -> None:
        """Fill the file's images (by id) and annotations (by image id), checking ids and categories."""
        path, images = annotation_file.path, annotation_file.images
        for entry in annotation_file.data["images"]:
            if not (isinstance(entry, dict) and _is_int(entry.get("id")) and isinstance(entry.get("file_name"), str)):
                raise FormatError(f"{path}: image {short(entry)} needs an integer 'id' and a string 'file_name'")
            if entry["id"] in images:
                raise FormatError(f"{path}: image id {entry['id']} appears twice; make ids unique")
            images[entry["id"]] = entry
        by_image: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
        for number, annotation in enumerate(annotation_file.data["annotations"], start=1):
            if not isinstance(annotation, dict):
                raise FormatError(f"{path}: annotation #{number} must be a JSON object")
            ann_id = annotation.get("id", f"#{number}")
            label = f"{path}: annotation {ann_id if _is_int(ann_id) or ann_id == f'#{number}' else short(ann_id)}"
            image_id = annotation.get("image_id")
            if not _is_int(image_id) or image_id not in images:
                raise FormatError(f"{label}: image_id {short(image_id)} is not among the images")
            category = annotation.get("category_id")
            if not _is_int(category) or category not in self._category_index:
                raise FormatError(f"{label}: category_id {short(category)} is not among the categories "
                                  f"{sorted(self._category_index)}; fix the annotation or add the category")
            by_image[image_id].append(annotation)
        annotation_file.by_image = by_image

    # -- Reader API ----------------------------------------------------------------------------

    def class_maps(self) -> dict[str, ClassMap]:
        return dict(self._maps)

    def _image_folders(self, annotation_file: _AnnotationFile) -> list[Path]:
        token = annotation_file.token
        if self.images_dir is not None:
            folders = [self.images_dir] + ([self.images_dir / token] if token else [])
        else:
            root, here = self.dataset_root, annotation_file.path.parent
            folders = [root / IMAGES_DIR / token, root / token] if token else []
            folders += [here, here / IMAGES_DIR, root, root / IMAGES_DIR]
        return list(dict.fromkeys(folders))

    def samples(self) -> Iterator[SourceSample]:
        self.skipped = 0
        for annotation_file in self._files:
            folders = self._image_folders(annotation_file)
            for image_id, entry in annotation_file.images.items():
                where = f"{annotation_file.path}: image {image_id}"
                listed = annotation_file.by_image[image_id]
                annotations = [a for a in listed if has_segmentation(a)]
                if listed and not annotations:
                    self.skipped += 1  # bounding boxes only: no pixel label, neither defective nor defect-free
                    continue
                image = self._locator.find(entry["file_name"], folders, where)
                object_name = self._object_of(entry, annotations, where)
                category_to_index = {cid: index for cid, index in self._category_index.items()
                                     if self._category_object[cid] == object_name}
                size = image_entry_size(entry, where)
                height, width = size if size is not None else (None, None)
                recipe = (CocoMask(annotation_file.path, tuple(annotations), category_to_index, height, width,
                                   image_id) if annotations else None)
                if self.restoring:
                    yield self._restored_sample(entry, object_name, image, recipe, where)
                    continue
                names = sorted({self._category_names[a["category_id"]] for a in annotations
                                if self._category_index[a["category_id"]] != 0})
                defect_type = GOOD if not names else names[0] if len(names) == 1 else COMBINED
                split, caption = entry.get("split"), entry.get("caption")
                yield SourceSample(object_name, Path(entry["file_name"]).stem, image, recipe, defect_type,
                                   split if isinstance(split, str) else split_of(annotation_file.token),
                                   caption if isinstance(caption, str) else None)

    @staticmethod
    def _restored_sample(entry: dict[str, Any], object_name: str, image: Path, recipe: CocoMask | None,
                         where: str) -> SourceSample:
        fields = {key: entry.get(key) for key in ("split", "caption", "defect_type")}
        wrong = [key for key, value in fields.items() if value is not None and not isinstance(value, str)]
        synthetic = entry.get("synthetic", False)
        if not isinstance(synthetic, bool):
            wrong.append("synthetic")
        if wrong:
            raise FormatError(f"{where}: field(s) {', '.join(wrong)} have the wrong type (strings, and a boolean "
                              "'synthetic', expected); re-export the file")
        name = entry.get("name")
        return SourceSample(object_name, name if isinstance(name, str) else Path(entry["file_name"]).stem, image,
                            recipe, fields["defect_type"], fields["split"], fields["caption"], synthetic)

    def _object_of(self, entry: dict[str, Any], annotations: list[dict[str, Any]], where: str) -> str:
        if not self.restoring:
            return self.object
        object_name = entry.get("object")
        if not isinstance(object_name, str) or object_name not in self._maps:
            raise FormatError(f"{where} names unknown object {short(object_name)}; re-export the file")
        for annotation in annotations:
            if self._category_object[annotation["category_id"]] != object_name:
                raise FormatError(f"{where}: annotation {short(annotation.get('id', '?'))} (object {object_name!r}) "
                                  f"has category {annotation['category_id']} of object "
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
                                     where=f"{recipe.path}: image {recipe.image_id}")

    def empty_error(self) -> FormatError:
        return FormatError(f"{self.root}: lists no images; check the file")


# -- writer ------------------------------------------------------------------------------------


def _rle_segmentation(region: Region, height: int, width: int) -> dict[str, Any]:
    """Compressed RLE (counts as str) of one region in its (height, width) image, built from the region's
    bounding box: time grows with the region, not with the image (a mask of a million specks exports
    in seconds, where encoding each at full size took days). Byte for byte what pycocotools' `encode`
    gives for the full-size region."""
    x0, y0 = region.bbox[:2]
    columns = np.pad(region.crop(), ((1, 1), (0, 0))).T.astype(np.int8)  # one row per image column
    edges = np.diff(columns, axis=1)
    start_columns, start_rows = np.nonzero(edges == 1)  # row-major order: by column, then down it
    end_columns, end_rows = np.nonzero(edges == -1)
    starts = (x0 + start_columns) * height + y0 + start_rows  # positions in COCO's column-major order
    ends = (x0 + end_columns) * height + y0 + end_rows
    joined = starts[1:] == ends[:-1]  # a run down to the bottom that goes on at the top of the next column
    starts, ends = starts[np.r_[True, ~joined]], ends[np.r_[~joined, True]]
    bounds = np.empty(2 * len(starts) + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, height * width
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    counts = np.diff(bounds).tolist()
    if counts[-1] == 0:  # the region reaches the last pixel: no closing background run
        counts.pop()
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _boundary_loops(crop: np.ndarray) -> list[list[tuple[int, int]]]:
    """The pixel-edge boundary loops of a bool region, in unit steps: vertices on pixel corners
    ((x, y); a pixel (c, r) spans [c, c+1] x [r, r+1]), walked with the region on the right. Where a
    loop touches itself at a corner (pixels meeting diagonally) it turns left, so that the diagonal
    pixels stay in one loop: an 8-connected region gives one outer loop (the first, which starts at
    the top-left corner of the leftmost column), and one loop for each hole."""
    padded = np.pad(crop, 1)
    inside = padded[1:-1, 1:-1]
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    sides = (  # (open neighbour, edge start, edge end) of each pixel side, as offsets from (c, r)
        (padded[:-2, 1:-1], (0, 0), (1, 0)),  # top, walked to +x
        (padded[1:-1, 2:], (1, 0), (1, 1)),   # right, walked to +y
        (padded[2:, 1:-1], (1, 1), (0, 1)),   # bottom, walked to -x
        (padded[1:-1, :-2], (0, 1), (0, 0)),  # left, walked to -y
    )
    for neighbour, (sx, sy), (ex, ey) in sides:
        rows, cols = np.nonzero(inside & ~neighbour)
        for r, c in zip(rows.tolist(), cols.tolist()):
            edges.setdefault((c + sx, r + sy), []).append((c + ex, r + ey))
    loops = []
    for start in sorted(edges):
        if start not in edges:
            continue  # every edge leaving it is walked already
        loop, here, heading = [start], start, (1, 0)
        while True:
            exits = edges[here]
            if len(exits) > 1:  # a corner where the boundary touches itself: take the left turn
                exits.sort(key=lambda to: heading[0] * (to[1] - here[1]) - heading[1] * (to[0] - here[0]))
            following = exits.pop(0)
            if not exits:
                del edges[here]
            heading = (following[0] - here[0], following[1] - here[1])
            here = following
            if here == start and start not in edges:
                break
            loop.append(here)
        loops.append(loop)
    return loops


def _corners(loop: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The points of `loop` where it changes direction."""
    return [b for a, b, c in zip([loop[-1], *loop[:-1]], loop, [*loop[1:], loop[0]])
            if (b[0] - a[0]) * (c[1] - b[1]) != (b[1] - a[1]) * (c[0] - b[0])]


def _top_left(loop: list[tuple[int, int]]) -> int:
    """The position in `loop` of its topmost (then leftmost) point."""
    return min(range(len(loop)), key=lambda i: (loop[i][1], loop[i][0]))


def _joined_outline(crop: np.ndarray, loops: list[list[tuple[int, int]]]) -> list[tuple[int, int]] | None:
    """One closed walk over every loop: the outer loop, each hole joined in by a vertical cut there
    and back. None where a cut finds no place (the result is checked by the caller anyway).

    Holes are joined topmost first, each from its top-left corner straight up through the region's
    pixels to the first boundary edge above, which belongs to the outer loop or to a hole joined
    already. A vertical cut adds no crossing to pycocotools' column-by-column parity fill, and,
    walked down and up again, it encloses nothing for non-zero fills either.
    """
    points: list[tuple[int, int]] = []
    following: list[int] = []  # a linked list over `points`, so that joining is cheap
    edge_at: dict[tuple[tuple[int, int], tuple[int, int]], int] = {}
    starts = []
    for loop in loops:
        base, count = len(points), len(loop)
        starts.append(base)
        for offset, point in enumerate(loop):
            points.append(point)
            following.append(base + (offset + 1) % count)
            edge_at[(point, loop[(offset + 1) % count])] = base + offset
    tops = {number: _top_left(loop) for number, loop in enumerate(loops) if number}
    for number in sorted(tops, key=lambda n: (loops[n][tops[n]][1], loops[n][tops[n]][0])):
        loop, offset = loops[number], tops[number]
        x, y = loop[offset]
        open_above = np.flatnonzero(~crop[:y, x])
        cut_top = int(open_above[-1]) + 1 if open_above.size else 0
        hit = edge_at.get(((x, cut_top), (x + 1, cut_top)))  # the top side of the pixel the cut ends in
        if hit is None:
            return None
        top, before_top = starts[number] + offset, starts[number] + (offset - 1) % len(loop)
        top_again, hit_again = len(points), len(points) + 1
        points += [loop[offset], points[hit]]
        following += [hit_again, following[hit]]
        following[before_top], following[hit] = top_again, top
    walk, node = [], 0
    while True:
        walk.append(points[node])
        node = following[node]
        if node == 0:
            return walk


def region_polygon(region: Region, image_size: tuple[int, int]) -> list[float] | None:
    """One COCO polygon (image coordinates) that pycocotools rasterises to exactly `region`'s pixels:
    its pixel-corner outline, holes joined in by zero-width vertical cuts (`_joined_outline`). None
    where that does not hold or the outline is longer than the reader accepts for `image_size`."""
    crop = region.crop()
    walk = _joined_outline(crop, _boundary_loops(crop))
    points = _corners(walk) if walk is not None else []
    if len(points) < 3:
        return None
    closed = np.array([*points, points[0]])
    if float(np.abs(np.diff(closed, axis=0)).max(axis=1).sum()) > outline_limit(*image_size):
        return None
    local = [float(v) for point in points for v in point]
    height, width = crop.shape
    drawn = decode_rle(mask_utils.frPyObjects([local], height, width)[0])
    if not np.array_equal(drawn, crop):
        return None
    x0, y0 = region.bbox[:2]
    return [float(v) for x, y in points for v in (x + x0, y + y0)]


def _export_names(samples: Iterable[Sample]) -> Iterator[tuple[Sample, str]]:
    """Each sample with its sanitised image file name `<object>_<name><ext>`, unique within one split
    folder (stems compared without case, so that case-insensitive file systems and datumaro's item ids
    keep them apart), as the samples come: only the stems taken are kept."""
    taken: set[str] = set()
    for sample in samples:
        stem = unique_name(safe_name(f"{sample.object}_{sample.name}"), taken)
        yield sample, stem + Path(sample.image).suffix.lower()


def _place_image(source: Path, target: Path, link: bool) -> None:
    """Copy `source` to `target`, or hard-link it where `link` and the file system allows."""
    if link:
        try:
            os.link(source, target, follow_symlinks=True)
            return
        except OSError:
            pass  # another file system, or links not supported: copy
    shutil.copyfile(source, target)


def _split_key(split: str | None) -> str:
    return UNSPLIT if split is None else safe_name(split)


def export_coco(folder: DSFolder, dst: Path, *, polygons: bool = False, link: bool = False) -> Path:
    """Write `folder` to the new folder `dst` in the standard COCO layout (see the module docstring):
    RLE segmentations, or exact polygons with `polygons`; images copied, or hard-linked with `link`.
    The folder appears complete or not at all."""
    dst = Path(dst)
    require_new_folder(dst)
    if dst.suffix.lower() == ".json":
        raise InputError(f"{dst}: a COCO export is a folder ({ANNOTATIONS_DIR}/instances_<split>.json + "
                         f"{IMAGES_DIR}/<split>/); give a folder name without .json")
    # the split of each sample read from the folder, a pass a split: no list of the samples
    splits = {s.split for s in folder}
    keys = split_folder_names({_split_key(split) for split in splits})
    key_of = {split: keys[_split_key(split)] for split in splits}
    groups = set(key_of.values())
    order = [*(k for k in SPLITS if k in groups), *sorted(k for k in groups if k not in (*SPLITS, UNSPLIT)),
             *([UNSPLIT] if UNSPLIT in groups else [])]
    lookup = global_lookup(folder.objects)
    categories = [{"id": e.index, "name": e.label, "supercategory": e.object, "object": e.object, "class": e.name}
                  for e in folder.global_classes()[1:]]
    objects = {name: {"classes": list(cm.names)} for name, cm in folder.objects.items()}
    image_id = annotation_id = 0
    with staged_folder(dst) as staging:
        annotations_dir = output_path(staging, ANNOTATIONS_DIR)
        annotations_dir.mkdir(parents=True, exist_ok=True)
        tasks = ((key, sample, name) for key in order
                 for sample, name in _export_names(s for s in folder if key_of[s.split] == key))
        current: str | None = None
        images = annotations = None
        rle_regions = 0

        def finish(key: str) -> None:  # the split's document, its arrays streamed in from their spools
            assert images is not None and annotations is not None
            write_object(output_path(annotations_dir, f"instances_{key}.json"), {
                "info": {"description": f"{folder.name} ({key}), exported by defectspectrum", "version": "1"},
                "licenses": [], "images": images, "annotations": annotations, "categories": categories,
                META_KEY: {"format": WRITER_FORMAT, "version": 1, "name": folder.name, "objects": objects,
                           "segmentation": "polygons" if polygons else "rle", "rle_regions": rle_regions}})

        for key, sample, file_name in track(tasks, "exporting coco", total=len(folder)):  # split after split
            if key != current:
                if current is not None:
                    finish(current)
                current, rle_regions = key, 0
                images = ArraySpool(annotations_dir / f".images_{key}.part")
                annotations = ArraySpool(annotations_dir / f".annotations_{key}.part")
            assert images is not None and annotations is not None
            mask = folder.load_checked_mask(sample)
            target = output_path(staging, IMAGES_DIR, key, file_name)
            target.parent.mkdir(parents=True, exist_ok=True)
            _place_image(folder.checked_image_path(sample), target, link)
            image_id += 1
            height, width = mask.shape
            images.append({
                "id": image_id, "file_name": file_name, "height": height, "width": width, "sample_id": sample.id,
                "object": sample.object, "name": sample.name, "split": sample.split, "caption": sample.caption,
                "defect_type": sample.defect_type, "synthetic": sample.synthetic})
            table = lookup[sample.object]
            for region in regions(mask):
                polygon = region_polygon(region, mask.shape) if polygons else None
                segmentation: Any = [polygon] if polygon is not None else _rle_segmentation(region, height, width)
                if polygons and polygon is None:
                    rle_regions += 1
                x, y, w, h = region.bbox
                annotation_id += 1
                annotations.append({
                    "id": annotation_id, "image_id": image_id,
                    "category_id": int(table[region.class_index]), "segmentation": segmentation,
                    "area": region.area, "bbox": [float(x), float(y), float(w), float(h)], "iscrowd": 0})
        if current is not None:
            finish(current)
    return dst
