"""MVTec AD in its native layout.

```
<root>/<category>/train/good/NNN.png
<root>/<category>/test/<defect|good>/NNN.png
<root>/<category>/ground_truth/<defect>/NNN_mask.png     binary 0/255
```
`<root>` may also be one category folder. The defect folder is the only class information, so
each object's classes are its defect folders in alphabetical order (`combined` included, as it
is in the source); `good` images become defect-free samples with empty masks.
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


def _is_category(folder: Path) -> bool:
    return (folder / "test").is_dir() and ((folder / "ground_truth").is_dir() or (folder / "train" / "good").is_dir())


@register
class MVTecReader(Reader):
    """MVTec AD (and look-alikes): class = defect folder."""

    name = "mvtec"
    summary = "MVTec AD native layout: <cat>/test/<defect>/NNN.png + <cat>/ground_truth/<defect>/NNN_mask.png"

    def __init__(self, root: Path, include_train_good: bool = True) -> None:
        super().__init__(root)
        self.include_train_good = include_train_good
        if _is_category(self.root):
            self.categories = [self.root]
        else:
            self.categories = sorted(p for p in self.root.iterdir() if p.is_dir() and _is_category(p))
        if not self.categories:
            raise FormatError(f"{self.root}: no MVTec category (a folder with test/ and ground_truth/) found; pass "
                              "the MVTec AD top folder or one category's folder, or check --from")

    @classmethod
    def detect(cls, root: Path) -> bool:
        return _is_category(root) or any(p.is_dir() and _is_category(p) for p in root.iterdir())

    def _defect_folders(self, category: Path) -> list[Path]:
        return sorted(p for p in (category / "test").iterdir() if p.is_dir() and p.name != GOOD)

    def class_maps(self) -> dict[str, ClassMap]:
        return {c.name: ClassMap.from_defects([d.name for d in self._defect_folders(c)]) for c in self.categories}

    def samples(self) -> Iterator[SourceSample]:
        for category in self.categories:
            if self.include_train_good and (category / "train" / GOOD).is_dir():
                for image in list_images(category / "train" / GOOD):
                    yield SourceSample(category.name, f"train_good_{image.stem}", image, None, GOOD)
            if (category / "test" / GOOD).is_dir():
                for image in list_images(category / "test" / GOOD):
                    yield SourceSample(category.name, f"good_{image.stem}", image, None, GOOD)
            for index, defect in enumerate(self._defect_folders(category), start=1):
                for image in list_images(defect):
                    mask = category / "ground_truth" / defect.name / f"{image.stem}_mask.png"
                    if not mask.is_file():
                        raise FormatError(f"{image}: its mask {mask} is missing; add it or remove the image")
                    yield SourceSample(category.name, f"{defect.name}_{image.stem}", image,
                                       BinaryMask(mask, index), defect.name)
