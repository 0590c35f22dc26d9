"""The generic fallback: any folder of images with masks paired by file name.

Supported trees (folder names are matched case-insensitively):

```
1. <root>/images/a.png + <root>/masks/a<suffix>.png          image folder + mask folder
   image folder: images, image, imgs, img, jpegimages, img_dir
   mask folder:  masks, mask, labels, label, annotations, annotation, anns, ann, gt,
                 ground_truth, groundtruth, segmentationclass, ann_dir
2. <root>/a.png + <root>/a<suffix>.png                       images and masks side by side
   <root>/a.png + <root>/masks/a<suffix>.png                 (or a mask folder inside the image folder)
3. <root>/<class>/...  (each holding tree 1 or 2)            a folder per class
   <root>/images/<class>/ + <root>/masks/<class>/
4. <root>/<split>/...  (each holding tree 1, 2 or 3)         split folders: train, val/valid/validation, test
   <root>/images/<split>/ + <root>/masks/<split>/            (they set the samples' split)
5. Pascal VOC: <root>/JPEGImages/ + <root>/SegmentationClass/ (+ ImageSets/Segmentation/*.txt)
```
Mask folder: of the mask folders beside the images, the one whose files pair with the most images
wins (list order breaks ties), so VOC's `SegmentationClass/` wins over `Annotations/` holding XML.
Masks that cannot be paired are an error, never "all defect-free": a mask folder holding no mask
images (XML, JSON, YOLO .txt), one whose names match no image, a `masks/<sub>/` without
`images/<sub>/`, mask-like files side by side (`b_mask.png`) without their image, a `--mask-suffix`
that pairs nothing, class folders none of whose images has a mask (MVTec's `<category>/test/`
given alone), and a folder of another name whose images pair with the images (`gt_masks/`,
`segmentations/`: rename it `masks/`) are each a FormatError.

Pairing: the mask of image `a.<ext>` is `a<suffix>.<any image ext>`. `mask_suffix` sets the
suffix (`_mask`, `_label`, '' ...); without it the suffix matching the most images of each image
folder is chosen from `""` (not for tree 2), `_mask`, `_label`, `_gt` and a few variants. An image
without a mask is defect-free (defect_type "good"), except in VOC trees; a mask without an image,
two images of one name (`a.jpg` + `a.png`: an image and its mask side by side?) and an entry named
like an image that is no readable file (a folder, a broken or looping link) are FormatErrors.

Pascal VOC (a mask folder named `SegmentationClass`): `JPEGImages/` also holds the detection-only
images, so there an image without a mask is unlabelled and skipped (counted in `skipped`, which
`data convert` prints), not defect-free. The lists in `ImageSets/Segmentation/` set the split:
`train.txt`, `val.txt`, `test.txt` (and `valid`/`validation`); `trainval.txt` and lists of other
names only mark images as listed and never override a finer list; an image in two of train, val
and test is an error. A listed image must exist and have its mask, except in a list none of whose
images has a mask (VOC2012's `test.txt`): those images are skipped. Masks are class indices
(palette PNGs are read as their indices); 255, VOC's void label on object borders, becomes
background (the DS format has no ignore index); the class names come from `classes`, where
`--classes voc` stands for VOC's 20 classes (aeroplane ... tvmonitor). A VOC tree one level down
(`VOCdevkit/VOC2012/`) is not a class folder.

Classes (one object, named by `object_name`, default the root folder's name):
- a folder per class: the class folders' names, sorted (or in `classes` order, which must name
  every folder); a binary mask's foreground gets its folder's class; a folder named `good` holds
  defect-free images (MVTec's convention): it is no class, and a mask there must be empty;
- else `classes` (defect names, index 1..n; `voc`: VOC's 20 names) if given, else the `palette`
  names, else one class `defect`.

Masks: with a `palette` (JSON or YAML mapping class name -> [r, g, b]; optional `background`
entry, else black is background) each pixel colour becomes its class; a colour not in the palette
is a FormatError. Without one, a mask whose values are only {0, 255} (or {0, 1}) is binary where
exactly one class applies (one class in all, or its class folder); there, anti-aliased or
JPEG-damaged binary masks (values that cannot be class indices, >= 128) are thresholded at 128
as well. Otherwise a mask holds class indices, which must be at most n (FormatError naming the
mask otherwise); a pure 0/255 mask with several classes and no class folder is a FormatError.
Colour masks without a palette are a FormatError (grey stored as RGB is fine). defect_type is the
class name where one class applies, else unknown (None); outside class folders a mask without a
defect pixel makes its image defect-free (`good`), as a missing mask does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectspectrum.data.classes import BACKGROUND, ClassMap
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import Reader, SourceSample
from defectspectrum.data.sample import GOOD
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import (
    IMAGE_EXTENSIONS,
    binarize,
    is_image_file,
    list_images,
    open_image,
    read_json,
    read_mask_pixels,
    read_text,
    read_yaml,
    to_png_mode,
)
from defectspectrum.paths import safe_name

IMAGE_DIRS = ("images", "image", "imgs", "img", "jpegimages", "img_dir")
MASK_DIRS = ("masks", "mask", "labels", "label", "annotations", "annotation", "anns", "ann", "gt",
             "ground_truth", "groundtruth", "segmentationclass", "ann_dir")
MASK_WORDS = ("mask", "label", "gt", "seg", "anno", "truth", "groundtruth")  # a name word starting so: mask-like
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SUFFIXES = ("", "_mask", "_masks", "-mask", "_label", "_labels", "-label", "_gt", "-gt", "_seg",
            "_segmentation", "_anno", "_annotation")
DEFAULT_CLASS = "defect"
DETECT_DEPTH = 3
HINT_DEPTH = 5  # how deep a "no images found" error looks for images to point at
NESTED_DEPTH = 2  # images/<split>/<class>/
VOC_MASKS = "segmentationclass"
VOC_VOID = 255
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")


@dataclass(frozen=True)
class FolderMask:
    """Recipe: one mask file; `class_index` is the class of a binary mask, or None (several classes);
    `voc`: a VOC class mask, whose void label 255 is read as background; `good`: the mask of an image
    in a `good/` folder, which must hold no defect pixel."""

    path: Path
    class_index: int | None
    voc: bool = False
    good: bool = False


def _is_good(class_name: str | None) -> bool:
    """A class folder named `good` (any case) holds defect-free images: it is not a defect class."""
    return class_name is not None and class_name.lower() == GOOD


@dataclass(frozen=True)
class _Group:
    """One image folder and where its masks are (`masks` == `images`: side by side)."""

    images: Path
    masks: Path | None
    class_name: str | None
    split: str | None
    prefix: str
    voc: bool = False


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _named(folder: Path, names: Sequence[str]) -> Path | None:
    """The subfolder of `folder` whose lower-case name comes first in `names`."""
    by_name = {p.name.lower(): p for p in _subdirs(folder)}
    return next((by_name[n] for n in names if n in by_name), None)


def _has_images(folder: Path) -> bool:
    return any(is_image_file(p) for p in folder.iterdir())


def _join(prefix: str, part: str) -> str:
    return f"{prefix}{part}_"


def _image_keys(folder: Path, depth: int) -> set[str]:
    """`sub/stem` of every image in `folder` and its subfolders down to `depth` levels."""
    keys: set[str] = set()
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        if is_image_file(entry):  # raises for an entry named like an image that is not a readable file
            keys.add(entry.stem)
        elif entry.is_dir():
            if depth > 0:
                keys.update(f"{entry.name}/{key}" for key in _image_keys(entry, depth - 1))
    return keys


def _pairs(image_keys: set[str], mask_keys: set[str], suffixes: Sequence[str]) -> int:
    """How many images have a mask under one of `suffixes`."""
    return sum(1 for key in image_keys if any(key + s in mask_keys for s in suffixes))


def _mask_like(name: str) -> bool:
    """True for names with a word that starts like a mask word (`gt_masks`, `Segmentations`, `labels`)."""
    return any(word.startswith(MASK_WORDS) for word in re.split(r"[^a-z0-9]+", name.lower()) if word)


def _mask_like_paths(folder: Path, depth: int) -> Iterator[Path]:
    """Folders named like mask folders that hold images, and images named like masks (`a_mask.png`)."""
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if _mask_like(entry.name) and _image_keys(entry, NESTED_DEPTH):
                yield entry
            elif depth > 0:
                yield from _mask_like_paths(entry, depth - 1)
        elif is_image_file(entry) and any(s and entry.stem.endswith(s) for s in SUFFIXES):
            yield entry


def _other_files(folder: Path, depth: int) -> list[Path]:
    """Files that are not images in `folder` and its subfolders down to `depth` levels."""
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if depth > 0:
                found += _other_files(entry, depth - 1)
        elif not is_image_file(entry):
            found.append(entry)
    return found


def _mask_folder(folder: Path, images: Path, suffixes: Sequence[str]) -> Path | None:
    """The mask folder for `images` among the subfolders of `folder`: the known mask folder whose
    files pair with the most images; `images` itself (side by side) where images and masks share
    it; None where there are no masks. A layout whose masks cannot be paired is a FormatError."""
    side_by_side = images == folder
    depth = 0 if side_by_side else NESTED_DEPTH
    image_keys = _image_keys(images, depth)
    subdirs = [p for p in _subdirs(folder) if p != images]
    ranked = []
    for order, candidate in enumerate(MASK_DIRS):
        for sub in subdirs:
            if sub.name.lower() == candidate:
                mask_keys = _image_keys(sub, depth)
                ranked.append((_pairs(image_keys, mask_keys, suffixes), bool(mask_keys), -order, sub))
    best = max(ranked, key=lambda r: r[:3]) if ranked else None
    if best is not None and best[0] > 0:
        return best[3]
    if side_by_side and _pairs(image_keys, image_keys, [s for s in suffixes if s]) > 0:
        return images
    known = {r[3] for r in ranked}
    unknown = []
    for sub in subdirs:
        if sub in known or sub.name.lower() in IMAGE_DIRS or sub.name.lower() in SPLIT_DIRS:
            continue
        mask_keys = _image_keys(sub, depth)
        if mask_keys and (_pairs(image_keys, mask_keys, suffixes) > 0 or _mask_like(sub.name)):
            unknown.append(sub)
    if unknown:
        tried = f" ({', '.join(str(r[3]) for r in ranked)} pair with none)" if ranked else ""
        raise FormatError(f"{images}: no mask folder found{tried}, but {', '.join(str(p) for p in unknown)} "
                          f"hold(s) images that look like masks; if one holds the masks, rename it masks/ (or "
                          f"another known name: {', '.join(MASK_DIRS)}), else move it out of {folder}")
    if best is None:
        return images if side_by_side else None
    if best[1]:
        raise FormatError(f"{best[3]}: no mask name matches an image in {images} (tried suffixes "
                          f"{', '.join(repr(s) for s in suffixes)}); pass --mask-suffix")
    others = _other_files(best[3], depth)
    if others:
        raise FormatError(f"{best[3]}: holds no mask images ({len(others)} other file(s), e.g. {others[0].name}), "
                          f"so no image of {images} has a mask; the folder reader pairs mask images "
                          f"({', '.join(IMAGE_EXTENSIONS)}) by name: point it at the folder that holds them, "
                          "or convert the annotations with their own format (`data formats` lists them)")
    return images if side_by_side else None  # an empty mask folder: every image is defect-free


def _scan(folder: Path, split: str | None, class_name: str | None, prefix: str,
          suffixes: Sequence[str]) -> list[_Group]:
    """The image groups of one folder (trees 1-5), descending at most one split and one class level."""
    images = _named(folder, IMAGE_DIRS)
    if images is not None:
        masks = _mask_folder(folder, images, suffixes)
        voc = masks is not None and masks.name.lower() == VOC_MASKS
        if voc:
            class_name = None  # VOCdevkit/VOC2012/: a release folder, not a class folder
        if _has_images(images):
            return [_Group(images, masks, class_name, split, prefix, voc)]
        return _scan_nested(images, masks, split, class_name, prefix, voc)
    if _has_images(folder):
        return [_Group(folder, _mask_folder(folder, folder, suffixes), class_name, split, prefix)]
    groups: list[_Group] = []
    for sub in _subdirs(folder):
        if split is None and class_name is None and sub.name.lower() in SPLIT_DIRS:
            groups += _scan(sub, SPLIT_DIRS[sub.name.lower()], None, _join(prefix, sub.name), suffixes)
        elif class_name is None and sub.name.lower() not in MASK_DIRS:
            groups += _scan(sub, split, sub.name, _join(prefix, sub.name), suffixes)
    return groups


def _scan_nested(images: Path, masks: Path | None, split: str | None, class_name: str | None,
                 prefix: str, voc: bool) -> list[_Group]:
    """`images/<split|class>/` with `masks/<split|class>/`."""
    if masks is not None:
        image_subs = {sub.name for sub in _subdirs(images)}
        orphan = next((sub for sub in _subdirs(masks) if sub.name not in image_subs and _image_keys(sub, 1)), None)
        if orphan is not None:
            raise FormatError(f"{orphan}: mask folder without an image folder {images / orphan.name}; "
                              "name the mask and image subfolders alike")
        if _has_images(masks):
            raise FormatError(f"{masks}: holds masks directly, but the images are in subfolders of {images}; "
                              "put the masks in subfolders named like the image subfolders")
    groups: list[_Group] = []
    for sub in _subdirs(images):
        sub_masks = masks / sub.name if masks is not None and (masks / sub.name).is_dir() else None
        sub_split: str | None
        sub_class: str | None
        if split is None and class_name is None and sub.name.lower() in SPLIT_DIRS:
            sub_split, sub_class = SPLIT_DIRS[sub.name.lower()], None
        elif class_name is None and not voc:
            sub_split, sub_class = split, sub.name
        else:
            continue
        if _has_images(sub):
            groups.append(_Group(sub, sub_masks, sub_class, sub_split, _join(prefix, sub.name), voc))
        else:
            groups += _scan_nested(sub, sub_masks, sub_split, sub_class, _join(prefix, sub.name), voc)
    return groups


def _read_list(path: Path) -> list[tuple[int, str]]:
    """(line number, image id) of each non-empty line of a VOC image-set list (first word of the line)."""
    text = read_text(path)
    return [(number, line.split()[0]) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _voc_splits(lists: Path, images: Path, stems: set[str], masked: set[str], masks: Path) -> dict[str, str | None]:
    """Image stem -> split from VOC's `ImageSets/Segmentation/*.txt` (None: listed, split unknown)."""
    split_of: dict[str, str | None] = {}
    listed_in: dict[str, Path] = {}
    for path in sorted(p for p in lists.iterdir() if p.suffix.lower() == ".txt" and p.is_file()):
        entries = _read_list(path)
        for number, stem in entries:
            if stem not in stems:
                raise FormatError(f"{path}: line {number} names {stem!r}, not found in {images}; "
                                  "add the image or remove the line")
        if not any(stem in masked for _, stem in entries):
            continue  # a list without masks (VOC2012's test.txt): its images are unlabelled
        missing = next(((n, stem) for n, stem in entries if stem not in masked), None)
        if missing is not None:
            raise FormatError(f"{path}: line {missing[0]} lists {missing[1]!r}, which has no mask in {masks}; "
                              "add the mask or remove the line")
        split = SPLIT_DIRS.get(path.stem.lower())
        for _, stem in entries:
            earlier = split_of.get(stem)
            if split is None or earlier == split:
                split_of.setdefault(stem, None)
            elif earlier is None:
                split_of[stem], listed_in[stem] = split, path
            else:
                raise FormatError(f"{path}: {stem!r} is also in {listed_in[stem].name} ({earlier}); "
                                  "list each image in one of the train, val and test lists")
    return split_of


def _first_image_folder(folder: Path, depth: int) -> Path | None:
    """The first folder (in name order, breadth first) at most `depth` levels down that holds an image."""
    level = [folder]
    for _ in range(depth + 1):
        below: list[Path] = []
        for current in level:
            try:
                entries = sorted(os.scandir(current), key=lambda e: e.name)
            except OSError:
                continue
            if any(e.is_file() and not e.name.startswith(".") and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS
                   for e in entries):
                return current
            below += [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
        level = below
    return None


def _read_palette(path: Path) -> dict[str, tuple[int, int, int]]:
    """A palette file (JSON, or YAML for any other suffix) as class name -> (r, g, b)."""
    path = Path(path)
    data: Any = read_json(path) if path.suffix.lower() == ".json" else read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: a palette maps class names to [r, g, b], e.g. "
                         '{"scratch": [255, 0, 0]}; fix the file')
    palette: dict[str, tuple[int, int, int]] = {}
    for name, colour in data.items():
        if (not isinstance(colour, (list, tuple)) or len(colour) != 3
                or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour)):
            raise InputError(f"{path}: class {name!r} needs a colour [r, g, b] of integers 0-255, "
                             f"got {colour!r}; fix the file")
        if tuple(colour) in palette.values():
            raise InputError(f"{path}: colour {list(colour)} is given to two classes; give each class its own colour")
        palette[str(name)] = (colour[0], colour[1], colour[2])
    return palette


def _colour_code(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@register
class FolderReader(Reader):
    """Any images folder with masks paired by file name (see the module docstring for the trees)."""

    name = "folder"
    summary = ("generic: images/ + masks/ (or side by side with --mask-suffix), class folders (good/: defect-free), "
               "split folders, Pascal VOC (JPEGImages/ + SegmentationClass/, --classes voc); binary, index or "
               "palette-colour masks")

    def __init__(self, root: Path, classes: Sequence[str] | None = None, mask_suffix: str | None = None,
                 palette: Path | None = None, object_name: str | None = None) -> None:
        super().__init__(root)
        self.mask_suffix = mask_suffix
        self.object = safe_name(object_name or self.root.resolve().name)
        self.skipped = 0  # unlabelled images left out (VOC), known once samples() ran
        self.groups = _scan(self.root, None, None, "", SUFFIXES if mask_suffix is None else (mask_suffix,))
        if not self.groups:
            looked = "looked for images/ + masks/, images beside masks, class and split folders"
            deeper = _first_image_folder(self.root, HINT_DEPTH)
            if deeper is not None:
                top = deeper.parent if deeper.name.lower() in IMAGE_DIRS else deeper
                raise FormatError(f"{self.root}: no images where the folder reader looks ({looked}), but {deeper} "
                                  f"holds some; pass the data set's own folder, e.g. {top}")
            raise FormatError(f"{self.root}: no images found ({looked}); check the folder or the --from format")
        colours = _read_palette(palette) if palette is not None else None
        if classes and [c.lower() for c in classes] == ["voc"]:
            classes = VOC_CLASSES
        self.class_map = self._class_map(list(classes) if classes else None, colours, palette)
        self.single = len(self.class_map.defects) == 1
        # palette as (colour code, class index) pairs: picklable and cheap to send to workers
        self.palette: tuple[tuple[int, int], ...] | None = None
        if colours is not None:
            lookup = {} if BACKGROUND in colours else {0: 0}
            lookup.update({(r << 16) | (g << 8) | b: self.class_map.index(name) for name, (r, g, b) in colours.items()})
            self.palette = tuple(lookup.items())

    def _class_map(self, classes: list[str] | None, colours: dict[str, Any] | None, palette: Path | None) -> ClassMap:
        folders = sorted({g.class_name for g in self.groups if g.class_name is not None and not _is_good(g.class_name)})
        if folders and classes:
            missing = [f for f in folders if f not in classes]
            if missing:
                raise InputError(f"{self.root}: class folder(s) {', '.join(missing)} not in --classes "
                                 f"{','.join(classes)}; add them or leave --classes out")
        if classes and classes[0].strip().lower() == BACKGROUND:
            classes = classes[1:]  # `--classes background,scratch`: background is index 0 anyway
        defects = classes or folders or [n for n in (colours or {}) if n != BACKGROUND] or [DEFAULT_CLASS]
        where = "--classes" if classes else str(palette) if colours else f"{self.root} (its class folders)"
        try:
            class_map = ClassMap.from_defects(defects)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from exc
        unknown = [n for n in (colours or {}) if n not in class_map.names]
        if unknown:
            raise InputError(f"{palette}: palette class(es) {', '.join(unknown)} not among the classes "
                             f"{', '.join(class_map.defects)}; fix the palette or --classes")
        return class_map

    @classmethod
    def detect(cls, root: Path) -> bool:
        return _first_image_folder(root, DETECT_DEPTH) is not None

    def class_maps(self) -> dict[str, ClassMap]:
        return {self.object: self.class_map}

    def samples(self) -> Iterator[SourceSample]:
        items: list[SourceSample] = []
        self.skipped = 0
        for group in self.groups:
            items += self._group_samples(group)
        if items and all(item.mask is None for item in items):
            self._check_no_masks()
        yield from items

    def _check_no_masks(self) -> None:
        """Every image would be defect-free: refuse where masks were asked for, something looks like masks or
        the images sit in class folders."""
        if self.mask_suffix is not None:
            raise FormatError(f"{self.root}: no image has a mask with the suffix {self.mask_suffix!r} "
                              f"(image folders: {', '.join(str(g.images) for g in self.groups[:3])}"
                              f"{' ...' if len(self.groups) > 3 else ''}); check --mask-suffix, or leave it out "
                              "to detect the suffix")
        suspect = next(_mask_like_paths(self.root, DETECT_DEPTH), None)
        if suspect is not None:
            raise FormatError(f"{self.root}: no image pairs with a mask, but {suspect} looks like masks; put masks "
                              f"in masks/ beside images/ (or beside the images with a suffix and --mask-suffix), "
                              "or remove it if every image is defect-free")
        classes = sorted({g.class_name for g in self.groups if g.class_name is not None and not _is_good(g.class_name)})
        if classes:  # a class folder without masks says nothing about pixels: its images are not defect-free
            shown = ", ".join(classes[:4]) + (" ..." if len(classes) > 4 else "")
            raise FormatError(f"{self.root}: images in class folders ({shown}) but no masks; pass the data set's "
                              "top folder if this is part of one (`data formats` lists the layouts), put each "
                              "class's masks in <class>/masks/, or pass a folder of defect-free images by itself")

    def _group_samples(self, group: _Group) -> list[SourceSample]:
        side_by_side = group.masks == group.images
        files = list_images(group.images)
        mask_files = list_images(group.masks) if group.masks is not None else []
        suffix = self._suffix(group, files, mask_files, side_by_side)
        if side_by_side:
            mask_files = [p for p in files if suffix and p.stem.endswith(suffix)]
            taken = set(mask_files)
            images = [p for p in files if p not in taken]
        else:
            images = files
        masks: dict[str, Path] = {}
        for mask in mask_files:
            if mask.stem in masks:
                raise FormatError(f"{mask}: two masks named {mask.stem} ({masks[mask.stem].name}); keep one of them")
            masks[mask.stem] = mask
        paired: dict[str, Path] = {}
        for image in images:
            key = image.stem + suffix
            if key in paired:  # a.jpg + a.png: most likely an image and its mask side by side (Magnetic-tile)
                raise FormatError(f"{image}: two images named {image.stem} ({paired[key].name}); if one is the "
                                  "mask, put the masks in masks/ beside the image folder (or use the reader for "
                                  "the layout: `data formats`), else keep one of them")
            paired[key] = image
        orphans = sorted(set(masks) - set(paired))
        if orphans:
            mask = masks[orphans[0]]
            stem = mask.stem[: len(mask.stem) - len(suffix)] if suffix and mask.stem.endswith(suffix) else mask.stem
            raise FormatError(f"{mask}: mask without an image named {stem}.* "
                              f"in {group.images} (mask suffix {suffix!r}); add the image, remove the mask "
                              "or pass --mask-suffix")
        class_index = 1 if self.single and not group.voc else None  # the class of a binary mask, where one applies
        good = _is_good(group.class_name)
        if group.class_name is not None and not good:
            class_index = self.class_map.index(group.class_name)
        class_name = self.class_map[class_index] if class_index is not None and not good else None
        splits: dict[str, str | None] = {}
        if group.voc and group.masks is not None:
            lists = _named(group.images.parent, ("imagesets",))
            lists = _named(lists, ("segmentation",)) if lists is not None else None
            if lists is not None:
                masked = {image.stem for image in images if image.stem + suffix in masks}
                splits = _voc_splits(lists, group.images, {image.stem for image in images}, masked, group.masks)
        items: list[SourceSample] = []
        for image in images:
            paired_mask = masks.get(image.stem + suffix)
            name = group.prefix + image.stem
            if paired_mask is None and group.voc:
                self.skipped += 1  # VOC: an image without a mask is unlabelled, not defect-free
            elif paired_mask is None:
                items.append(SourceSample(self.object, name, image, None, GOOD, group.split))
            else:
                split = splits.get(image.stem) or group.split
                items.append(SourceSample(self.object, name, image,
                                          FolderMask(paired_mask, class_index, group.voc, good), class_name, split,
                                          empty_means_good=group.class_name is None or good))
        return items

    def _suffix(self, group: _Group, files: list[Path], mask_files: list[Path], side_by_side: bool) -> str:
        """The given mask suffix, or the common suffix that pairs the most images with a mask."""
        if self.mask_suffix is not None:
            if side_by_side and not self.mask_suffix:
                raise InputError(f"{group.images}: images and masks share this folder, so --mask-suffix must not be "
                                 "empty; give the suffix that ends mask names, e.g. _mask")
            return self.mask_suffix
        if side_by_side:
            stems = {p.stem for p in files}
            counts = {s: sum(1 for p in files if p.stem.endswith(s) and p.stem[: -len(s)] in stems)
                      for s in SUFFIXES if s}
        else:
            mask_stems = {p.stem for p in mask_files}
            counts = {s: sum(1 for p in files if p.stem + s in mask_stems) for s in SUFFIXES}
        best = max(counts, key=lambda s: counts[s])  # ties: the earlier suffix
        if counts[best] == 0 and side_by_side:
            lone = next(((p, s) for p in files for s in SUFFIXES if s and p.stem.endswith(s)), None)
            if lone is not None:
                raise FormatError(f"{lone[0]}: named like a mask (suffix {lone[1]!r}), but no image "
                                  f"{lone[0].stem[: -len(lone[1])]}.* is beside it; add the image, rename the file, "
                                  "or pass --mask-suffix with the suffix your masks end with")
            return ""  # no file pairs with another and none is named like a mask: all images, none with a mask
        if counts[best] == 0 and mask_files:
            raise FormatError(f"{group.masks}: no mask name matches an image in {group.images} (tried suffixes "
                              f"{', '.join(repr(s) for s in SUFFIXES)}); pass --mask-suffix")
        return best

    def load_mask(self, sample: SourceSample, size: tuple[int, int]) -> np.ndarray:
        recipe = sample.mask
        if not isinstance(recipe, FolderMask):
            return super().load_mask(sample, size)
        mask = self._folder_mask(recipe)
        if recipe.good and mask.any():
            raise FormatError(f"{recipe.path}: the mask of an image in a good/ folder has defect pixels; move the "
                              "image and its mask to their class folder, or clear the mask")
        return mask

    def _folder_mask(self, recipe: FolderMask) -> np.ndarray:
        if self.palette is not None:
            return self._palette_mask(recipe.path)
        pixels = read_mask_pixels(recipe.path)
        if pixels.ndim == 3:
            if not (np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])):
                raise FormatError(f"{recipe.path}: a colour mask; pass --palette with a JSON/YAML file mapping "
                                  "class name -> [r, g, b]")
            pixels = pixels[..., 0]
        if recipe.voc:
            pixels = np.where(pixels == VOC_VOID, np.uint8(0), pixels)
        values = set(np.flatnonzero(np.bincount(pixels.ravel(), minlength=256)).tolist())
        binary = values <= {0, 255} or values <= {0, 1}
        if recipe.class_index is not None and (binary or max(values) >= max(128, len(self.class_map))):
            return binarize(pixels).astype(np.uint8) * np.uint8(recipe.class_index)
        if values <= {0, 255} and 255 in values:
            raise FormatError(f"{recipe.path}: a binary 0/255 mask, but there are {len(self.class_map.defects)} "
                              "classes; binary masks need exactly one class (--classes) or a folder per class")
        top = max(values)
        if top >= len(self.class_map):
            voc_hint = " (--classes voc: the 20 Pascal VOC classes)" if recipe.voc else ""
            raise FormatError(f"{recipe.path}: mask index {top} is outside the classes "
                              f"{', '.join(self.class_map.names)}; pass --classes with every defect class in index "
                              f"order (1, 2, ...){voc_hint} or fix the mask")
        return pixels

    def _palette_mask(self, path: Path) -> np.ndarray:
        pixels = np.asarray(to_png_mode(open_image(path)))
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        codes, inverse = np.unique(_colour_code(pixels), return_inverse=True)
        lookup = dict(self.palette or ())
        unknown = [int(c) for c in codes if int(c) not in lookup]
        if unknown:
            r, g, b = unknown[0] >> 16, (unknown[0] >> 8) & 255, unknown[0] & 255
            raise FormatError(f"{path}: colour [{r}, {g}, {b}] is not in the palette ({len(unknown)} unknown "
                              "colour(s)); add it to the palette file or fix the mask")
        table = np.array([lookup[int(c)] for c in codes], dtype=np.uint8)
        return table[inverse.reshape(pixels.shape[:2])]
