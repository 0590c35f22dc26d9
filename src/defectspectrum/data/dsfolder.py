"""The DS folder: the one on-disk format every stage reads and writes.

```
<root>/dataset.json      {"format": "defectspectrum", "version": 1, "name", "objects": {obj: {"classes": [...]}}}
<root>/samples.jsonl     one Sample per line, paths relative to <root>
<root>/<object>/images/<name>.<png|jpg|bmp>
<root>/<object>/masks/<name>.png   uint8 class index, 0 = background, per-object class map
```
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    check_image,
    direct_path,
    image_size,
    mask_indices,
    open_image,
    read_json,
    read_rgb,
    save_png,
    staged_folder,
    to_png_mode,
    write_json_atomic,
    write_text_atomic,
)
from defectspectrum.paths import safe_name

FORMAT = "defectspectrum"
VERSION = 1
DATASET_FILE = "dataset.json"
SAMPLES_FILE = "samples.jsonl"


def sample_paths(object_name: str, name: str, image_suffix: str = ".png") -> tuple[str, str]:
    """Relative (image, mask) paths of a sample inside a DS folder."""
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


def write_sample_files(
    root: Path, object_name: str, name: str, image: Path | np.ndarray | Image.Image, mask: np.ndarray,
    decoded: Image.Image | None = None, atomic: bool = True,
) -> tuple[str, str]:
    """Write one sample's image and mask under `root`; returns their relative paths.

    A PNG/JPEG/BMP source file is copied byte for byte (no re-encoding loss); other formats, PIL images
    and arrays are saved as PNG (grey stays grey). A source file is decoded once and checked first
    (`io.check_image`); `decoded` is that decoded, checked file, if the caller has it. Each file is
    written atomically unless `atomic` is false, for a `root` that is a private staging folder (one
    rename publishes it all).
    """
    suffix = Path(image).suffix.lower() if isinstance(image, Path) else ".png"
    suffix = ".jpg" if suffix == ".jpeg" else suffix
    keep = isinstance(image, Path) and suffix in KEEP_AS_IS_EXTENSIONS
    image_rel, mask_rel = sample_paths(object_name, name, suffix if keep else ".png")
    output = atomic_path if atomic else direct_path
    with output(root / image_rel) as target:
        if keep and isinstance(image, Path):
            if decoded is None:
                check_image(image)  # a damaged or oversized image is an error, never a copy
            shutil.copyfile(image, target)
        else:
            if isinstance(image, Path):
                image = decoded if decoded is not None else open_image(image)
            save_png(to_png_mode(image) if isinstance(image, Image.Image) else image, target)
    with output(root / mask_rel) as target:
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
def staged_ds_folder(root: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `root` to write a DS folder into; on success it takes
    `root`'s place (an old DS folder there, allowed by `overwrite`, is removed only then), on
    failure `root` is left as it was."""
    check_output_folder(root, overwrite)
    with staged_folder(root, replace=True) as staging:
        yield staging


class DSFolder:
    """A DS folder in memory: class maps per object and the sample list; files stay on disk.

    Create with `DSFolder.create(root)`, open with `DSFolder.open(root)`; add samples with
    `add_sample` and call `save()` (or use the folder as a context manager) to write the index.
    """

    def __init__(self, root: Path, name: str, objects: Mapping[str, ClassMap], samples: Iterable[Sample] = (),
                 meta: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.name = name
        self.objects: dict[str, ClassMap] = dict(objects)
        self.meta: dict[str, Any] = dict(meta or {})
        self._samples: dict[str, Sample] = {}
        for sample in samples:
            self._insert(sample)

    # -- opening and creating ------------------------------------------------------------------

    @staticmethod
    def is_ds_folder(root: Path) -> bool:
        """True where `root/dataset.json` declares the defectspectrum format."""
        try:
            data = json.loads((Path(root) / DATASET_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("format") == FORMAT

    @classmethod
    def create(cls, root: Path, name: str | None = None, objects: Mapping[str, Sequence[str] | ClassMap] | None = None,
               overwrite: bool = False) -> DSFolder:
        """A new, empty DS folder at `root` (written at once).

        Refuses a `root` that exists and is not empty, except an existing DS folder when
        `overwrite` is true; never deletes anything else.
        """
        root = Path(root)
        if check_output_folder(root, overwrite):
            shutil.rmtree(root)
        folder = cls(root, name or root.name, {})
        for object_name, classes in (objects or {}).items():
            folder.add_object(object_name, classes)
        folder.save()
        return folder

    @classmethod
    def open(cls, root: Path) -> DSFolder:
        """Read a DS folder's index, checking its format and schema version."""
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: folder not found; check the path")
        dataset_path = root / DATASET_FILE
        if not dataset_path.is_file():
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
        class_maps = class_maps_from_json(data.get("objects"), str(dataset_path), SchemaError)
        meta = {key: value for key, value in data.items() if key not in ("format", "version", "name", "objects")}
        folder = cls(root, str(data.get("name") or root.name), class_maps, meta=meta)
        for sample in _read_samples(root / SAMPLES_FILE):
            if sample.object not in class_maps:
                raise SchemaError(f"{root / SAMPLES_FILE}: sample {sample.id!r} names unknown object {sample.object!r}")
            folder._insert(sample)
        return folder

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
            return self.objects[object_name]
        except KeyError:
            raise InputError(f"{self.root}: unknown object {object_name!r}; "
                             f"objects: {', '.join(self.objects)}") from None

    def global_classes(self) -> list[GlobalClass]:
        """Background plus every (object, class) pair: the label space of one model over all objects."""
        return global_classes(self.objects)

    def image_path(self, sample: Sample) -> Path:
        return self.root / sample.image

    def mask_path(self, sample: Sample) -> Path:
        return self.root / sample.mask

    def load_image(self, sample: Sample) -> np.ndarray:
        """The sample's image as (H, W, 3) uint8 RGB."""
        return read_rgb(self.image_path(sample))

    def load_mask(self, sample: Sample) -> np.ndarray:
        """The sample's class-index mask as (H, W) uint8: a single-channel mask whose values are whole
        numbers 0..255 (taken as stored, never rescaled), else InputError naming the mask."""
        path = self.mask_path(sample)
        return mask_indices(open_image(path), path)

    def checked_image_path(self, sample: Sample) -> Path:
        """The sample's image file after decoding it once, within the pixel limit (`io.check_image`):
        exports call it before copying the bytes, so a damaged image is an error, never a copy."""
        path = self.image_path(sample)
        check_image(path)
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
        """Register an object and its class map (a ClassMap, or the defect names without background)."""
        if safe_name(object_name) != object_name:
            raise InputError(f"object name {object_name!r}: use letters, digits, '.', '_' or '-' only")
        class_map = classes if isinstance(classes, ClassMap) else ClassMap.from_defects(classes)
        existing = self.objects.get(object_name)
        if existing is not None and existing != class_map:
            raise InputError(f"object {object_name!r} already has classes {list(existing.names)}")
        self.objects[object_name] = class_map
        return class_map

    def add_sample(self, object_name: str, name: str, image: Path | np.ndarray | Image.Image, mask: np.ndarray, *,
                   split: str | None = None, caption: str | None = None, synthetic: bool = False,
                   source: str | None = None, defect_type: str | None = None) -> Sample:
        """Write a sample's files and add it to the index (call `save()` to write the index)."""
        class_map = self.classes(object_name)
        name = safe_name(name)
        if f"{object_name}/{name}" in self._samples:
            raise InputError(f"{self.root}: sample {object_name}/{name} already exists")
        mask = check_mask(mask, class_map, f"{source or name}")
        image_rel, mask_rel = write_sample_files(self.root, object_name, name, image, mask)
        sample = Sample(id=f"{object_name}/{name}", object=object_name, image=image_rel, mask=mask_rel, split=split,
                        caption=caption, synthetic=synthetic, source=source, defect_type=defect_type)
        self._insert(sample)
        return sample

    def add_record(self, sample: Sample) -> None:
        """Index a sample whose files are already written (as parallel converters do)."""
        self.classes(sample.object)
        if sample.id in self._samples:
            raise InputError(f"{self.root}: sample {sample.id} already exists")
        self._insert(sample)

    def update(self, samples: Iterable[Sample]) -> None:
        """Replace existing samples (matched by id), e.g. after setting splits or captions."""
        for sample in samples:
            if sample.id not in self._samples:
                raise InputError(f"{self.root}: no sample {sample.id!r} to update")
            self._samples[sample.id] = sample

    def save(self) -> None:
        """Write dataset.json and samples.jsonl atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        dataset = {"format": FORMAT, "version": VERSION, "name": self.name,
                   "objects": {name: {"classes": list(cm.names)} for name, cm in self.objects.items()}, **self.meta}
        lines = "".join(json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in self)
        write_text_atomic(self.root / SAMPLES_FILE, lines)
        write_json_atomic(self.root / DATASET_FILE, dataset)

    def _insert(self, sample: Sample) -> None:
        self._samples[sample.id] = sample


def _read_samples(path: Path) -> Iterator[Sample]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SchemaError(f"{where}: invalid JSON ({exc.msg}); fix or delete that line") from exc
            yield Sample.from_json(data, where)
