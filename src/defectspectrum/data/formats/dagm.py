"""DAGM 2007 in its native layout.

```
<root>/ClassN/Train/NNNN.PNG                 grey 512x512 (Test/ alike)
<root>/ClassN/Train/Label/NNNN_label.PNG     coarse ellipse around the defect, binary 0/255
<root>/ClassN/Train/Label/Labels.txt         rows: id, defective 0/1, image file, 0, label file or 0
```
Some copies nest `ClassN/ClassN/Train`; both are read. `<root>` is the folder holding the
`ClassN` folders (any subset of Class1..Class10) or one `ClassN` folder.

- One object, "dagm" (`--object` renames it). Its classes are the DAGM classes found,
  "Class1".."Class10" in numeric order: a defect's class is the texture class it was drawn on,
  the only class information DAGM has.
- Split from the folder: Train -> train, Test -> test.
- `Labels.txt` decides what is defective: a row with 0 is defect-free ("good"); a row with 1
  takes its label file (the conventional `NNNN_label.PNG` where the row names none), and a missing
  label file is a FormatError. Images without a row (or without a Labels.txt) are defective
  exactly where `Label/NNNN_label.PNG` exists. The file may start with a header line (the
  original's first line is a lone count) and is split on any whitespace.
- Sample names: `ClassN_train_NNNN`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import BinaryMask, Reader, SourceSample
from defectspectrum.data.sample import GOOD
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import is_image_file, list_images, open_regular

OBJECT = "dagm"
SPLITS = {"train": "train", "test": "test"}  # lower-cased folder name -> DS split
LABEL_FOLDER = "label"
LABELS_FILE = "labels.txt"
_CLASS = re.compile(r"class(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class _Row:
    image: str
    defective: bool
    mask_name: str | None
    line: int


def _children(folder: Path) -> dict[str, Path]:
    """Sub-folders of `folder` by lower-cased name."""
    return {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}


def _split_folders(folder: Path) -> list[tuple[str, Path]]:
    children = _children(folder)
    return [(split, children[name]) for name, split in SPLITS.items() if name in children]


def _class_root(folder: Path) -> Path | None:
    """The folder holding Train/Test of a `ClassN` folder (itself or a nested `ClassN/ClassN`)."""
    if not _CLASS.fullmatch(folder.name):
        return None
    if _split_folders(folder):
        return folder
    nested = _children(folder).get(folder.name.lower())
    if nested is not None and _split_folders(nested):
        return nested
    return None


def _class_number(folder: Path) -> int:
    match = _CLASS.fullmatch(folder.name)
    assert match is not None
    return int(match.group(1))


def _read_labels(path: Path) -> dict[str, _Row]:
    """Labels.txt rows by lower-cased image file name."""
    try:
        with open_regular(path) as handle:
            text = handle.read().decode("utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc}); check the file") from exc
    rows: dict[str, _Row] = {}
    first = True
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        is_row = len(fields) >= 3 and fields[1] in ("0", "1")
        if not is_row:
            if first:  # a header: the original's lone count, or column names
                first = False
                continue
            raise FormatError(f"{path}: line {number} is not 'id defective(0/1) image [0 label]': {line.strip()!r}; "
                              "fix or remove the line")
        first = False
        mask = fields[4] if len(fields) >= 5 and fields[4] != "0" else None
        rows[fields[2].lower()] = _Row(fields[2], fields[1] == "1", mask, number)
    return rows


@register
class DAGMReader(Reader):
    """DAGM 2007: one object, one class per DAGM texture class, coarse ellipse labels."""

    name = "dagm"
    summary = "DAGM 2007 native layout: ClassN/{Train,Test}/NNNN.PNG + Label/NNNN_label.PNG, Labels.txt"

    def __init__(self, root: Path, object_name: str | None = None) -> None:
        super().__init__(root)
        self.object_name = object_name or OBJECT
        own = _class_root(self.root)
        if own is not None:
            classes = [(self.root.name, own)]
        else:
            classes = [(p.name, r) for p in self.root.iterdir() if p.is_dir() and (r := _class_root(p)) is not None]
        if not classes:
            raise FormatError(f"{self.root}: no DAGM class folder (ClassN with Train/ or Test/) found; "
                              "check the folder or the --from format")
        names = [name for name, _ in classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise FormatError(f"{self.root}: class folder {duplicates[0]} appears twice; keep one copy")
        self.classes: list[tuple[str, Path]] = sorted(classes, key=lambda item: _class_number(Path(item[0])))

    @classmethod
    def detect(cls, root: Path) -> bool:
        return _class_root(root) is not None or any(p.is_dir() and _class_root(p) is not None for p in root.iterdir())

    def class_maps(self) -> dict[str, ClassMap]:
        return {self.object_name: ClassMap.from_defects([name for name, _ in self.classes])}

    def samples(self) -> Iterator[SourceSample]:
        for index, (class_name, folder) in enumerate(self.classes, start=1):
            for split, split_folder in _split_folders(folder):
                yield from self._split_samples(class_name, index, split, split_folder)

    def _split_samples(self, class_name: str, index: int, split: str, folder: Path) -> Iterator[SourceSample]:
        label_folder = _children(folder).get(LABEL_FOLDER)
        label_files = ({p.name.lower(): p for p in label_folder.iterdir() if p.is_file() or is_image_file(p)}
                       if label_folder is not None else {})
        labels_path = label_files.get(LABELS_FILE)
        rows = _read_labels(labels_path) if labels_path is not None else {}
        images = {p.name.lower(): p for p in list_images(folder)}
        for key, listed in rows.items():
            if key not in images:
                raise FormatError(f"{labels_path}: line {listed.line} lists {listed.image!r}, "
                                  f"which is not in {folder}; "
                                  "add the image or remove the line")
        for image in images.values():
            row = rows.get(image.name.lower())
            conventional = f"{image.stem}_label{image.suffix}"
            sample_name = f"{class_name}_{split}_{image.stem}"
            if row is None:
                mask = label_files.get(conventional.lower())
                if mask is None or not is_image_file(mask):
                    yield SourceSample(self.object_name, sample_name, image, None, GOOD, split)
                    continue
            elif not row.defective:
                yield SourceSample(self.object_name, sample_name, image, None, GOOD, split)
                continue
            else:
                wanted = row.mask_name or conventional
                mask = label_files.get(wanted.lower())
                if mask is None:
                    where = label_folder if label_folder is not None else folder / "Label"
                    raise FormatError(f"{labels_path}: line {row.line} marks {image.name} defective but its label "
                                      f"{where / wanted} is missing; add the label or mark the row 0")
            yield SourceSample(self.object_name, sample_name, image, BinaryMask(mask, index), class_name, split)
