"""The Defect Spectrum release (Hugging Face `DefectSpectrum/Defect_Spectrum`), read and written.

```
<release>/DS-MVTec/<obj>/image/<mvtec_defect_folder>/000.png      (also good/)
<release>/DS-MVTec/<obj>/mask/<folder>/000_mask.png               class indices, 0 = background
<release>/DS-MVTec/<obj>/{rbg_mask,rgb_mask}/...                  colours, for viewing only (never read)
<release>/DS-MVTec/captions.xlsx                                  columns `Path`, `defect description`
<release>/DS-VISION/<Obj>/image/[...]/487.png + <Obj>/mask/487_mask.png
<release>/DS-DAGM/image/133.png + mask/133_mask.png                (flat: one object)
<release>/DS-Cotton-Fabric/image/00960_0001_Slubs.jpg + mask/00960_0001_Slubs_mask.png
<release>/synthetic_<X>/<obj>/{images,masks,masks_converted_dir}/ labels in masks_converted_dir
```
The reader takes the release root, one subset folder or one object folder. Images pair with
masks by stem (`487` <-> `487_mask.png`, else `487.png`): the mask in the image's sub-folder of
the mask folder, else the one at the mask folder's top (VISION: nested images, flat masks).
An image without a class-index mask is an error, except MVTec-style `good/` images (empty mask).
The MVTec defect folder is NOT the class: classes come from the pixel values and the per-object
class maps of the release's `.md` files (`CLASS_MAPS`). Colour masks are never read, and a colour
image in a class-index mask folder is a FormatError (grey saved as RGB/RGBA is accepted).
Captions: `captions.xlsx` in the subset (or object) folder; the header row is found by name
(`Path`, `defect description`, any case/spacing); a Path matches an image when their tails agree
(prefixes such as `DS-MVTec/` allowed, or relative to the object folder; `image/` parts,
extensions, case and `\\` vs `/` ignored).
Sample names: `<defect folder>_<stem>` for DS-MVTec (`broken_large_000`), the stem elsewhere,
`syn_` + that for synthetic images; defect_type is the MVTec defect folder (`good` for
defect-free), the file name's defect for Cotton-Fabric (`Slubs`), else None.

Object names in the DS folder: DS-MVTec objects keep their names (`bottle`); VISION objects are
`vision_<obj lower-cased>` (`vision_capacitor`: VISION's Screw and Wood would clash with MVTec's);
DS-DAGM is `dagm`, DS-Cotton-Fabric `cotton_fabric`. Synthetic subsets reuse the real object's
name and class map and mark their samples synthetic (names prefixed `syn_`). A `classes.json`
(`{"objects": {obj: ["background", ...]}}`) in the subset folder, the object folder or the
reader's root overrides the built-in maps. Any other folder with that layout (e.g. what
`export_ds_release` writes) is read with the folder name as the object name, the image stem as
the sample name (the sub-folder joined in front where stems repeat) and the sub-folder as
defect_type; `--from auto` takes such a folder only where it shows a `classes.json` or a
`rbg_mask/`/`rgb_mask/` folder, so look-alike native layouts go to their own readers.

No splits are shipped (samples get none): `data split` applies the maintainers' rule (VISION's
own split; elsewhere the first 5 images of each defect class train, the rest validate).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import Reader, SourceSample
from defectspectrum.data.sample import GOOD
from defectspectrum.draw import class_colors
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import (
    atomic_path,
    list_images,
    open_regular,
    read_json,
    read_mask_pixels,
    save_png,
    write_json_atomic,
    write_text_atomic,
)
from defectspectrum.paths import is_safe_name, output_path, safe_name
from defectspectrum.progress import track
from defectspectrum.staging import staged_folder

# -- the release's facts (docs/reference.md section 1) ------------------------------------------------------

MVTEC_CLASSES: dict[str, tuple[str, ...]] = {
    "bottle": ("broken_large", "broken_small", "contamination"),
    "cable": ("bent_wire", "cable_swap", "combined", "cut_inner_insulation", "cut_outer_insulation",
              "missing_cable", "missing_wire", "poke_insulation"),
    "capsule": ("crack", "poke", "faulty_imprint", "scratch", "squeeze"),
    "carpet": ("color", "cut", "hole", "metal_contamination", "thread"),
    "grid": ("bent", "broken", "glue", "metal_contamination", "thread"),
    "hazelnut": ("cut", "crack", "hole", "print"),
    "leather": ("color", "cut", "fold", "glue", "poke"),
    "metal_nut": ("scratch", "bent", "color"),
    "pill": ("color", "contamination", "crack", "faulty_imprint", "scratch", "pill_type"),
    "screw": ("manipulated_front", "scratch_head", "scratch_neck", "thread_side", "thread_top"),
    "tile": ("crack", "glue_strip", "gray_stroke", "oil", "rough"),
    "toothbrush": ("contamination", "missing", "messy"),
    "transistor": ("bent_lead", "cut_lead", "damaged_case", "misplaced"),
    "wood": ("color", "crack", "scratch", "hole", "liquid"),
    "zipper": ("broken_teeth", "fabric_border", "fabric_interior", "split_teeth", "squeezed_teeth"),
}
VISION_CLASSES: dict[str, tuple[str, ...]] = {  # keyed by the release's capitalised folder names
    "Capacitor": ("scratch", "crush", "crack"),
    "Console": ("scratch", "bump", "dirty", "gap"),
    "Groove": ("scratch", "abrasion"),
    "Ring": ("friction", "scratch", "texture", "color"),
    "Screw": ("bump", "crush", "fiber"),
    "Wood": ("point", "friction", "scratch", "dirty"),
}
DAGM_OBJECT, DAGM_CLASSES = "dagm", ("scratch", "texture", "crush", "color", "dirty")
COTTON_OBJECT, COTTON_CLASSES = "cotton_fabric", ("texture", "bubble")


def vision_object(folder_name: str) -> str:
    """The DS object name of a VISION object folder (`Capacitor` -> `vision_capacitor`)."""
    return f"vision_{safe_name(folder_name).lower()}"


CLASS_MAPS: dict[str, ClassMap] = {
    **{name: ClassMap.from_defects(defects) for name, defects in MVTEC_CLASSES.items()},
    **{vision_object(name): ClassMap.from_defects(defects) for name, defects in VISION_CLASSES.items()},
    DAGM_OBJECT: ClassMap.from_defects(DAGM_CLASSES),
    COTTON_OBJECT: ClassMap.from_defects(COTTON_CLASSES),
}

# normalised subset folder name -> (kind, synthetic), in release order
SUBSETS: dict[str, tuple[str, bool]] = {
    "ds_mvtec": ("mvtec", False),
    "ds_vision": ("vision", False),
    "ds_dagm": ("dagm", False),
    "ds_cotton_fabric": ("cotton", False),
    "synthetic_mvtec": ("mvtec", True),
    "synthetic_vision": ("vision", True),
    "synthetic_dagm": ("dagm", True),
    "synthetic_cotton_fabric": ("cotton", True),
}
FLAT_OBJECTS = {"dagm": DAGM_OBJECT, "cotton": COTTON_OBJECT}  # kinds whose every folder is one object
CLASSES_FILE = "classes.json"
CAPTIONS_FILE = "captions.xlsx"
COLOUR_MASK_DIRS = ("rbg_mask", "rgb_mask")
_IMAGE_DIRS = ("image", "images")
_COTTON_NAME = re.compile(r"^\d+_\d+_(.+)$")


def _subset_key(name: str) -> str:
    return re.sub(r"[-\s]+", "_", name.strip()).lower()


# -- layout discovery -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseMask:
    """Recipe: a class-index mask file of the release (grey, or RGB with equal channels)."""

    path: Path


@dataclass(frozen=True)
class _Unit:
    """One folder holding an image folder and its class-index mask folder."""

    folder: Path
    subset: Path  # the folder whose classes.json / captions.xlsx apply (the object folder for flat subsets)
    object: str
    kind: str  # mvtec | vision | dagm | cotton | generic
    synthetic: bool
    image_dir: Path
    mask_dir: Path


def _unit_dirs(folder: Path) -> tuple[Path, Path] | None:
    """(image dir, class-index mask dir) where `folder` holds a real or synthetic object's data."""
    if (folder / "images").is_dir() and (folder / "masks_converted_dir").is_dir():
        return folder / "images", folder / "masks_converted_dir"
    if (folder / "image").is_dir() and (folder / "mask").is_dir():
        return folder / "image", folder / "mask"
    return None


def _looks_synthetic(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "masks").is_dir()


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _make_unit(folder: Path, subset: Path, kind: str | None, synthetic: bool) -> _Unit:
    dirs = _unit_dirs(folder)
    if dirs is None:
        if synthetic and _looks_synthetic(folder):
            raise FormatError(f"{folder}: no masks_converted_dir/; the synthetic labels are read from it "
                              "(masks/ holds colours that do not match the real data)")
        raise FormatError(f"{folder}: expected image/ + mask/ (or images/ + masks_converted_dir/) folders")
    if kind in FLAT_OBJECTS:
        name = FLAT_OBJECTS[kind]
    elif kind == "vision":
        name = vision_object(folder.name)
    elif kind == "mvtec":
        name = safe_name(folder.name)
    else:
        name, kind = safe_name(folder.name), "generic"
    return _Unit(folder, subset, name, kind, synthetic, *dirs)


def _subset_units(folder: Path, kind: str | None, synthetic: bool) -> list[_Unit]:
    """The object folders of one subset folder (or the folder itself, for a flat subset)."""
    if _unit_dirs(folder) is not None:
        return [_make_unit(folder, folder, kind, synthetic)]
    units = []
    for child in _subdirs(folder):
        if _unit_dirs(child) is not None or (synthetic and _looks_synthetic(child)):
            units.append(_make_unit(child, folder, kind, synthetic))
    return units


def _known_subset(folder: Path) -> tuple[str, bool] | None:
    return SUBSETS.get(_subset_key(folder.name))


def discover(root: Path) -> list[_Unit]:
    """Every object folder under `root` (release root, subset folder or object folder)."""
    root = Path(root)
    own = _known_subset(root)
    if own is not None:
        return _subset_units(root, *own)
    if _unit_dirs(root) is not None:
        parent = _known_subset(root.parent)
        if parent is not None:
            return [_make_unit(root, root.parent, *parent)]
        return [_make_unit(root, root.parent if (root.parent / CLASSES_FILE).is_file() else root, None, False)]
    subsets = [(child, _known_subset(child)) for child in _subdirs(root)]
    known = [(child, spec) for child, spec in subsets if spec is not None]
    if known:
        order = list(SUBSETS)
        known.sort(key=lambda item: (order.index(_subset_key(item[0].name)), item[0].name))
        return [unit for child, spec in known for unit in _subset_units(child, *spec)]
    return _subset_units(root, None, False)


def _is_native_mvtec(root: Path) -> bool:
    def category(folder: Path) -> bool:
        return (folder / "test").is_dir() and (folder / "ground_truth").is_dir()

    return category(root) or any(category(child) for child in _subdirs(root))


# -- class maps and captions ------------------------------------------------------------------------------------


def read_classes_file(path: Path) -> dict[str, ClassMap]:
    """A `classes.json` ({"objects": {obj: ["background", ...]}}) as class maps, or InputError."""
    data = read_json(path)
    objects = data.get("objects") if isinstance(data, dict) else None
    if not isinstance(objects, dict):
        raise InputError(f"{path}: expected {{\"objects\": {{object: [\"background\", class, ...]}}}}; fix the file")
    maps = {}
    for name, classes in objects.items():
        if not isinstance(classes, list):
            raise InputError(f"{path}: object {name!r} needs a list of class names starting with 'background'")
        try:
            maps[str(name)] = ClassMap(tuple(classes))
        except InputError as exc:
            raise InputError(f"{path}: object {name!r}: {exc}") from exc
    return maps


def _normalise_header(value: Any) -> str:
    return re.sub(r"[\s_]+", " ", str(value or "")).strip().lower()


def _unreadable_workbook(path: Path, exc: Exception) -> InputError:
    reason = (str(exc).strip().splitlines() or [""])[0]  # openpyxl's messages may run over several lines
    return InputError(f"{path}: cannot read the caption workbook ({type(exc).__name__}: {reason}); "
                      "re-save it as .xlsx or remove it")


MAX_WORKBOOK_BYTES = 256 * 1024 * 1024  # unpacked size of a captions.xlsx (the release's is a few MB)


def _check_workbook_size(path: Path) -> None:
    """InputError for a workbook whose parts unpack to more than MAX_WORKBOOK_BYTES (a zip bomb), read
    from the zip directory before anything is inflated (reading stops at the sizes it declares)."""
    import zipfile

    try:
        with open_regular(path) as handle, zipfile.ZipFile(handle) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _unreadable_workbook(path, exc) from exc
    if unpacked > MAX_WORKBOOK_BYTES:
        raise InputError(f"{path}: the caption workbook unpacks to {unpacked} bytes, more than the "
                         f"{MAX_WORKBOOK_BYTES} a captions file may take (a guard against zip bombs); "
                         "remove it or keep only the Path and defect description columns")


def read_captions(path: Path) -> dict[tuple[str, ...], str]:
    """`captions.xlsx` as {path key: caption}; keys come from `caption_key`. InputError if malformed
    or larger than MAX_WORKBOOK_BYTES once unpacked."""
    import openpyxl

    _check_workbook_size(path)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile.BadZipFile, InvalidFileException and parser errors share no base
        raise _unreadable_workbook(path, exc) from exc
    captions: dict[tuple[str, ...], str] = {}
    found = False
    try:
        for sheet in workbook.worksheets:
            columns: tuple[int, int] | None = None
            for row in sheet.iter_rows(values_only=True):
                if columns is None:
                    header = [_normalise_header(cell) for cell in row]
                    if "path" in header and "defect description" in header:
                        columns = header.index("path"), header.index("defect description")
                        found = True
                    continue
                path_cell = row[columns[0]] if columns[0] < len(row) else None
                text = row[columns[1]] if columns[1] < len(row) else None
                if path_cell is None or text is None or not str(text).strip() or not str(path_cell).strip():
                    continue
                captions.setdefault(caption_key(str(path_cell)), str(text).strip())
    except Exception as exc:  # a damaged sheet fails while it is streamed
        raise _unreadable_workbook(path, exc) from exc
    finally:
        workbook.close()
    if not found:
        raise InputError(f"{path}: no header row with 'Path' and 'defect description' columns; "
                         "add them or remove the file")
    return captions


def caption_key(path: str) -> tuple[str, ...]:
    """A path's match key: lower-case parts, `/` or `\\` separated, `image(s)` parts and extension dropped."""
    parts = [p for p in re.split(r"[\\/]+", path.strip().lower()) if p and p != "."]
    if parts:
        parts[-1] = PurePosixPath(parts[-1]).stem
    return tuple(p for p in parts if p not in _IMAGE_DIRS)


class _Captions:
    """Caption lookup by image path: the workbook's Path may carry a prefix (`DS-MVTec/...`) or be
    relative to the object folder; `image/` parts and extensions are ignored; case-insensitive.

    The first row (in workbook order) whose key ends with the image's key wins. Rows are indexed by
    their last part only, so memory stays linear in the workbook however deep a Path is."""

    def __init__(self, captions: Mapping[tuple[str, ...], str]) -> None:
        self.exact = dict(captions)
        self.by_last: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for key, text in captions.items():
            if key:
                self.by_last.setdefault(key[-1], []).append((key, text))

    def find(self, object_folder: str, relative: PurePosixPath) -> str | None:
        key = caption_key(f"{object_folder}/{relative.as_posix()}")
        for candidate, text in self.by_last.get(key[-1], ()) if key else ():
            if len(candidate) >= len(key) and candidate[len(candidate) - len(key):] == key:
                return text
        return self.exact.get(key[1:])


# -- the reader ----------------------------------------------------------------------------------------------------


def _mask_index(mask_dir: Path) -> dict[tuple[str, str], Path]:
    """Mask files by (sub-folder, stem without `_mask`); `_mask` files win over bare stems. A broken
    entry named like a mask is a FormatError (`io.list_images`), never a missing mask."""
    nested: dict[tuple[str, str], Path] = {}
    for path in list_images(mask_dir, recursive=True):
        relative = path.relative_to(mask_dir)
        stem = path.stem
        base = stem[: -len("_mask")] if stem.endswith("_mask") else stem
        key = (relative.parent.as_posix(), base)
        if key not in nested or stem.endswith("_mask"):
            nested[key] = path
    return nested


def _images(image_dir: Path) -> list[Path]:
    return sorted(list_images(image_dir, recursive=True), key=lambda p: p.relative_to(image_dir).as_posix())


@register
class DSReleaseReader(Reader):
    """The Defect Spectrum release: real and synthetic subsets, class-index masks, captions."""

    name = "ds-release"
    summary = ("Defect Spectrum release (root, subset or object folder): <obj>/image/... + <obj>/mask/..._mask.png "
               "class indices; synthetic_*/<obj>/images + masks_converted_dir; DS-MVTec/captions.xlsx")

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.units = discover(self.root)
        if not self.units:
            raise FormatError(f"{self.root}: no Defect Spectrum object folder (image/ + mask/, or images/ + "
                              "masks_converted_dir/) found; pass the release root, a subset or an object folder")
        self._maps = self._resolve_class_maps()

    @classmethod
    def detect(cls, root: Path) -> bool:
        root = Path(root)
        if _is_native_mvtec(root):
            return False
        if _known_subset(root) or any(_known_subset(child) for child in _subdirs(root)):
            return True
        try:
            units = discover(root)
        except (FormatError, OSError):
            return False
        # outside a subset-named folder, ask for a sign of the release (a class file, colour masks), so that
        # look-alike native layouts (Cotton-Fabric's image/ + mask/ with binary masks) are left to their readers
        return any(_known_subset(u.folder.parent) or (u.subset / CLASSES_FILE).is_file()
                   or (u.folder / CLASSES_FILE).is_file()
                   or any((u.folder / name).is_dir() for name in COLOUR_MASK_DIRS) for u in units)

    def _classes_files(self, unit: _Unit) -> list[Path]:
        candidates = [unit.folder / CLASSES_FILE, unit.subset / CLASSES_FILE, self.root / CLASSES_FILE]
        unique: list[Path] = []
        for path in candidates:
            if path.is_file() and path not in unique:
                unique.append(path)
        return unique

    def _resolve_class_maps(self) -> dict[str, ClassMap]:
        files: dict[Path, dict[str, ClassMap]] = {}
        maps: dict[str, ClassMap] = {}
        origin: dict[str, str] = {}
        for unit in self.units:
            found: tuple[ClassMap, str] | None = None
            for path in self._classes_files(unit):
                if path not in files:
                    files[path] = read_classes_file(path)
                if unit.object in files[path]:
                    found = files[path][unit.object], str(path)
                    break
            if found is None and unit.object in CLASS_MAPS:
                found = CLASS_MAPS[unit.object], "the built-in Defect Spectrum class maps"
            if found is None:
                raise FormatError(
                    f"{unit.folder}: object {unit.object!r} is not in the Defect Spectrum class maps; add a "
                    f"{CLASSES_FILE} beside it ({{\"objects\": {{\"{unit.object}\": [\"background\", ...]}}}})"
                )
            class_map, where = found
            if unit.object in maps and maps[unit.object] != class_map:
                raise FormatError(f"{unit.folder}: object {unit.object!r} has classes {list(class_map.names)} from "
                                  f"{where} but {list(maps[unit.object].names)} from {origin[unit.object]}; "
                                  "make them agree")
            maps.setdefault(unit.object, class_map)
            origin.setdefault(unit.object, where)
        return maps

    def class_maps(self) -> dict[str, ClassMap]:
        return dict(self._maps)

    def _captions(self, unit: _Unit, cache: dict[Path, _Captions | None]) -> _Captions | None:
        for folder in dict.fromkeys((unit.subset, unit.folder)):
            path = folder / CAPTIONS_FILE
            if path not in cache:
                cache[path] = _Captions(read_captions(path)) if path.is_file() else None
            if cache[path] is not None:
                return cache[path]
        return None

    def samples(self) -> Iterator[SourceSample]:
        cache: dict[Path, _Captions | None] = {}
        for unit in self.units:
            captions = self._captions(unit, cache)
            yield from self._unit_samples(unit, captions)

    def _unit_samples(self, unit: _Unit, captions: _Captions | None) -> Iterator[SourceSample]:
        masks = _mask_index(unit.mask_dir)
        images = _images(unit.image_dir)
        stems: dict[str, Path] = {}
        for image in images:
            stems.setdefault(image.stem.lower(), image)
        unique_stems = len(stems) == len(images)
        for image in images:
            relative = PurePosixPath(image.relative_to(unit.image_dir).as_posix())
            folder = relative.parent.as_posix()
            # the mask in the same sub-folder, else (VISION: nested images, flat masks) at the top
            mask = masks.get((folder, image.stem)) or masks.get((".", image.stem))
            defect_type = self._defect_type(unit, relative)
            if mask is None and defect_type != GOOD:
                raise FormatError(self._missing_mask(unit, image))
            if unit.kind in ("mvtec", "generic") and not (unit.kind == "generic" and unique_stems):
                name = "_".join((*relative.parent.parts, image.stem))
            else:
                name = image.stem
            yield SourceSample(
                object=unit.object,
                name=f"syn_{name}" if unit.synthetic else name,
                image=image,
                mask=ReleaseMask(mask) if mask is not None else None,
                defect_type=defect_type,
                caption=captions.find(unit.folder.name, relative) if captions is not None else None,
                synthetic=unit.synthetic,
            )

    @staticmethod
    def _defect_type(unit: _Unit, relative: PurePosixPath) -> str | None:
        if unit.kind in ("mvtec", "generic") and len(relative.parts) > 1:
            return relative.parts[0]
        if unit.kind == "cotton":
            match = _COTTON_NAME.match(relative.stem)
            return match.group(1) if match else None
        return None

    @staticmethod
    def _missing_mask(unit: _Unit, image: Path) -> str:
        hint = ""
        if any((unit.folder / name).is_dir() for name in COLOUR_MASK_DIRS):
            hint = " (colour masks in rbg_mask/ or rgb_mask/ are for viewing only and are not converted)"
        return (f"{image}: no class-index mask {image.stem}_mask.png for it in {unit.mask_dir}{hint}; "
                "add the mask or remove the image")

    def load_mask(self, sample: SourceSample, size: tuple[int, int]) -> np.ndarray:
        recipe = sample.mask
        if not isinstance(recipe, ReleaseMask):
            return super().load_mask(sample, size)
        pixels = read_mask_pixels(recipe.path)
        if pixels.ndim == 3:
            if not (np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])):
                raise FormatError(
                    f"{recipe.path}: a colour mask where single-channel class indices belong; the release's colour "
                    "masks (rbg_mask/, rgb_mask/, synthetic masks/) are for viewing only: use the class-index mask"
                )
            pixels = pixels[..., 0]
        return np.ascontiguousarray(pixels)


# -- the writer ----------------------------------------------------------------------------------------------------


def _classes_markdown(objects: Mapping[str, ClassMap]) -> str:
    lines = ["# Class maps", "", "Mask pixel value = class index; 0 is background. "
             f"`{CLASSES_FILE}` holds the same maps for readers.", ""]
    for name, class_map in objects.items():
        lines += [f"## {name}", "", "| index | class |", "|---|---|"]
        lines += [f"| {index} | {cls} |" for index, cls in enumerate(class_map.names)]
        lines.append("")
    return "\n".join(lines)


MAX_CELL_CHARS = 32767  # what one cell of an .xlsx workbook holds (openpyxl cuts longer text silently)
_NOT_IN_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # control characters an .xlsx cannot hold


def check_caption(caption: str, where: str) -> None:
    """InputError unless `caption` fits one cell of captions.xlsx unchanged (exports never cut or drop one)."""
    if len(caption) > MAX_CELL_CHARS:
        raise InputError(f"{where}: its caption has {len(caption)} characters, more than the "
                         f"{MAX_CELL_CHARS} a captions.xlsx cell holds; shorten it (or export to coco or mmseg, "
                         "which keep it whole)")
    found = _NOT_IN_XLSX.search(caption)
    if found:
        raise InputError(f"{where}: its caption holds the control character {found.group()!r}, which "
                         "captions.xlsx cannot hold; remove it from the caption")


def _write_captions(rows: list[tuple[str, str]], path: Path) -> None:
    """The captions workbook; every cell a text cell (a caption starting with '=' is text, never a formula)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "captions"
    for row in [("Path", "defect description"), *rows]:
        sheet.append(list(row))
        for cell in sheet[sheet.max_row]:
            cell.data_type = "s"
    with atomic_path(path) as tmp:
        workbook.save(tmp)


def _release_file(out: Path, object_name: str, kind: str, group: str, name: str, tail: str) -> Path:
    """`out/<object>/<kind>/<group>/<name><tail>`: the folders through `output_path`, the name checked
    to be a safe name and `tail` a fixed ending, so that no name taken from the index leaves `out`. The
    folders are created."""
    if not is_safe_name(name):
        raise InputError(f"{out}: refusing to write sample {name!r}: a sample name must be letters, digits, '.', "
                         "'_' or '-' (pass it through safe_name)")
    folder = output_path(out, object_name, kind, group)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}{tail}"


def export_ds_release(folder: DSFolder, dst: Path) -> Path:
    """Write `folder` in the DS-MVTec layout at the new folder `dst`; returns `dst`.

    Per object: `image/<defect_type or 'defect'>/<name>.<ext>` (image bytes copied),
    `mask/<...>/<name>_mask.png` (class indices), `rbg_mask/<...>/<name>_rbg_mask.png` (colours, for
    viewing). At the top: `classes.json` (read back by the `ds-release` reader, so any object
    round-trips), `classes.md`, and `captions.xlsx` where samples have captions (text cells, so a
    caption starting with '=' stays text; one a cell cannot hold unchanged, over 32767 characters or
    with control characters, is refused before anything is written). Splits and the synthetic flag
    are not part of the release layout and are not written. Every file name is derived through
    `paths.output_path` / `safe_name` (see `_release_file`).
    """
    dst = Path(dst)
    for sample in folder:
        if sample.caption:
            check_caption(sample.caption, f"{folder.root}: sample {sample.id!r}")
    colours = {name: class_colors(len(class_map)) for name, class_map in folder.objects.items()}
    captions: list[tuple[str, str]] = []
    with staged_folder(dst) as out:
        for sample in track(list(folder), "exporting ds-release"):
            group = safe_name(sample.defect_type) if sample.defect_type else "defect"
            source = folder.image_path(sample)
            suffix = f".{safe_name(source.suffix[1:].lower())}" if source.suffix else ""
            image_file = _release_file(out, sample.object, "image", group, sample.name, suffix)
            shutil.copyfile(folder.checked_image_path(sample), image_file)  # plain writes: `out` is staged
            mask = folder.load_checked_mask(sample)
            save_png(mask, _release_file(out, sample.object, "mask", group, sample.name, "_mask.png"))
            save_png(colours[sample.object][mask],
                     _release_file(out, sample.object, "rbg_mask", group, sample.name, "_rbg_mask.png"))
            if sample.caption:
                captions.append((image_file.relative_to(out).as_posix(), sample.caption))
        write_json_atomic(out / CLASSES_FILE,
                          {"objects": {name: list(cm.names) for name, cm in folder.objects.items()}})
        write_text_atomic(out / "classes.md", _classes_markdown(folder.objects))
        if captions:
            _write_captions(captions, out / CAPTIONS_FILE)
    return dst
