"""The one way models read a DS folder: `DSDataset`, a torch Dataset of (image, label mask) items.

```python
train = DSDataset("ds_mvtec", split="train", objects=["bottle"], transform=TrainTransform(256))
val = DSDataset("ds_mvtec", split="val", labels=train.labels)  # the same label space, checked
item = train[0]   # {"image": float32 (3, H, W), "mask": int64 (H, W), 255 = ignore, "index": 0}
```

Selection: `split` (None: every sample), `objects` (None: every object of the folder, or, with
a LabelSpace given, every trained object the folder has), `synthetic` ("include", "exclude" or
"only" the samples marked synthetic), `include_good` (False drops defect-free images). Samples
are sorted by id, so index i names the same sample in every process.

Labels: `labels="object"` trains on the objects' shared class map (mask index = label index);
`"global"` on background plus every (object, class) pair of the selected objects (with every
object selected, the order of `DSFolder.global_classes()`). A LabelSpace from a trained run is
checked against the folder's class maps (`labels.check_same_objects`).

Images are read with `DSFolder.load_image`: RGB uint8; grey images become three equal channels;
16-bit grey images keep their top 8 bits (value >> 8, a linear view: contrast in the low byte is
lost), palettes are expanded and alpha is dropped. Masks are read with `load_checked_mask`: indices
inside the object's class map and the image's size, else InputError naming the mask.

Augmentation: item i of epoch e draws from `np.random.Generator(np.random.PCG64([seed, e, i]))`,
so a batch is the same with any number of workers, in any process, and after a resume. Call
`set_epoch(e)` before iterating an epoch; a DataLoader with `persistent_workers=True` keeps the
epoch its workers started with, so there pass `(index, epoch)` pairs as indices instead (a
sampler yielding them): `dataset[(i, e)]` is item i as epoch e draws it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError
from defectspectrum.seg.labels import LabelSpace, check_same_objects
from defectspectrum.seg.preprocess import Preprocess
from defectspectrum.seg.transforms import Transform

SYNTHETIC_CHOICES = ("include", "exclude", "only")


class DSDataset(Dataset[dict[str, Any]]):
    """Samples of a DS folder, selected by split, objects and flags, as model input and label masks."""

    def __init__(self, folder: DSFolder | Path | str, *, split: str | None = None,
                 objects: Sequence[str] | None = None, labels: LabelSpace | str = "object",
                 synthetic: str = "include", include_good: bool = True, transform: Transform | None = None,
                 preprocess: Preprocess | None = Preprocess(), seed: int = 0) -> None:
        self.folder = folder if isinstance(folder, DSFolder) else DSFolder.open(Path(folder))
        if synthetic not in SYNTHETIC_CHOICES:
            raise InputError(f"synthetic={synthetic!r}: choose one of {', '.join(SYNTHETIC_CHOICES)}")
        if not isinstance(seed, int) or seed < 0:
            raise InputError(f"seed must be a whole number >= 0, not {seed!r}")
        chosen = self._chosen_objects(objects, labels)
        if isinstance(labels, LabelSpace):
            check_same_objects(labels, self.folder.objects, str(self.folder.root), chosen)
            self.labels = labels
        else:
            self.labels = LabelSpace.build({name: self.folder.objects[name] for name in chosen}, labels)
        self.samples: list[Sample] = select_samples(self.folder, chosen, split, synthetic, include_good)
        self.transform = transform
        self.preprocess = preprocess
        self.seed = seed
        self.epoch = 0

    def _chosen_objects(self, objects: Sequence[str] | None, labels: LabelSpace | str) -> list[str]:
        """The objects to read: those asked for (checked), else the trained ones the folder has, else all."""
        known: Mapping[str, ClassMap] = self.folder.objects
        if isinstance(objects, str):
            objects = [objects]
        if objects is not None:
            unknown = [name for name in objects if name not in known]
            if unknown:
                raise InputError(f"{self.folder.root}: unknown object(s) {', '.join(map(repr, unknown))}; "
                                 f"objects: {', '.join(known) or 'none'}")
            if not objects:
                raise InputError(f"{self.folder.root}: no objects chosen; leave objects out for all of them")
            return list(dict.fromkeys(objects))
        if isinstance(labels, LabelSpace):
            shared = [name for name in labels.objects if name in known]
            if not shared:
                raise InputError(f"{self.folder.root}: has none of the trained objects ({', '.join(labels.objects)}); "
                                 f"its objects: {', '.join(known) or 'none'}")
            return shared
        return list(known)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentation draws `__getitem__` makes."""
        self.epoch = int(epoch)

    def rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The generator item `index` of `epoch` (default: the current one) draws its augmentation from."""
        return np.random.Generator(np.random.PCG64([self.seed, self.epoch if epoch is None else epoch, index]))

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item `index` untransformed: image uint8 (H, W, 3) and label indices uint8 (H, W)."""
        sample = self.samples[index]
        image = self.folder.load_image(sample)
        mask = self.folder.load_checked_mask(sample)
        if mask.shape != image.shape[:2]:  # the header said otherwise than the decoded image
            raise InputError(f"{self.folder.mask_path(sample)}: mask is {mask.shape[1]}x{mask.shape[0]} but its "
                             f"image is {image.shape[1]}x{image.shape[0]}; fix the sample")
        return image, self.labels.to_labels(mask, sample.object)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """`{"image": float32 (3, H, W) preprocessed (uint8 without preprocess), "mask": int64 (H, W),
        "index": index}`; `key` is an index, or an (index, epoch) pair."""
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        image, mask = self.raw(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask, self.rng(index, epoch))
        if self.preprocess is not None:
            image_t = torch.from_numpy(self.preprocess(image))
        else:
            image_t = torch.from_numpy(np.require(image.transpose(2, 0, 1), requirements=["C", "W"]))
        return {"image": image_t, "mask": torch.from_numpy(mask.astype(np.int64)), "index": index}


def select_samples(folder: DSFolder, objects: Sequence[str], split: str | None = None, synthetic: str = "include",
                   include_good: bool = True) -> list[Sample]:
    """The folder's samples of `objects` passing the filters, sorted by id; InputError naming the
    filter that left none, and the fix."""
    root = folder.root
    where = f"object(s) {', '.join(objects)}"
    steps: list[tuple[Callable[[Sample], bool], Callable[[list[Sample]], str]]] = [
        (lambda s: s.object in objects,
         lambda _: f"{root}: no samples of {where}; add samples or choose other objects"),
    ]
    if split is not None:
        steps.append((lambda s: s.split == split, lambda left: _no_split_message(root, where, split, left)))
    if synthetic == "only":
        steps.append((lambda s: s.synthetic,
                      lambda left: f"{root}: none of the {len(left)} samples of {where}{_in(split)} is synthetic; "
                                   "add synthetic pairs or include real samples (synthetic='include')"))
    elif synthetic == "exclude":
        steps.append((lambda s: not s.synthetic,
                      lambda left: f"{root}: all {len(left)} samples of {where}{_in(split)} are synthetic; "
                                   "add real samples or include synthetic ones (synthetic='include')"))
    if not include_good:
        steps.append((lambda s: not s.is_good,
                      lambda left: f"{root}: all {len(left)} selected samples of {where}{_in(split)} are "
                                   "defect-free (defect_type 'good'); include them or add defective samples"))
    selected = list(folder)
    for keep, message in steps:
        kept = [sample for sample in selected if keep(sample)]
        if not kept:
            raise InputError(message(selected))
        selected = kept
    return sorted(selected, key=lambda sample: sample.id)


def _in(split: str | None) -> str:
    return "" if split is None else f" in split {split!r}"


def _no_split_message(root: Path, where: str, split: str, left: list[Sample]) -> str:
    splits = sorted({sample.split for sample in left if sample.split is not None})
    if not splits:
        return (f"{root}: no sample of {where} has a split; run `defectspectrum data split {root} --rule first-k "
                "--k 5` first (the paper's split) or read every sample (no split)")
    return (f"{root}: no sample of {where} is in split {split!r} (splits there: {', '.join(splits)}); choose one "
            f"of those or re-split with `defectspectrum data split {root}`")
