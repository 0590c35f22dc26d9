"""Cotton-Fabric with binary masks: the defect name is in the image's file name.

```
<root>/image/00960_0001_Slubs.jpg          (or images/, or the images directly in <root>)
<root>/mask/00960_0001_Slubs_mask.png      binary 0/255 (or masks/, or beside the image)
```
- Every image stem is numeric tokens then one defect token: `NNNNN_NNNN_<Defect>`; the class is
  that last `_`-separated token (Slubs, Knots, End-Out, ...) and the classes are the tokens found,
  sorted. One object, "cotton_fabric" (`--object` renames it); no split.
- A token meaning defect-free (good, normal, ok, defect-free, no-defect, nodefect; any case) makes
  a "good" sample with an empty mask (a mask file beside it is ignored). Every other image must
  have its `<stem>_mask.png` (any image extension): a missing mask is a FormatError, since the
  name says the image is defective.
- Masks must be binary (0/255, 0/1 or JPEG-damaged). A mask whose largest value lies between 2
  and 127 is a class-index mask (as in the DS-Cotton-Fabric release) and a FormatError pointing to
  `--from ds-release`; a folder with `rbg_mask/` or `rgb_mask/` is not detected as this layout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import BinaryMask, Reader, SourceSample
from defectspectrum.data.sample import GOOD
from defectspectrum.errors import FormatError
from defectspectrum.io import binarize, list_images, read_mask_pixels

OBJECT = "cotton_fabric"
IMAGE_FOLDERS = ("image", "images")
MASK_FOLDERS = ("mask", "masks")
COLOUR_MASK_FOLDERS = ("rbg_mask", "rgb_mask")
MASK_SUFFIX = "_mask"
GOOD_TOKENS = frozenset({"good", "normal", "ok", "defect-free", "no-defect", "nodefect"})
_NAME = re.compile(r"\d+(?:_\d+)*_(?P<defect>[A-Za-z](?:[A-Za-z -]*[A-Za-z])?)")


def defect_token(stem: str) -> str | None:
    """The defect name of an image stem like `00960_0001_Slubs`, or None if it is not so named."""
    match = _NAME.fullmatch(stem)
    return match.group("defect") if match else None


def _image_folder(root: Path) -> Path:
    for name in IMAGE_FOLDERS:
        if (root / name).is_dir():
            return root / name
    return root


def _images(folder: Path) -> list[Path]:
    return [p for p in list_images(folder) if not p.stem.lower().endswith(MASK_SUFFIX)]


def _mask_folders(image_folder: Path) -> list[Path]:
    """Where masks may lie: beside the images, in a mask/ child, or in a sibling mask/ folder."""
    candidates = [image_folder, *(image_folder / n for n in MASK_FOLDERS)]
    candidates += [image_folder.parent / n for n in MASK_FOLDERS]
    seen, folders = set(), []
    for folder in candidates:
        if folder.is_dir() and folder.resolve() not in seen:
            seen.add(folder.resolve())
            folders.append(folder)
    return folders


def _mask_files(folders: list[Path]) -> dict[str, Path]:
    """Mask files by lower-cased stem (`..._mask`); the first folder and .png win."""
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(list_images(folder), key=lambda p: (p.suffix.lower() != ".png", p.name)):
            stem = path.stem.lower()
            if stem.endswith(MASK_SUFFIX):
                found.setdefault(stem, path)
    return found


@register
class CottonReader(Reader):
    """Cotton-Fabric: class = the defect name ending the file name; binary masks."""

    name = "cotton"
    summary = "Cotton-Fabric: image/NNNNN_NNNN_<Defect>.jpg + mask/NNNNN_NNNN_<Defect>_mask.png (binary)"

    def __init__(self, root: Path, object_name: str | None = None) -> None:
        super().__init__(root)
        self.object_name = object_name or OBJECT
        self.image_folder = _image_folder(self.root)
        images = _images(self.image_folder)
        if not images:
            raise self.empty_error()
        for image in images:
            if defect_token(image.stem) is None:
                raise FormatError(f"{image}: the name does not end in a defect name after numbers "
                                  "(like 00960_0001_Slubs); rename it or use another --from format")

    @classmethod
    def detect(cls, root: Path) -> bool:
        if any((root / name).is_dir() for name in COLOUR_MASK_FOLDERS):
            return False
        folder = _image_folder(root)
        images = _images(folder)
        if not images or not all(defect_token(p.stem) for p in images):
            return False
        return bool(_mask_files(_mask_folders(folder)))

    def _defects(self, images: list[Path]) -> list[str]:
        tokens = {defect_token(p.stem) for p in images}
        return sorted((t for t in tokens if t and t.lower() not in GOOD_TOKENS), key=lambda t: (t.lower(), t))

    def class_maps(self) -> dict[str, ClassMap]:
        return {self.object_name: ClassMap.from_defects(self._defects(_images(self.image_folder)))}

    def samples(self) -> Iterator[SourceSample]:
        images = _images(self.image_folder)
        index_of = {name: i for i, name in enumerate(self._defects(images), start=1)}
        folders = _mask_folders(self.image_folder)
        masks = _mask_files(folders)
        for image in images:
            token = defect_token(image.stem)
            assert token is not None  # checked in __init__
            if token.lower() in GOOD_TOKENS:
                yield SourceSample(self.object_name, image.stem, image, None, GOOD)
                continue
            mask = masks.get(f"{image.stem}{MASK_SUFFIX}".lower())
            if mask is None:
                places = ", ".join(str(f) for f in folders)
                raise FormatError(f"{image}: its mask {image.stem}{MASK_SUFFIX}.png is missing (looked in {places}); "
                                  "add it, or name the image ..._Good if it is defect-free")
            yield SourceSample(self.object_name, image.stem, image, BinaryMask(mask, index_of[token]), token)

    def load_mask(self, sample: SourceSample, size: tuple[int, int]) -> np.ndarray:
        recipe = sample.mask
        if isinstance(recipe, BinaryMask):
            pixels = read_mask_pixels(recipe.path)
            top = int(pixels.max(initial=0))
            if 1 < top < 128:
                raise FormatError(f"{recipe.path}: mask values go up to {top}, so it is a class-index mask, not a "
                                  "binary one; convert the DS-Cotton-Fabric release with --from ds-release")
            return binarize(pixels).astype(np.uint8) * np.uint8(recipe.class_index)
        return super().load_mask(sample, size)
