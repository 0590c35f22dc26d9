"""Magnetic-tile surface defects (Huang et al. 2018) in its native layout.

```
<root>/MT_<Class>/Imgs/<name>.jpg     grey image
<root>/MT_<Class>/Imgs/<name>.png     its mask: grey 0/255 with anti-aliased edges (threshold at 128)
```
One object, `magnetic_tile`. Its classes are the `MT_*` folders without the prefix, sorted by
name (Blowhole, Break, Crack, Fray, Uneven in the published set); `MT_Free` holds defect-free
images: they become samples with empty masks and defect_type "good" (their all-black masks are
not read). defect_type of the others is the class name. Sample names are `<Class>_<name>`.
A defect image without its mask, or a mask without its image, is a FormatError. Empty masks in a
defect folder are kept as they are (four Uneven masks are empty; `data validate` reports them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import BinaryMask, Reader, SourceSample
from defectspectrum.data.sample import GOOD
from defectspectrum.errors import FormatError
from defectspectrum.io import list_images

PREFIX = "MT_"
IMAGES = "Imgs"
FREE = "Free"
OBJECT = "magnetic_tile"
MASK_SUFFIX = ".png"


def _class_folders(root: Path) -> list[Path]:
    """The `MT_<Class>/` folders holding an `Imgs/` folder, sorted by name."""
    return sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / IMAGES).is_dir())


@register
class MagneticTileReader(Reader):
    """Magnetic-tile: class = `MT_<Class>` folder; image `.jpg` with its `.png` mask beside it."""

    name = "magnetic-tile"
    summary = "Magnetic-tile: MT_<Class>/Imgs/<name>.jpg + MT_<Class>/Imgs/<name>.png; MT_Free is defect-free"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.folders = _class_folders(self.root)
        if not self.folders:
            raise FormatError(f"{self.root}: no MT_<Class>/Imgs/ folder found; pass the Magnetic-tile top folder")
        self.defects = [f.name[len(PREFIX):] for f in self.folders if f.name[len(PREFIX):] != FREE]

    @classmethod
    def detect(cls, root: Path) -> bool:
        return bool(_class_folders(root))

    def class_maps(self) -> dict[str, ClassMap]:
        return {OBJECT: ClassMap.from_defects(self.defects)}

    def samples(self) -> Iterator[SourceSample]:
        for folder in self.folders:
            class_name = folder.name[len(PREFIX):]
            files = list_images(folder / IMAGES)
            masks = {p.stem: p for p in files if p.suffix.lower() == MASK_SUFFIX}
            images = sorted((p for p in files if p.suffix.lower() in (".jpg", ".jpeg", ".bmp")), key=lambda p: p.name)
            orphans = sorted(set(masks) - {p.stem for p in images})
            if orphans:
                raise FormatError(f"{masks[orphans[0]]}: mask without an image (.jpg) beside it; "
                                  "add the image or remove the mask")
            if class_name == FREE:
                for image in images:
                    yield SourceSample(OBJECT, f"{class_name}_{image.stem}", image, None, GOOD)
                continue
            index = self.defects.index(class_name) + 1
            for image in images:
                mask = masks.get(image.stem)
                if mask is None:
                    raise FormatError(f"{image}: its mask {image.with_suffix(MASK_SUFFIX)} is missing; "
                                      "add it or remove the image")
                yield SourceSample(OBJECT, f"{class_name}_{image.stem}", image, BinaryMask(mask, index), class_name)
