"""The DS folder: the one on-disk format every stage reads and writes.

```
<root>/dataset.json      {"format": "defectspectrum", "version": 1, "name", "objects": {obj: {"classes": [...]}}}
<root>/samples.jsonl     one Sample per line, paths relative to <root>
<root>/<object>/images/<name>.<png|jpg|bmp>
<root>/<object>/masks/<name>.png   uint8 class index, 0 = background, per-object class map
```

The index is checked on open, so that nothing read from it can lead outside the folder or be
lost on the next save (SchemaError naming `dataset.json` or `samples.jsonl:<line>`):
- object names (the keys of `objects`) are safe names (`paths.is_safe_name`): they name folders;
- every line is a JSON object with typed fields (see `sample.py`) whose `id` is `<object>/<name>`,
  `object` being the line's object (one of dataset.json's) and `name` a safe name;
- ids are unique, also ignoring case (`pill/A` and `pill/a` would share files on Windows and
  macOS); a repeated id names both lines;
- `image` and `mask` are relative paths inside the folder (`paths.relative_path`), also once
  symbolic links are followed (`paths.Containment`: one listing per folder, no call per file).

Samples added in Python (`add_sample`, `add_record`, `update`) are held to the same rules, and
`image_path`/`mask_path` check again before they hand out a path. (Which entries are symbolic links
is learnt once per folder and DSFolder: a link made later in a folder already listed is not seen.)

`DSFolder.open(root, lenient=True)` skips bad lines instead, recording each as an `IndexProblem`
in `folder.problems` (what `data validate` reports); such a folder refuses to `save()`, which
would drop those lines.
"""

from __future__ import annotations

import json
import os
import shutil
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, Any

import numpy as np
from PIL import Image

from defectspectrum.data.classes import (
    ClassMap,
    GlobalClass,
    class_maps_from_json,
    global_classes,
)
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError, SchemaError
from defectspectrum.io import (
    KEEP_AS_IS_EXTENSIONS,
    atomic_path,
    check_image_file,
    direct_path,
    image_size,
    mask_indices,
    open_image,
    open_regular,
    read_json,
    read_rgb,
    save_png,
    to_png_mode,
    write_json_atomic,
    write_text_atomic,
)
from defectspectrum.paths import Containment, check_relative, is_safe_name, output_path, safe_name, unique_name
from defectspectrum.staging import TEMP_FILE, staged_folder

FORMAT = "defectspectrum"
VERSION = 1
DATASET_FILE = "dataset.json"
SAMPLES_FILE = "samples.jsonl"
STORED_IMAGE_SUFFIXES = (".png", ".jpg", ".bmp")  # what write_sample_files writes images as


@dataclass(frozen=True)
class IndexProblem:
    """A samples.jsonl line that `DSFolder.open(root, lenient=True)` left out; `message` is the one
    line a strict open raises (it starts with `<root>/samples.jsonl:<line>:`)."""

    line: int
    sample: str | None  # the line's id, where it has a string one
    message: str


def _check_names(object_name: str, name: str, image_suffix: str = ".png") -> None:
    for part in (object_name, name):
        if not is_safe_name(part):
            raise InputError(f"refusing to write sample {object_name!r}/{name!r}: object and sample names must be "
                             "letters, digits, '.', '_' or '-' (pass them through safe_name)")
    if image_suffix not in STORED_IMAGE_SUFFIXES:
        raise InputError(f"refusing to write an image with suffix {image_suffix!r}: a DS folder stores "
                         f"{', '.join(STORED_IMAGE_SUFFIXES)}")


def sample_paths(object_name: str, name: str, image_suffix: str = ".png") -> tuple[str, str]:
    """Relative (image, mask) paths of a sample inside a DS folder; InputError unless the object and
    sample name are safe names (`paths.is_safe_name`), so that no path built here leaves the folder."""
    _check_names(object_name, name, image_suffix)
    return f"{object_name}/images/{name}{image_suffix}", f"{object_name}/masks/{name}.png"


def check_mask(mask: np.ndarray, class_map: ClassMap, where: str) -> np.ndarray:
    """`mask` as a uint8 (H, W) index array whose values are all in `class_map`, or InputError."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"{where}: a class-index mask must be 2-D, got shape {mask.shape}")
    top = int(mask.max(initial=0))
    if top >= len(class_map) or int(mask.min(initial=0)) < 0:
        raise InputError(
            f"{where}: mask index {top} is outside the class map {list(class_map.names)}; "
            "fix the mask or add the class to the object's class map"
        )
    return mask.astype(np.uint8, copy=False)


def kept_as_is(image: Path | np.ndarray | Image.Image) -> bool:
    """Whether `write_sample_files` copies `image` byte for byte: a PNG/JPEG/BMP file."""
    return isinstance(image, Path) and image.suffix.lower() in KEEP_AS_IS_EXTENSIONS


def write_sample_files(
    root: Path, object_name: str, name: str, image: Path | np.ndarray | Image.Image, mask: np.ndarray,
    decoded: Image.Image | None = None, atomic: bool = True, checked: bool = False,
) -> tuple[str, str]:
    """Write one sample's image and mask under `root`; returns their relative paths.

    A PNG/JPEG/BMP source file is copied byte for byte (no re-encoding loss); other formats, PIL images
    and arrays are saved as PNG (grey stays grey). A source file is checked first (`io.check_image_file`)
    unless the caller did: `decoded` is that decoded, checked file, or `checked` says the caller checked it.
    Each file is written atomically unless `atomic` is false, for a `root` that is a private staging
    folder (one rename publishes it all).
    """
    keep = kept_as_is(image)
    suffix = Path(image).suffix.lower() if keep and isinstance(image, Path) else ".png"
    suffix = ".jpg" if suffix == ".jpeg" else suffix
    image_rel, mask_rel = sample_paths(object_name, name, suffix)  # checks both names
    image_file = output_path(root, object_name, "images") / f"{name}{suffix}"
    mask_file = output_path(root, object_name, "masks") / f"{name}.png"
    output = atomic_path if atomic else direct_path
    with output(image_file) as target:
        if keep and isinstance(image, Path):
            if decoded is None and not checked:
                check_image_file(image)  # a damaged or oversized image is an error, never a copy
            shutil.copyfile(image, target)
        else:
            if isinstance(image, Path):
                image = decoded if decoded is not None else open_image(image)
            save_png(to_png_mode(image) if isinstance(image, Image.Image) else image, target)
    with output(mask_file) as target:
        save_png(mask, target)
    return image_rel, mask_rel


def check_output_folder(root: Path, overwrite: bool = False) -> bool:
    """Refuse an output folder that exists and is not empty, except a DS folder with `overwrite`.

    Returns True where `root` is an existing DS folder that may be replaced.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: exists and is not a folder; choose a new output folder")
    if not root.exists() or not any(root.iterdir()):
        return False
    if not DSFolder.is_ds_folder(root):
        raise InputError(f"{root}: exists, is not empty and is not a DS folder; choose a new output folder")
    if not overwrite:
        raise InputError(f"{root}: is already a DS folder; pass --overwrite to replace it or choose a new folder")
    return True


@contextmanager
def staged_ds_folder(root: Path, overwrite: bool = False, kept: list[str] | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside `root` to write a DS folder into; on success it takes
    `root`'s place, on failure `root` is left as it was (see `staging.staged_folder`).

    An old DS folder at `root` (allowed by `overwrite`) is replaced only then, and files of the
    user's own in it (not named by its index) are carried into the new folder, refusing on a name
    clash; `kept`, where given, receives their relative paths.
    """

    def carry(old: Path, new: Path) -> None:
        moved = carry_user_files(old, new)
        if kept is not None:
            kept[:] = moved

    with staged_folder(root, may_replace=lambda path: check_output_folder(path, overwrite), carry=carry) as staging:
        yield staging


def index_files(root: Path) -> set[str]:
    """The files a DS folder's index owns, relative to `root`: dataset.json, samples.jsonl and every
    sample's image and mask (read leniently: a damaged line owns nothing)."""
    owned = {DATASET_FILE, SAMPLES_FILE}
    path = Path(root) / SAMPLES_FILE
    try:
        with open_regular(path) as handle:
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return owned
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror}); fix its permissions") from exc
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            owned.update(os.path.normpath(record[key]).replace(os.sep, "/") for key in ("image", "mask")
                         if isinstance(record.get(key), str) and record[key])
    return owned


def _clashes(new: Path, rel: str) -> bool:
    """Would `rel` (a file, or a folder where it ends in '/') clash with what `new` holds?"""
    target = new / rel.rstrip("/")
    for parent in target.relative_to(new).parents:
        if parent != Path(".") and ((new / parent).is_symlink() or (new / parent).is_file()):
            return True
    if rel.endswith("/"):
        return os.path.lexists(target) and (target.is_symlink() or not target.is_dir())
    return os.path.lexists(target)


def carry_user_files(old: Path, new: Path) -> list[str]:
    """Bring the files of the user's own in the DS folder `old` (all but what its index owns) to the
    same place in the new DS folder `new` (hard-linked, else copied; `old` is unchanged); returns
    their relative paths. InputError, before anything is carried, where one would clash with `new`."""
    owned = index_files(old)
    plan: list[str] = []
    for folder, subfolders, files in os.walk(old):
        here = Path(folder).relative_to(old)
        for name in list(subfolders):
            if (Path(folder) / name).is_symlink():  # a link to a folder is carried as a link
                subfolders.remove(name)
                files.append(name)
        if not files and not subfolders and here != Path("."):
            plan.append(here.as_posix() + "/")  # an empty folder of the user's
        plan += [(here / name).as_posix() for name in sorted(files)
                 if (here / name).as_posix() not in owned and not TEMP_FILE.fullmatch(name)]
    for rel in plan:
        if _clashes(new, rel):
            raise InputError(f"{old / rel.rstrip('/')}: a file of yours in the DS folder being replaced has the name "
                             "of a file of the new one; move it out of the folder and run again")
    for rel in plan:
        source, target = old / rel.rstrip("/"), new / rel.rstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            target.mkdir(exist_ok=True)
        elif source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
    return plan


class DSFolder:
    """A DS folder in memory: class maps per object and the sample list; files stay on disk.

    Create with `DSFolder.create(root)`, open with `DSFolder.open(root)`; add samples with
    `add_sample` and call `save()` (or use the folder as a context manager) to write the index.
    `objects` is a read-only view: register objects with `add_object`.
    """

    def __init__(self, root: Path, name: str, objects: Mapping[str, ClassMap], samples: Iterable[Sample] = (),
                 meta: Mapping[str, Any] | None = None) -> None:
        self._root = Path(root)
        self._containment: Containment | None = None
        self.name = name
        self._objects: dict[str, ClassMap] = {}
        for object_name, class_map in objects.items():
            self.add_object(object_name, class_map)
        self.meta: dict[str, Any] = dict(meta or {})
        self._samples: dict[str, Sample] = {}
        self._capitalised: dict[str, str] = {}  # lower-case id -> id, for ids with capitals (`_id_clash`)
        self.problems: tuple[IndexProblem, ...] = ()  # lines a lenient open left out
        self._index_seen: IndexState | None = None  # the index files as read or last saved (None: not known)
        for sample in samples:
            self.add_record(sample)

    @property
    def root(self) -> Path:
        return self._root

    @root.setter
    def root(self, root: Path) -> None:  # e.g. after a staging folder was renamed into place
        self._root = Path(root)
        self._containment = None

    @property
    def objects(self) -> Mapping[str, ClassMap]:
        """Class map per object, read-only (`add_object` registers one)."""
        return MappingProxyType(self._objects)

    # -- opening and creating ------------------------------------------------------------------

    @staticmethod
    def is_ds_folder(root: Path) -> bool:
        """True where `root/dataset.json` declares the defectspectrum format."""
        try:
            data = read_json(Path(root) / DATASET_FILE)
        except (OSError, InputError):
            return False
        return isinstance(data, dict) and data.get("format") == FORMAT

    @classmethod
    def create(cls, root: Path, name: str | None = None, objects: Mapping[str, Sequence[str] | ClassMap] | None = None,
               overwrite: bool = False) -> DSFolder:
        """A new, empty DS folder at `root` (written at once).

        Refuses a `root` that exists and is not empty, except an existing DS folder when
        `overwrite` is true: that one is replaced as `data convert --overwrite` replaces it (built
        beside it, swapped in complete, files of the user's own carried over); nothing else is
        ever deleted.
        """
        root = Path(root)
        if check_output_folder(root, overwrite):
            with staged_ds_folder(root, overwrite=True) as staging:
                folder = cls.create(staging, name or root.name, objects)
            folder.root = root
            return folder
        folder = cls(root, name or root.name, {})
        for object_name, classes in (objects or {}).items():
            folder.add_object(object_name, classes)
        folder.save()
        return folder

    @classmethod
    def open(cls, root: Path, *, lenient: bool = False) -> DSFolder:
        """Read a DS folder's index, checking its format, schema version and every line (see the
        module docstring); SchemaError naming `dataset.json` or `samples.jsonl:<line>`.

        With `lenient`, bad samples.jsonl lines are left out and listed in `folder.problems`
        instead (dataset.json must still be sound: without its class maps no line can be checked).
        """
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: folder not found; check the path")
        seen = index_state(root)  # before reading: a change made while it is read shows at save()
        dataset_path = root / DATASET_FILE
        if not os.path.lexists(dataset_path):  # (one that is a folder, pipe or broken link: read_json says so)
            raise SchemaError(f"{root}: not a DS folder (no {DATASET_FILE}); "
                              "convert it first with `defectspectrum data convert`")
        try:
            data = read_json(dataset_path)
        except InputError as exc:  # malformed index: a schema problem (message names file, line, column)
            raise SchemaError(str(exc)) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SchemaError(f"{dataset_path}: not a defectspectrum dataset.json (format must be {FORMAT!r})")
        version = data.get("version")
        if version != VERSION:
            raise SchemaError(
                f"{dataset_path}: schema version {version!r} is not supported (this defectspectrum reads version "
                f"{VERSION}); upgrade defectspectrum or re-convert the data"
            )
        name = data.get("name", "")
        if not isinstance(name, str):
            raise SchemaError(f"{dataset_path}: 'name' must be a string, not {name!r}; fix the file")
        class_maps = class_maps_from_json(data.get("objects"), str(dataset_path), SchemaError)
        meta = {key: value for key, value in data.items() if key not in ("format", "version", "name", "objects")}
        folder = cls(root, name or root.name, class_maps, meta=meta)
        folder.problems = tuple(folder._read_index(lenient))
        folder._index_seen = seen
        return folder

    def _read_index(self, lenient: bool) -> list[IndexProblem]:
        """Add every sound line of samples.jsonl; raise on the first bad one, or list them if `lenient`."""
        path = self._root / SAMPLES_FILE
        problems: list[IndexProblem] = []
        lines = array("L")  # the line of each sample held, in the order held (4-8 bytes, not a dict entry)
        position: dict[str, int] | None = None  # id -> its place in `lines`: built at the first repeated id
        prefix = str(path)
        for number, raw in _index_lines(path):
            where = f"{prefix}:{number}"
            data: Any = None
            try:
                data = _parse_line(raw, where)
                sample = Sample.from_json(data, where)
                first = self._id_clash(sample.id)
                if first is not None:
                    if position is None:
                        position = {sample_id: index for index, sample_id in enumerate(self._samples)}
                    same = "" if first == sample.id else f" ({first!r}: ids may not differ in case only)"
                    raise SchemaError(f"{where}: sample id {sample.id!r} repeats line {lines[position[first]]}"
                                      f"{same}; ids must be unique: remove or rename one of the two lines")
                self._check(sample, where)
            except SchemaError as exc:
                if not lenient:
                    raise
                sample_id = data.get("id") if isinstance(data, dict) else None
                problems.append(IndexProblem(number, sample_id if isinstance(sample_id, str) else None, str(exc)))
                continue
            if position is not None:
                position[sample.id] = len(lines)
            lines.append(number)
            self._insert(sample)
        return problems

    def __enter__(self) -> DSFolder:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.save()

    # -- contents ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples.values())

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._samples

    def __getitem__(self, sample_id: str) -> Sample:
        return self._samples[sample_id]

    def samples(self, object: str | None = None, split: str | None = None) -> list[Sample]:
        """Samples, optionally of one object and/or one split."""
        return [s for s in self if (object is None or s.object == object) and (split is None or s.split == split)]

    def classes(self, object_name: str) -> ClassMap:
        """The class map of one object."""
        try:
            return self._objects[object_name]
        except (KeyError, TypeError):
            raise InputError(f"{self.root}: unknown object {object_name!r}; "
                             f"objects: {', '.join(self._objects)}") from None

    def global_classes(self) -> list[GlobalClass]:
        """Background plus every (object, class) pair: the label space of one model over all objects."""
        return global_classes(self._objects)

    def files_view(self) -> DSFolder:
        """This folder without its samples (root, name, class maps): what a worker process needs to read
        the files of samples it is given, cheap to send to it."""
        return DSFolder(self._root, self.name, dict(self._objects))

    def image_path(self, sample: Sample) -> Path:
        """The sample's image file, checked to lie inside the folder (SchemaError otherwise)."""
        return self._inside(sample.image, f"{self.root}: sample {sample.id!r}")

    def mask_path(self, sample: Sample) -> Path:
        """The sample's mask file, checked to lie inside the folder (SchemaError otherwise)."""
        return self._inside(sample.mask, f"{self.root}: sample {sample.id!r}")

    def load_image(self, sample: Sample) -> np.ndarray:
        """The sample's image as (H, W, 3) uint8 RGB."""
        return read_rgb(self.image_path(sample))

    def load_mask(self, sample: Sample) -> np.ndarray:
        """The sample's class-index mask as (H, W) uint8: a single-channel mask whose values are whole
        numbers 0..255 (taken as stored, never rescaled), else InputError naming the mask."""
        path = self.mask_path(sample)
        return mask_indices(open_image(path), path)

    def checked_image_path(self, sample: Sample) -> Path:
        """The sample's image file after checking it, within the pixel limit (`io.check_image_file`: cheap
        for PNG and JPEG, a decode otherwise): exports call it before copying the bytes, so a damaged
        image is an error, never a copy."""
        path = self.image_path(sample)
        check_image_file(path)
        return path

    def load_checked_mask(self, sample: Sample) -> np.ndarray:
        """The sample's mask, checked before it is used or exported: indices inside the object's
        class map and the same size as its image (read from the header); InputError naming the mask."""
        mask_path = self.mask_path(sample)
        mask = check_mask(self.load_mask(sample), self.classes(sample.object), str(mask_path))
        height, width = image_size(self.image_path(sample))
        if mask.shape != (height, width):
            raise InputError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {width}x{height}; "
                             "run `defectspectrum data validate` and fix the sample")
        return mask

    # -- changing ------------------------------------------------------------------------------

    def add_object(self, object_name: str, classes: Sequence[str] | ClassMap) -> ClassMap:
        """Register an object and its class map (a ClassMap, or the defect names without background).
        An object's class map never changes once registered."""
        if not is_safe_name(object_name):
            raise InputError(f"object name {object_name!r}: use letters, digits, '.', '_' or '-' only "
                             "(it names a folder)")
        class_map = classes if isinstance(classes, ClassMap) else ClassMap.from_defects(classes)
        existing = self._objects.get(object_name)
        if existing is not None and existing != class_map:
            raise InputError(f"object {object_name!r} already has classes {list(existing.names)}")
        self._objects[object_name] = class_map
        return class_map

    def add_sample(self, object_name: str, name: str, image: Path | np.ndarray | Image.Image, mask: np.ndarray, *,
                   split: str | None = None, caption: str | None = None, synthetic: bool = False,
                   source: str | None = None, defect_type: str | None = None) -> Sample:
        """Write a sample's files and add it to the index (call `save()` to write the index)."""
        class_map = self.classes(object_name)
        name = safe_name(name)
        clash = self._id_clash(f"{object_name}/{name}")
        if clash is not None:
            raise InputError(f"{self.root}: sample {clash} already exists")
        sample = Sample(id=f"{object_name}/{name}", object=object_name, image="", mask="", split=split,
                        caption=caption, synthetic=synthetic, source=source, defect_type=defect_type)
        where = f"{self.root}: sample {sample.id!r}"
        sample.check_types(where)  # before any file is written, as is the path check (a folder linked out)
        for kind in ("images", "masks"):
            self._check_path(f"{object_name}/{kind}/{name}.png", where)
        mask = check_mask(mask, class_map, f"{source or name}")
        image_rel, mask_rel = write_sample_files(self.root, object_name, name, image, mask)
        sample = sample.replace(image=image_rel, mask=mask_rel)
        self.add_record(sample)
        return sample

    def add_record(self, sample: Sample) -> None:
        """Index a sample whose files are already written (as parallel converters do); it is held to
        the rules `open` checks (SchemaError otherwise)."""
        self._admit(sample, self._id_clash)
        self._insert(sample)

    def _admit(self, sample: Sample, id_clash: Callable[[str], str | None]) -> None:
        """Raise unless `sample` may join this index (`add_record`'s checks); `id_clash(id)` is the id
        already held that equals `id` ignoring case, or None."""
        where = f"{self.root}: sample {sample.id!r}"
        sample.check_types(where)
        self.classes(sample.object)
        clash = id_clash(sample.id)
        if clash is not None:
            raise InputError(f"{self.root}: sample {clash} already exists"
                             + ("" if clash == sample.id else f" (ids may not differ in case only: {sample.id!r})"))
        self._check(sample, where)

    def update(self, samples: Iterable[Sample]) -> None:
        """Replace existing samples (matched by id), e.g. after setting splits or captions; every
        replacement is checked before any is made."""
        replacements = list(samples)
        for sample in replacements:
            where = f"{self.root}: sample {sample.id!r}"
            sample.check_types(where)
            if sample.id not in self._samples:
                raise InputError(f"{self.root}: no sample {sample.id!r} to update")
            self._check(sample, where)
        for sample in replacements:
            self._samples[sample.id] = sample

    def save(self) -> None:
        """Write dataset.json, then samples.jsonl, each atomically.

        In that order because objects and their class maps only ever grow (`add_object` never
        changes or removes one): after a crash between the two writes, the old samples.jsonl
        still names only objects the new dataset.json knows. A folder opened leniently with
        problems refuses: saving would drop the lines it left out.

        No lost updates: saves of one folder take turns (a lock on the folder), and a folder whose
        index another run rewrote since this one read it (say `data split` and `data caption` at once)
        refuses to save, rather than silently undoing that run's work.
        """
        if self.problems:
            raise InputError(f"{self.root / SAMPLES_FILE}: {len(self.problems)} line(s) were left out when it was "
                             f"opened (first: line {self.problems[0].line}); saving would drop them: fix the file "
                             "(see `defectspectrum data validate`) and open it again")
        self.root.mkdir(parents=True, exist_ok=True)
        dataset = dataset_document(self.name, self._objects, self.meta)
        lines = "".join(index_line(sample) for sample in self)
        with _folder_lock(self.root):
            if self._index_seen is not None and index_state(self.root) != self._index_seen:
                raise InputError(f"{self.root}: its index was rewritten by another run since this one read it; "
                                 "nothing was saved, so that run's changes stay: run this command again")
            try:
                write_json_atomic(self.root / DATASET_FILE, dataset)
                write_text_atomic(self.root / SAMPLES_FILE, lines)
            finally:  # also after a failed write: what changed meanwhile, this save changed
                self._index_seen = index_state(self.root)

    # -- the index rules -----------------------------------------------------------------------

    def _check(self, sample: Sample, where: str) -> None:
        """SchemaError naming `where` unless `sample` (its types already checked) follows the index
        rules: a known object, an id `<object>/<safe name>`, image and mask inside the folder."""
        if sample.object not in self._objects:
            raise SchemaError(f"{where}: sample {sample.id!r} names unknown object {sample.object!r}; add the object "
                              f"to {DATASET_FILE} or fix the line")
        prefix, slash, name = sample.id.partition("/")
        if not slash or prefix != sample.object or not is_safe_name(name):
            raise SchemaError(f"{where}: sample id {sample.id!r} must be '{sample.object}/<name>', the name made of "
                              "letters, digits, '.', '_' or '-'; fix the line")
        self._check_path(sample.image, where)
        self._check_path(sample.mask, where)

    def _check_path(self, text: str, where: str) -> None:
        """SchemaError naming `where` unless `text` is a relative path that stays inside the root,
        symbolic links followed."""
        try:
            relative = check_relative(text, where)
            if self._containment is None:
                self._containment = Containment(self._root)
            self._containment.check(relative, where)
        except SchemaError:
            raise
        except InputError as exc:
            raise SchemaError(str(exc)) from None

    def _inside(self, text: str, where: str) -> Path:
        """`root/text`, checked by `_check_path`."""
        self._check_path(text, where)
        return self._root / text

    def _insert(self, sample: Sample) -> None:
        self._samples[sample.id] = sample
        folded = sample.id.lower()
        if folded != sample.id:  # most ids are lower case: they take no second string
            self._capitalised[folded] = sample.id

    def _id_clash(self, sample_id: str) -> str | None:
        """The id already held that equals `sample_id` ignoring case, or None."""
        folded = sample_id.lower()
        return folded if folded in self._samples else self._capitalised.get(folded)


def dataset_document(name: str, objects: Mapping[str, ClassMap], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The content of dataset.json."""
    return {"format": FORMAT, "version": VERSION, "name": name,
            "objects": {object_name: {"classes": list(cm.names)} for object_name, cm in objects.items()}, **meta}


def index_line(sample: Sample) -> str:
    """A sample's samples.jsonl line, its newline included."""
    return json.dumps(sample.to_json(), ensure_ascii=False) + "\n"


class IndexWriter:
    """The index of a new DS folder, written as its samples come: for a folder being built in a
    private staging folder (`staged_ds_folder`), whose one rename publishes it, so the files are
    written in place. dataset.json is written at once, each sample's samples.jsonl line as it is
    added (a line on disk each); the bytes are those `DSFolder.save` writes for the same samples in
    the same order.

    Each sample is held to the rules `DSFolder.add_record` checks, with the same errors. Of the
    samples only one lower-case name each is kept, in a set per object: what tells a clash, ignoring
    case, and what `name` makes new names unique against, so that memory stays small whatever their
    number. (An id held with capitals is read back from samples.jsonl for the error, never kept.)

    ```python
    with IndexWriter(staging, "line 4", class_maps, meta) as index:
        for sample in converted:   # each named index.name(object, name) before it was converted
            index.add(sample)
    ```
    """

    def __init__(self, root: Path, name: str, objects: Mapping[str, ClassMap],
                 meta: Mapping[str, Any] | None = None) -> None:
        self.folder = DSFolder(root, name, objects, meta=meta)  # its class maps and rules; it holds no sample
        self.count = 0  # samples added
        self._names: dict[str, set[str]] = {object_name: set() for object_name in self.folder.objects}  # lower case
        self._reserved: set[str] = set()  # `<object>/<lower-case name>` given by `name`, not added yet
        self._alike: dict[str, list[str]] = {}  # lower-case object name -> the objects with that name
        for object_name in self.folder.objects:
            self._alike.setdefault(object_name.lower(), []).append(object_name)
        root = self.folder.root
        root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(root / DATASET_FILE, dataset_document(self.folder.name, self.folder.objects,
                                                                self.folder.meta))
        self._handle: IO[str] | None = open(root / SAMPLES_FILE, "w", encoding="utf-8", buffering=1)

    def name(self, object_name: str, base: str) -> str:
        """A sample name for `object_name`: the safe name `base`, or `base-2`, `base-3`, ... where it is
        taken ignoring case (`paths.unique_name`), by a sample added or a name given before; it is the
        caller's for one sample, to `add` once its files are written (names given are held until then)."""
        taken = self._names.setdefault(object_name, set())
        name = unique_name(base, taken)
        self._reserved.add(f"{object_name}/{name.lower()}")
        return name

    def add(self, sample: Sample) -> None:
        """Check `sample` (as `DSFolder.add_record` does) and write its line."""
        if self._handle is None:
            raise ValueError(f"{self.folder.root / SAMPLES_FILE}: this index writer is closed")
        self.folder._admit(sample, self._id_clash)
        self._handle.write(index_line(sample))
        folded = sample.id.partition("/")[2].lower()
        key = f"{sample.object}/{folded}"
        if key in self._reserved:
            self._reserved.discard(key)
        else:
            self._names[sample.object].add(folded)
        self.count += 1

    def _id_clash(self, sample_id: str) -> str | None:
        """The id added that equals `sample_id` ignoring case (names given by `name` and not added yet
        are not ids held), or None."""
        prefix, _, name = sample_id.partition("/")
        folded = name.lower()
        for object_name in self._alike.get(prefix.lower(), ()):
            if folded in self._names[object_name] and f"{object_name}/{folded}" not in self._reserved:
                return self._held_id(f"{object_name}/{folded}".lower())
        return None

    def _held_id(self, folded: str) -> str:
        """The id added whose lower-case form is `folded`, as it was written (an error's rare path)."""
        if self._handle is not None:
            self._handle.flush()
        with open(self.folder.root / SAMPLES_FILE, encoding="utf-8") as lines:
            for line in lines:
                sample_id = json.loads(line)["id"]
                if sample_id.lower() == folded:
                    return str(sample_id)
        return folded

    def close(self) -> None:
        """Finish samples.jsonl (also after an error: the staging folder is then removed)."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


IndexState = tuple[tuple[int, ...] | None, ...]


def index_state(root: Path) -> IndexState:
    """What tells this version of a DS folder's index files from any rewrite of them (each atomic
    write is a new file): device, inode, size and times of dataset.json and samples.jsonl."""
    state: list[tuple[int, ...] | None] = []
    for name in (DATASET_FILE, SAMPLES_FILE):
        try:
            info = os.stat(Path(root) / name)
        except OSError:
            state.append(None)
        else:
            state.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    return tuple(state)


@contextmanager
def _folder_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder `root` (flock on the folder itself: nothing is written, and the
    lock ends with the process). Best effort: where the system or file system has no such lock (Windows,
    some network shares), the `index_state` check alone guards the save."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        descriptor = os.open(root, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:  # ENOLCK, EOPNOTSUPP, ...
            pass
        yield
    finally:
        os.close(descriptor)


def _index_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line of samples.jsonl (none where the file is absent)."""
    try:
        with open_regular(path) as handle:
            for number, raw in enumerate(handle, start=1):
                if raw.strip():
                    yield number, raw
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"{path}: cannot read the index ({exc.strerror or exc}); make it a readable file") from exc


def _parse_line(raw: bytes, where: str) -> Any:
    try:
        text = raw.decode("utf-8").lstrip("\ufeff")  # a byte-order mark (first line) is not part of the JSON
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{where}: not UTF-8 text ({exc.reason}); save samples.jsonl as UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise SchemaError(f"{where}: invalid JSON (nested too deeply); fix or delete that line") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise SchemaError(f"{where}: invalid JSON ({message}); fix or delete that line") from None


def select_samples(folder: DSFolder, split: str | None = None, objects: Iterable[str] | None = None) -> list[Sample]:
    """The samples of `folder` in `split` (None: all) and `objects` (None: all); InputError for an
    unknown object or an empty selection, naming the folder's splits."""
    wanted = None if objects is None else list(objects)
    for name in wanted or []:
        if name not in folder.objects:
            raise InputError(f"{folder.root}: has no object {name!r}; its objects: {', '.join(folder.objects)}")
    samples = [s for s in folder if (split is None or s.split == split) and (wanted is None or s.object in wanted)]
    if not samples:
        splits = sorted({s.split or "none" for s in folder})
        which = f" in split {split!r}" if split else ""
        of = f" of {', '.join(wanted[:5])}{' and more' if len(wanted) > 5 else ''}" if wanted else ""
        raise InputError(f"{folder.root}: no samples{which}{of}; its splits: {', '.join(splits) or 'none'}; "
                         "choose another --split or --object")
    return samples
