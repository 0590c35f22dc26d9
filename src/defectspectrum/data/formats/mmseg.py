"""The mmsegmentation folder layout: reader and writer.

```
<root>/img_dir/<split>/<stem>.<any image extension>
<root>/ann_dir/<split>/<stem><suffix>.png       uint8 class index, 0 = background, 255 = ignore
<root>/classes.json | classes.txt | metainfo.json   optional class names
```
Reading a plain mmseg folder gives ONE object (`--object`, else the root folder's name) and keeps
every split folder's name as the split (`unsplit` is read as no split; images directly in
`img_dir/` with masks directly in `ann_dir/` have no split). A split folder with no counterpart in
`ann_dir/` is unlabelled and skipped (its images counted in `skipped`, which `data convert`
prints). Masks pair with images by stem plus an optional suffix (mmseg's `seg_map_suffix`, e.g.
`_labelTrainIds` or `_mask`): `--mask-suffix`, else the suffix
that pairs the most images. The ignore index 255 is read as background.

Class names, first found wins: the `--classes` option; `classes.json` (a list of names, or
`{"classes": [...]}` of names or of objects with a "name"/"label"); `classes.txt` (one name a
line, UTF-8); `metainfo.json` (`{"classes": [...]}`, as an mmseg config's metainfo); else
`class_1 .. class_N` up to the largest index found in the masks (this reads every mask once). A
name list that starts with "background" (any case) includes index 0; otherwise its first name is
index 1.

`export_mmseg` writes this layout from a DS folder with ONE label space over all objects (the
DS folder's global classes), in the form mmsegmentation 1.x's `BaseSegDataset` reads as it is:
- one image suffix per export (BaseSegDataset takes one `img_suffix`): where every image of the DS
  folder has the same suffix (.png, .jpg or .bmp; .jpeg counts as .jpg) the images are copied
  byte for byte; where they are mixed, every image becomes a PNG: PNG files are copied, the others
  are decoded and saved as PNG in their own pixel mode, which is lossless relative to the decoded
  pixels (a JPEG's compression loss happened when it was written; nothing is added);
- masks are `ann_dir/<split>/<stem>.png` (`seg_map_suffix='.png'`, mmseg's default), uint8
  global class indices, background 0 (`reduce_zero_label=False`);
- `metainfo.json` ({"classes": [background, "object/class", ...], "palette": [[r, g, b], ...]},
  colours from `draw.class_colors`) and `dataset_config.py`, a config to use as `_base_` (or to
  copy from): dataset type, data root, metainfo, suffixes and a dataloader per split folder;
- split folders are the split names made safe and distinct ignoring case (`Train` beside `train`
  becomes `Train-2`: one folder on case-insensitive file systems);
- stems are `<object>__<name>` made safe, never containing the image suffix (mmseg finds a mask by
  replacing the image suffix in the file's path), every path built through `paths.output_path`.
Two more files let this reader restore the DS folder exactly (a mixed-suffix export gives back
its JPEG/BMP images as PNGs with the same pixels): `classes.json` ({"format":
"defectspectrum-mmseg", "classes": [{index, label, object, class}], "objects": per-object class
maps}) and `samples.json` (per sample: its files, object, name, split, caption, defect type,
synthetic flag). Samples without a split go to `unsplit/`. The restore checks that index like a
DS folder's: paths relative and inside the folder (symbolic links followed), safe object and
sample names, each field of the right type; exports written before metainfo.json existed restore
as before.
"""

from __future__ import annotations

import bisect
import hashlib
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from defectspectrum.data.classes import (
    BACKGROUND,
    ClassMap,
    GlobalClass,
    class_maps_from_json,
    global_lookup,
)
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import Reader, SourceSample
from defectspectrum.data.sample import UNSPLIT, Sample, split_folder_names
from defectspectrum.draw import class_colors
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import (
    IMAGE_EXTENSIONS,
    list_images,
    open_image,
    read_json,
    read_mask_pixels,
    read_text,
    save_png,
    to_png_mode,
    write_json_atomic,
    write_text_atomic,
)
from defectspectrum.json_stream import ArraySpool, write_object
from defectspectrum.paths import (
    MAX_NAME,
    Containment,
    is_safe_name,
    output_path,
    relative_path,
    safe_name,
    unique_name,
)
from defectspectrum.progress import track
from defectspectrum.staging import staged_folder

IMG_DIR = "img_dir"
ANN_DIR = "ann_dir"
CLASSES_JSON = "classes.json"
CLASSES_TXT = "classes.txt"
METAINFO_JSON = "metainfo.json"
DATASET_CONFIG = "dataset_config.py"
SAMPLES_JSON = "samples.json"
WRITER_FORMAT = "defectspectrum-mmseg"
IGNORE_INDEX = 255
SEG_MAP_SUFFIX = ".png"
COPIED_SUFFIXES = (".png", ".jpg", ".bmp")  # a one-suffix export of these keeps the image files' bytes
_SAME_SUFFIX = {".jpeg": ".jpg", ".tiff": ".tif"}
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")  # pixel modes PNG stores as they are


def class_map_from_names(names: Sequence[str], where: str) -> ClassMap:
    """A class map from a name list that may or may not start with background (any case)."""
    names = [str(name).strip() for name in names]
    if names and names[0].lower() == BACKGROUND:
        names = names[1:]
    try:
        return ClassMap.from_defects(names)
    except InputError as exc:
        raise FormatError(f"{where}: {exc}") from exc


@dataclass(frozen=True)
class MmsegMask:
    """Recipe: an index mask file whose values go through `lut` (256 entries; -1 = not allowed)."""

    path: Path
    lut: tuple[int, ...]
    object: str


def _identity_lut() -> tuple[int, ...]:
    return (*tuple(range(IGNORE_INDEX)), 0)


def _restore_lut(object_name: str, objects: dict[str, ClassMap]) -> tuple[int, ...]:
    """Global index -> the object's local index; other objects' classes are -1; 255 -> 0."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[0] = lut[IGNORE_INDEX] = 0
    table = global_lookup(objects)[object_name]
    for local in range(1, len(objects[object_name])):
        lut[int(table[local])] = local
    return tuple(int(v) for v in lut)


def _split_dirs(root: Path) -> list[tuple[Path, Path, str | None]]:
    """(image folder, annotation folder, split) of every labelled split."""
    img_root, ann_root = root / IMG_DIR, root / ANN_DIR
    pairs: list[tuple[Path, Path, str | None]] = []
    if list_images(img_root):
        pairs.append((img_root, ann_root, None))
    for folder in sorted(p for p in img_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (ann_root / folder.name).is_dir():
            pairs.append((folder, ann_root / folder.name, None if folder.name == UNSPLIT else folder.name))
    return pairs


def _png_stems(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in list_images(folder) if p.suffix.lower() == ".png")


def _detect_suffix(groups: list[tuple[list[Path], list[str]]], root: Path) -> str:
    """The mask-name suffix that pairs the most images with a mask (ties: the shortest)."""
    counts: Counter[str] = Counter()
    for images, mask_stems in groups:
        for image in images:
            position = bisect.bisect_left(mask_stems, image.stem)
            while position < len(mask_stems) and mask_stems[position].startswith(image.stem):
                counts[mask_stems[position][len(image.stem):]] += 1
                position += 1
    if not counts:
        raise FormatError(f"{root}: no mask in {ANN_DIR}/ is named like an image of {IMG_DIR}/ "
                          "(<image stem><suffix>.png); pass --mask-suffix or check the folders")
    return min(counts, key=lambda suffix: (-counts[suffix], len(suffix), suffix))


def _names_in_json(path: Path) -> list[str]:
    """Class names from a JSON list of names, or {"classes": [...]} of names or {"name"|"label": ...}."""
    data = read_json(path)
    entries = data.get("classes") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise FormatError(f"{path}: expected a list of class names or {{'classes': [...]}}")
    names = []
    for entry in entries:
        name = entry.get("name", entry.get("label")) if isinstance(entry, dict) else entry
        if not isinstance(name, str):
            raise FormatError(f"{path}: class entry {entry!r} has no name; give names as strings")
        names.append(name)
    return names


# -- the restore's own index -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One checked samples.json entry: paths relative to the export root."""

    image: PurePosixPath
    mask: PurePosixPath
    object: str
    name: str
    split: str | None
    caption: str | None
    defect_type: str | None
    synthetic: bool


def _check_entry(entry: Any, where: str, objects: dict[str, ClassMap], containment: Containment) -> _Entry:
    """One samples.json entry, checked; FormatError naming `where` (file and entry number) otherwise."""
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: expected an object with image, mask, object and name; re-export the folder")
    missing = [key for key in ("image", "mask", "object", "name") if not isinstance(entry.get(key), str)]
    if missing:
        raise FormatError(f"{where}: missing or non-string field(s) {', '.join(missing)}; re-export the folder")
    for key in ("object", "name"):
        if not is_safe_name(entry[key]):
            raise FormatError(f"{where}: {key} {entry[key]!r} is not a safe name (letters, digits, '.', '_' or '-'); "
                              "fix the entry or re-export the folder")
    if entry["object"] not in objects:
        raise FormatError(f"{where}: names unknown object {entry['object']!r}; re-export the folder")
    for key in ("split", "caption", "defect_type"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise FormatError(f"{where}: {key} must be a string or null, not {entry[key]!r}; fix the entry")
    synthetic = entry.get("synthetic", False)
    if not isinstance(synthetic, bool):
        raise FormatError(f"{where}: synthetic must be true or false, not {synthetic!r}; fix the entry")
    paths = []
    for key in ("image", "mask"):
        try:
            relative = relative_path(entry[key], f"{where} {key}")
            containment.check(relative, f"{where} {key}")
        except InputError as exc:
            raise FormatError(str(exc)) from exc
        paths.append(relative)
    return _Entry(paths[0], paths[1], entry["object"], entry["name"], entry.get("split"), entry.get("caption"),
                  entry.get("defect_type"), synthetic)


@register
class MmsegReader(Reader):
    """mmsegmentation's img_dir/<split> + ann_dir/<split> layout (and DS folders exported to it)."""

    name = "mmseg"
    summary = "mmsegmentation layout: img_dir/<split>/<stem>.<ext> + ann_dir/<split>/<stem>[suffix].png (class index)"

    def __init__(self, root: Path, classes: list[str] | None = None, mask_suffix: str | None = None,
                 object_name: str | None = None) -> None:
        super().__init__(root)
        if not self.detect(self.root):
            raise FormatError(f"{self.root}: not an mmseg folder (needs {IMG_DIR}/ and {ANN_DIR}/ side by side); "
                              f"pass the folder that holds {IMG_DIR}/, or check --from")
        self.classes = classes
        self.mask_suffix = None if mask_suffix is None else mask_suffix.removesuffix(".png")
        self.object_name = object_name
        self._written = self._writer_metadata()
        if self._written is not None and (classes or object_name or mask_suffix is not None):
            raise InputError(f"{self.root / CLASSES_JSON}: this folder was exported by defectspectrum and restores its "
                             "own objects and classes; drop --classes, --object and --mask-suffix")
        self._class_maps: dict[str, ClassMap] | None = None

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / IMG_DIR).is_dir() and (root / ANN_DIR).is_dir()

    # -- class maps ----------------------------------------------------------------------------

    def _writer_metadata(self) -> dict[str, Any] | None:
        path = self.root / CLASSES_JSON
        if not path.is_file():
            return None
        data = read_json(path)
        if not (isinstance(data, dict) and data.get("format") == WRITER_FORMAT):
            return None
        class_maps = class_maps_from_json(data.get("objects"), str(path), FormatError)
        total = sum(len(class_map) - 1 for class_map in class_maps.values())
        if total >= IGNORE_INDEX:
            raise FormatError(f"{path}: its objects have {total} classes, more than the {IGNORE_INDEX - 1} an mmseg "
                              "export's uint8 masks hold; fix the file or re-export the folder")
        for object_name in class_maps:
            if not is_safe_name(object_name):
                raise FormatError(f"{path}: object {object_name!r} is not a safe name (letters, digits, '.', '_' or "
                                  "'-'); fix the file or re-export the folder")
        samples_path = self.root / SAMPLES_JSON
        if not samples_path.is_file():
            raise FormatError(f"{samples_path}: missing; it lists each exported sample's object and name. "
                              f"Restore it, or delete {CLASSES_JSON} to read the folder as plain mmseg")
        samples = read_json(samples_path)
        samples = samples.get("samples") if isinstance(samples, dict) else None
        if not isinstance(samples, list):
            raise FormatError(f"{samples_path}: expected {{'samples': [...]}}; re-export the folder")
        containment = Containment(self.root)
        entries = [_check_entry(entry, f"{samples_path}: sample {number}", class_maps, containment)
                   for number, entry in enumerate(samples, start=1)]
        seen: dict[tuple[str, str], int] = {}
        for number, entry in enumerate(entries, start=1):
            first = seen.setdefault((entry.object, entry.name), number)
            if first != number:
                raise FormatError(f"{samples_path}: sample {number} repeats {entry.object}/{entry.name} of sample "
                                  f"{first}; remove one of them or re-export the folder")
        return {"objects": class_maps, "samples": entries}

    def _names_from_files(self) -> tuple[list[str], Path] | None:
        json_path, txt_path, metainfo_path = (self.root / name for name in (CLASSES_JSON, CLASSES_TXT, METAINFO_JSON))
        if json_path.is_file():
            return _names_in_json(json_path), json_path
        if txt_path.is_file():
            lines = read_text(txt_path).splitlines()
            return [line.strip() for line in lines if line.strip()], txt_path
        if metainfo_path.is_file():
            return _names_in_json(metainfo_path), metainfo_path
        return None

    def _object(self) -> str:
        return self.object_name or safe_name(self.root.resolve().name)

    def class_maps(self) -> dict[str, ClassMap]:
        if self._class_maps is None:
            if self._written is not None:
                self._class_maps = dict(self._written["objects"])
            elif self.classes:
                self._class_maps = {self._object(): class_map_from_names(self.classes, "--classes")}
            elif (found := self._names_from_files()) is not None:
                self._class_maps = {self._object(): class_map_from_names(found[0], str(found[1]))}
            else:
                self._class_maps = {self._object(): self._numbered_classes()}
        return self._class_maps

    def _numbered_classes(self) -> ClassMap:
        """class_1 .. class_N, N the largest index (255 excepted) in any mask."""
        top = 0
        for item in self._plain_samples():
            pixels = read_mask_pixels(item.mask.path)
            values = np.unique(pixels)
            values = values[values != IGNORE_INDEX]
            top = max(top, int(values.max(initial=0)))
        return ClassMap.from_defects([f"class_{index}" for index in range(1, top + 1)])

    # -- samples -------------------------------------------------------------------------------

    def samples(self) -> Iterator[SourceSample]:
        if self._written is not None:
            yield from self._restored_samples()
        else:
            yield from self._plain_samples()

    def _plain_samples(self) -> Iterator[SourceSample]:
        groups = [(list_images(img), _png_stems(ann), img, ann, split) for img, ann, split in _split_dirs(self.root)]
        labelled = {img for _, _, img, _, _ in groups}
        self.skipped = sum(1 for folder in (self.root / IMG_DIR).iterdir()
                           if folder.is_dir() and not folder.name.startswith(".") and folder not in labelled
                           for entry in folder.iterdir()  # counted by name: an unlabelled folder is not read
                           if entry.suffix.lower() in IMAGE_EXTENSIONS and not entry.name.startswith("."))
        if not any(images for images, *_ in groups):
            return
        suffix = self.mask_suffix
        if suffix is None:
            suffix = _detect_suffix([(images, stems) for images, stems, *_ in groups], self.root)
        lut, object_name = _identity_lut(), self._object()
        for images, _, _, ann, split in groups:
            for image in images:
                mask = ann / f"{image.stem}{suffix}.png"
                if not mask.is_file():
                    raise FormatError(f"{image}: its annotation {mask} is missing; add it (all zeros for a defect-free "
                                      "image), remove the image, or pass --mask-suffix")
                yield SourceSample(object_name, image.stem, image, MmsegMask(mask, lut, object_name), split=split,
                                   empty_means_good=True)

    def _restored_samples(self) -> Iterator[SourceSample]:
        assert self._written is not None
        objects: dict[str, ClassMap] = self._written["objects"]
        luts = {name: _restore_lut(name, objects) for name in objects}
        where = self.root / SAMPLES_JSON
        listed: set[Path] = set()
        entry: _Entry
        for entry in self._written["samples"]:
            image, mask = self.root / entry.image, self.root / entry.mask
            for path in (image, mask):
                if not path.is_file():
                    raise FormatError(f"{path}: listed in {where} but missing; restore it or re-export the folder")
            listed.add(image.resolve())
            yield SourceSample(entry.object, entry.name, image, MmsegMask(mask, luts[entry.object], entry.object),
                               defect_type=entry.defect_type, split=entry.split, caption=entry.caption,
                               synthetic=entry.synthetic)
        for img, _, _ in _split_dirs(self.root):
            for image in list_images(img):
                if image.resolve() not in listed:
                    raise FormatError(f"{image}: not listed in {where}; remove the image, or delete {CLASSES_JSON} "
                                      "to read the folder as plain mmseg")

    def load_mask(self, sample: SourceSample, size: tuple[int, int]) -> np.ndarray:
        recipe = sample.mask
        if not isinstance(recipe, MmsegMask):
            return super().load_mask(sample, size)
        pixels = read_mask_pixels(recipe.path)
        if pixels.ndim == 3:
            raise FormatError(f"{recipe.path}: expected a single-channel class-index mask, found a colour image")
        lut = np.asarray(recipe.lut, dtype=np.int16)
        mask = lut[pixels]
        if mask.min(initial=0) < 0:
            bad = sorted({int(v) for v in np.unique(pixels[mask < 0])})
            raise FormatError(f"{recipe.path}: class index(es) {bad} do not belong to object {recipe.object!r}; "
                              "fix the mask or re-export the folder")
        return mask.astype(np.uint8)

    def empty_error(self) -> FormatError:
        return FormatError(f"{self.root}: no images with annotations found under {IMG_DIR}/ and {ANN_DIR}/; "
                           "check the folder or the --from format")


# -- writer ------------------------------------------------------------------------------------


def image_suffix(suffixes: Iterable[str]) -> str:
    """The one image suffix of an export whose DS images have `suffixes`: their common suffix where
    they share one of COPIED_SUFFIXES (the files are then copied as they are), else `.png`."""
    found = {_SAME_SUFFIX.get(suffix.lower(), suffix.lower()) for suffix in suffixes}
    if len(found) == 1 and (only := found.pop()) in COPIED_SUFFIXES:
        return only
    return ".png"


def _clean_part(text: str, suffix: str, reserve: int = 0) -> str:
    """A safe name for `text` that does not contain `suffix` (mmseg finds a sample's mask by replacing
    the image suffix everywhere in its path) and leaves `reserve` characters for a counter and suffix."""
    cleaned = safe_name(text).replace(suffix, "_" + suffix.lstrip("."))
    limit = MAX_NAME - reserve
    if len(cleaned) > limit:
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        cleaned = f"{cleaned[: limit - 11].rstrip('._-')}-{digest}"
    return cleaned


@dataclass(frozen=True)
class ExportPaths:
    """Where one sample goes in an mmseg export: its split folder and file names."""

    split_dir: str
    image_file: str
    mask_file: str

    @property
    def image_rel(self) -> str:
        return f"{IMG_DIR}/{self.split_dir}/{self.image_file}"

    @property
    def mask_rel(self) -> str:
        return f"{ANN_DIR}/{self.split_dir}/{self.mask_file}"


def split_folder(split: str | None, suffix: str) -> str:
    """The split folder of samples of `split` (before `apart_ignoring_case`)."""
    return UNSPLIT if split is None else _clean_part(split, suffix)


def check_exportable(sample: Sample) -> None:
    """InputError for a sample whose object, name or split could not have come from a DS folder."""
    if not (is_safe_name(sample.object) and is_safe_name(sample.name)):
        raise InputError(f"sample {sample.id!r}: object and name must be safe names (letters, digits, '.', '_' or "
                         "'-'); run `defectspectrum data validate` and fix the DS folder")
    if sample.split is not None and not isinstance(sample.split, str):
        raise InputError(f"sample {sample.id!r}: split must be a string or null, not {sample.split!r}; "
                         "run `defectspectrum data validate` and fix the DS folder")


def export_paths(sample: Sample, suffix: str, taken: dict[str, set[str]],
                 split_dirs: dict[str, str] | None = None) -> ExportPaths:
    """The export paths of `sample` (safe names, unique within their split folder; `taken` records
    them; `split_dirs` renames split folders, see `apart_ignoring_case`). InputError for a sample
    whose object, name or split could not have come from a DS folder (`check_exportable`)."""
    check_exportable(sample)
    split_dir = split_folder(sample.split, suffix)
    split_dir = (split_dirs or {}).get(split_dir, split_dir)
    reserve = len("-99999") + max(len(suffix), len(SEG_MAP_SUFFIX))
    base = _clean_part(f"{sample.object}__{sample.name}", suffix, reserve)
    stem = unique_name(base, taken.setdefault(split_dir, set()))
    return ExportPaths(split_dir, f"{stem}{suffix}", f"{stem}{SEG_MAP_SUFFIX}")


def _write_image(source: Path, target: Path, suffix: str) -> None:
    """Copy `source` where it already has the export's suffix, else save its decoded pixels as PNG; plain
    writes: `target` lies in a staging folder, published whole."""
    if _SAME_SUFFIX.get(source.suffix.lower(), source.suffix.lower()) == suffix:
        shutil.copyfile(source, target)
        return
    image = open_image(source)
    save_png(image if image.mode in _PNG_MODES else to_png_mode(image), target)


def _dataset_lines(name: str, split_path: str, train: bool) -> list[str]:
    sampler = "dict(type='InfiniteSampler', shuffle=True)" if train else "dict(type='DefaultSampler', shuffle=False)"
    batch = 2 if train else 1
    pipeline = "train_pipeline" if train else "test_pipeline"
    img_path = f"{IMG_DIR}/{split_path}" if split_path else IMG_DIR
    seg_path = f"{ANN_DIR}/{split_path}" if split_path else ANN_DIR
    return [
        f"{name} = dict(",
        f"    batch_size={batch},",
        "    num_workers=2,",
        "    persistent_workers=True,",
        f"    sampler={sampler},",
        "    dataset=dict(",
        "        type=dataset_type,",
        "        data_root=data_root,",
        "        metainfo=metainfo,",
        "        img_suffix=img_suffix,",
        "        seg_map_suffix=seg_map_suffix,",
        "        reduce_zero_label=False,",
        f"        data_prefix=dict(img_path={img_path!r}, seg_map_path={seg_path!r}),",
        f"        pipeline={pipeline}))",
        "",
    ]


def dataset_config(entries: Sequence[GlobalClass], suffix: str, split_counts: Counter[str]) -> str:
    """An mmsegmentation 1.x dataset config for an export (use it as `_base_`, or copy from it)."""
    palette = class_colors(len(entries)).tolist()
    listing = ", ".join(f"{split} ({count})" for split, count in sorted(split_counts.items()))
    lines = [
        "# mmsegmentation 1.x dataset settings for this export, written by defectspectrum.",
        "# Use it as a base config (_base_ = ['<this folder>/dataset_config.py']) or copy what you need.",
        "# mmengine's Config.fromfile puts this file's folder in place of {{ fileDirname }}; where you copy",
        "# the lines into another file, set data_root to this export's folder.",
        f"# Split folders (images): {listing or 'none'}."
        + (" `unsplit` holds the samples without a split." if UNSPLIT in split_counts else ""),
        "dataset_type = 'BaseSegDataset'",
        'data_root = """{{ fileDirname }}"""  # triple quotes: the folder name may hold a quote',
        "metainfo = dict(",
        f"    classes={tuple(entry.label for entry in entries)!r},",
        f"    palette={palette!r})",
        f"img_suffix = {suffix!r}",
        f"seg_map_suffix = {SEG_MAP_SUFFIX!r}",
        "# Minimal pipelines: add resizing, cropping and augmentation to taste.",
        "train_pipeline = [",
        "    dict(type='LoadImageFromFile'),",
        "    dict(type='LoadAnnotations', reduce_zero_label=False),",
        "    dict(type='PackSegInputs'),",
        "]",
        "test_pipeline = [",
        "    dict(type='LoadImageFromFile'),",
        "    dict(type='LoadAnnotations', reduce_zero_label=False),",
        "    dict(type='PackSegInputs'),",
        "]",
        "",
    ]
    loaders = [(loader, split) for loader, split in (("train_dataloader", "train"), ("val_dataloader", "val"),
                                                     ("test_dataloader", "test")) if split in split_counts]
    if not any(loader == "train_dataloader" for loader, _ in loaders):
        lines.append("# No `train` split folder: the training set reads every split folder of the export.")
        loaders.insert(0, ("train_dataloader", ""))
    for loader, split in loaders:
        lines += _dataset_lines(loader, split, loader == "train_dataloader")
    if any(loader == "val_dataloader" for loader, _ in loaders):
        lines.append("val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])")
    if any(loader == "test_dataloader" for loader, _ in loaders):
        lines.append("test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])")
    return "\n".join(lines).rstrip("\n") + "\n"


def export_mmseg(folder: DSFolder, dst: Path) -> Path:
    """Write `folder` as an mmseg folder at `dst` (new or empty); masks hold global class indices.

    Built in a temporary folder beside `dst` and renamed into place, so a failed export leaves
    nothing behind.
    """
    dst = Path(dst)
    entries = folder.global_classes()
    if len(entries) > IGNORE_INDEX:
        raise InputError(f"{folder.root}: {len(entries)} global classes do not fit mmseg's uint8 masks (255 is the "
                         "ignore index); export fewer objects at a time")
    lookup = global_lookup(folder.objects)
    # passes over the folder, each sample's paths made as it is written: no list of the samples
    for sample in folder:
        check_exportable(sample)  # before anything is written
    suffix = image_suffix(Path(sample.image).suffix for sample in folder)
    taken: dict[str, set[str]] = {}
    folders = {split_folder(s.split, suffix) for s in folder}
    split_dirs = split_folder_names(folders)
    with staged_folder(dst) as tmp:  # one rename publishes it all: files inside are written plainly
        output_path(tmp, IMG_DIR).mkdir()
        output_path(tmp, ANN_DIR).mkdir()
        for split_dir in {split_dirs.get(name, name) for name in folders}:
            output_path(tmp, IMG_DIR, split_dir).mkdir()
            output_path(tmp, ANN_DIR, split_dir).mkdir()
        records = ArraySpool(tmp / f".{SAMPLES_JSON}.part")
        split_counts: Counter[str] = Counter()
        for sample in track(folder, "exporting mmseg", total=len(folder)):
            paths = export_paths(sample, suffix, taken, split_dirs)
            _write_image(folder.checked_image_path(sample),
                         output_path(tmp, IMG_DIR, paths.split_dir, paths.image_file), suffix)
            mask = folder.load_checked_mask(sample)
            save_png(lookup[sample.object][mask].astype(np.uint8),
                     output_path(tmp, ANN_DIR, paths.split_dir, paths.mask_file))
            split_counts[paths.split_dir] += 1
            records.append({"image": paths.image_rel, "mask": paths.mask_rel, "object": sample.object,
                            "name": sample.name, "split": sample.split, "caption": sample.caption,
                            "defect_type": sample.defect_type, "synthetic": sample.synthetic})
        classes = [{"index": e.index, "label": e.label, "object": e.object, "class": e.name} for e in entries]
        write_json_atomic(output_path(tmp, CLASSES_JSON), {
            "format": WRITER_FORMAT, "version": 1, "name": folder.name, "classes": classes,
            "objects": {name: {"classes": list(cm.names)} for name, cm in folder.objects.items()},
        })
        write_object(output_path(tmp, SAMPLES_JSON), {"samples": records})
        write_json_atomic(output_path(tmp, METAINFO_JSON), {
            "classes": [e.label for e in entries], "palette": class_colors(len(entries)).tolist()})
        write_text_atomic(output_path(tmp, DATASET_CONFIG), dataset_config(entries, suffix, split_counts))
    return dst
