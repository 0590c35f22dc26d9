"""The mmsegmentation folder layout: reader and writer.

```
<root>/img_dir/<split>/<stem>.<any image extension>
<root>/ann_dir/<split>/<stem><suffix>.png       uint8 class index, 0 = background, 255 = ignore
<root>/classes.json | classes.txt               optional class names
```
Reading a plain mmseg folder gives ONE object (`--object`, else the root folder's name) and keeps
every split folder's name as the split (`unsplit` is read as no split; images directly in
`img_dir/` with masks directly in `ann_dir/` have no split). A split folder with no counterpart in
`ann_dir/` is unlabelled and skipped. Masks pair with images by stem plus an optional suffix
(mmseg's `seg_map_suffix`, e.g. `_labelTrainIds` or `_mask`): `--mask-suffix`, else the suffix
that pairs the most images. The ignore index 255 is read as background.

Class names, first found wins: the `--classes` option; `classes.json` (a list of names, or
`{"classes": [...]}` of names or of objects with a "name"/"label"); `classes.txt` (one name a
line); else `class_1 .. class_N` up to the largest index found in the masks (this reads every
mask once). A name list that starts with "background" (any case) includes index 0; otherwise its
first name is index 1.

`export_mmseg` writes this layout from a DS folder with ONE label space over all objects (the
DS folder's global classes) and two files that let this reader restore the DS folder exactly:
`classes.json` ({"format": "defectspectrum-mmseg", "classes": [{index, label, object, class}],
"objects": per-object class maps}) and `samples.json` (per sample: its files, object, name,
split, caption, defect type, synthetic flag). Samples without a split go to `unsplit/`.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectspectrum.data.classes import (
    BACKGROUND,
    ClassMap,
    class_maps_from_json,
    global_lookup,
)
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import Reader, SourceSample
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import (
    copy_file_atomic,
    list_images,
    read_json,
    read_mask_pixels,
    save_png_atomic,
    staged_folder,
    write_json_atomic,
)
from defectspectrum.paths import safe_name
from defectspectrum.progress import track

IMG_DIR = "img_dir"
ANN_DIR = "ann_dir"
CLASSES_JSON = "classes.json"
CLASSES_TXT = "classes.txt"
SAMPLES_JSON = "samples.json"
WRITER_FORMAT = "defectspectrum-mmseg"
UNSPLIT = "unsplit"
IGNORE_INDEX = 255


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


@register
class MmsegReader(Reader):
    """mmsegmentation's img_dir/<split> + ann_dir/<split> layout (and DS folders exported to it)."""

    name = "mmseg"
    summary = "mmsegmentation layout: img_dir/<split>/<stem>.<ext> + ann_dir/<split>/<stem>[suffix].png (class index)"

    def __init__(self, root: Path, classes: list[str] | None = None, mask_suffix: str | None = None,
                 object_name: str | None = None) -> None:
        super().__init__(root)
        if not self.detect(self.root):
            raise FormatError(f"{self.root}: not an mmseg folder (needs {IMG_DIR}/ and {ANN_DIR}/ side by side)")
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
        samples_path = self.root / SAMPLES_JSON
        if not samples_path.is_file():
            raise FormatError(f"{samples_path}: missing; it lists each exported sample's object and name. "
                              f"Restore it, or delete {CLASSES_JSON} to read the folder as plain mmseg")
        samples = read_json(samples_path)
        samples = samples.get("samples") if isinstance(samples, dict) else None
        if not isinstance(samples, list):
            raise FormatError(f"{samples_path}: expected {{'samples': [...]}}; re-export the folder")
        return {"objects": class_maps, "samples": samples}

    def _names_from_files(self) -> tuple[list[str], Path] | None:
        json_path, txt_path = self.root / CLASSES_JSON, self.root / CLASSES_TXT
        if json_path.is_file():
            data = read_json(json_path)
            entries = data.get("classes") if isinstance(data, dict) else data
            if not isinstance(entries, list):
                raise FormatError(f"{json_path}: expected a list of class names or {{'classes': [...]}}")
            names = []
            for entry in entries:
                name = entry.get("name", entry.get("label")) if isinstance(entry, dict) else entry
                if not isinstance(name, str):
                    raise FormatError(f"{json_path}: class entry {entry!r} has no name; give names as strings")
                names.append(name)
            return names, json_path
        if txt_path.is_file():
            lines = txt_path.read_text(encoding="utf-8").splitlines()
            return [line.strip() for line in lines if line.strip()], txt_path
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
                yield SourceSample(object_name, image.stem, image, MmsegMask(mask, lut, object_name), split=split)

    def _restored_samples(self) -> Iterator[SourceSample]:
        assert self._written is not None
        objects: dict[str, ClassMap] = self._written["objects"]
        luts = {name: _restore_lut(name, objects) for name in objects}
        where = self.root / SAMPLES_JSON
        listed: set[Path] = set()
        for number, entry in enumerate(self._written["samples"], start=1):
            fields = ("image", "mask", "object", "name")
            if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in fields):
                raise FormatError(f"{where}: sample {number} needs string fields image, mask, object and name")
            object_name = entry["object"]
            if object_name not in objects:
                raise FormatError(f"{where}: sample {number} names unknown object {object_name!r}; "
                                  "re-export the folder")
            image, mask = self.root / entry["image"], self.root / entry["mask"]
            for path in (image, mask):
                if not path.is_file():
                    raise FormatError(f"{path}: listed in {where} but missing; restore it or re-export the folder")
            listed.add(image.resolve())
            yield SourceSample(object_name, entry["name"], image, MmsegMask(mask, luts[object_name], object_name),
                               defect_type=entry.get("defect_type"), split=entry.get("split"),
                               caption=entry.get("caption"), synthetic=bool(entry.get("synthetic", False)))
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


def _unique_stem(base: str, split_dir: str, taken: set[tuple[str, str]]) -> str:
    stem, counter = base, 1
    while (split_dir, stem.lower()) in taken:
        counter += 1
        stem = f"{base}-{counter}"
    taken.add((split_dir, stem.lower()))
    return stem


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
    with staged_folder(dst) as tmp:
        records: list[dict[str, Any]] = []
        taken: set[tuple[str, str]] = set()
        for sample in track(list(folder), "exporting mmseg"):
            split_dir = UNSPLIT if sample.split is None else safe_name(sample.split)
            stem = _unique_stem(f"{sample.object}__{sample.name}", split_dir, taken)
            image_rel = f"{IMG_DIR}/{split_dir}/{stem}{Path(sample.image).suffix.lower()}"
            mask_rel = f"{ANN_DIR}/{split_dir}/{stem}.png"
            copy_file_atomic(folder.checked_image_path(sample), tmp / image_rel)
            mask = folder.load_checked_mask(sample)
            save_png_atomic(lookup[sample.object][mask].astype(np.uint8), tmp / mask_rel)
            records.append({"image": image_rel, "mask": mask_rel, "object": sample.object, "name": sample.name,
                            "split": sample.split, "caption": sample.caption, "defect_type": sample.defect_type,
                            "synthetic": sample.synthetic})
        classes = [{"index": e.index, "label": e.label, "object": e.object, "class": e.name} for e in entries]
        write_json_atomic(tmp / CLASSES_JSON, {
            "format": WRITER_FORMAT, "version": 1, "name": folder.name, "classes": classes,
            "objects": {name: {"classes": list(cm.names)} for name, cm in folder.objects.items()},
        })
        write_json_atomic(tmp / SAMPLES_JSON, {"samples": records})
    return dst
