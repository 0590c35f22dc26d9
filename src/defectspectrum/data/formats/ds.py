"""A DS folder as a source: copy it, or re-index it after edits, keeping every field.

`data convert --from ds OLD NEW` (or `--from auto`, which recognises `dataset.json`) writes a
fresh DS folder with the same objects, class maps, samples, splits, captions and flags, each
sample's `source` and the fields this version does not know, and dataset.json's own fields (its
`source` then names OLD), with every image and mask checked on the way. Paths come from
`DSFolder.open`, which refuses an index whose ids or paths lead outside the source folder, so
nothing outside it is read or copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import register
from defectspectrum.data.formats.base import IndexMask, Reader, SourceSample


@register
class DSFolderReader(Reader):
    """This toolkit's own format."""

    name = "ds"
    summary = "a DS folder (dataset.json + samples.jsonl): copy or re-check one, keeping splits and captions"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.folder = DSFolder.open(self.root)

    @classmethod
    def detect(cls, root: Path) -> bool:
        return DSFolder.is_ds_folder(root)

    def class_maps(self) -> dict[str, ClassMap]:
        return dict(self.folder.objects)

    def meta(self) -> dict[str, Any]:
        return dict(self.folder.meta)

    def samples(self) -> Iterator[SourceSample]:
        for sample in self.folder:
            yield SourceSample(sample.object, sample.name, self.folder.image_path(sample),
                               IndexMask(self.folder.mask_path(sample)), sample.defect_type, sample.split,
                               sample.caption, sample.synthetic, source=sample.source, extra=dict(sample.extra))
