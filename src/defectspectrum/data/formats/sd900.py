"""SD-saliency-900 strip-steel surface defects (Song et al.) in its native layout.

```
<root>/Source Images/<P>_<n>.bmp     grey 200x200 image
<root>/Ground truth/<P>_<n>.png      its mask, binary 0/255
```
One object, `sd900`, with three classes chosen by the file-name prefix: `In_` -> `inclusion` (1),
`Pa_` -> `patches` (2), `Sc_` -> `scratches` (3). defect_type is the class name; every image is
defective. Sample names are the file stems (`In_1`, ...). An unknown prefix, an image without
its mask or a mask without its image is a FormatError. BMP images are stored as PNG.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import BinaryMask, Reader, SourceSample
from defectspectrum.errors import FormatError
from defectspectrum.io import list_images

IMAGES = "Source Images"
MASKS = "Ground truth"
OBJECT = "sd900"
CLASSES = {"In": "inclusion", "Pa": "patches", "Sc": "scratches"}  # file-name prefix -> class


def _class_of(path: Path) -> str:
    prefix = path.stem.split("_", 1)[0]
    if prefix not in CLASSES:
        raise FormatError(f"{path}: unknown prefix {prefix!r}; SD-saliency-900 names start with "
                          f"{', '.join(p + '_' for p in CLASSES)}: rename or remove the file")
    return CLASSES[prefix]


@register
class SD900Reader(Reader):
    """SD-saliency-900: class by file-name prefix (In_, Pa_, Sc_)."""

    name = "sd900"
    summary = "SD-saliency-900: 'Source Images/<P>_<n>.bmp' + 'Ground truth/<P>_<n>.png'; class by prefix In_/Pa_/Sc_"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        for folder in (IMAGES, MASKS):
            if not (self.root / folder).is_dir():
                raise FormatError(f"{self.root}: no '{folder}' folder; pass the SD-saliency-900 top folder")
        self.class_map = ClassMap.from_defects(list(CLASSES.values()))

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / IMAGES).is_dir() and (root / MASKS).is_dir()

    def class_maps(self) -> dict[str, ClassMap]:
        return {OBJECT: self.class_map}

    def samples(self) -> Iterator[SourceSample]:
        images = list_images(self.root / IMAGES)
        masks = {p.stem: p for p in list_images(self.root / MASKS)}
        orphans = sorted(set(masks) - {p.stem for p in images})
        if orphans:
            raise FormatError(f"{masks[orphans[0]]}: mask without an image in '{self.root / IMAGES}'; "
                              "add the image or remove the mask")
        for image in images:
            class_name = _class_of(image)
            mask = masks.get(image.stem)
            if mask is None:
                raise FormatError(f"{image}: its mask {self.root / MASKS / (image.stem + '.png')} is missing; "
                                  "add it or remove the image")
            yield SourceSample(OBJECT, image.stem, image, BinaryMask(mask, self.class_map.index(class_name)),
                               class_name)
