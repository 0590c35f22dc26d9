"""`seg predict`: run a `Predictor` over a DS folder or a folder of images and write a DS folder of
predicted masks, so that `data validate`, `data show`, `qc` and the metrics read it as they read
ground truth.

- From a DS folder: every sample keeps its id, object, split, defect type, caption and synthetic
  flag; the mask holds the object's own class indices (`LabelSpace.to_object_mask`: in a global
  label space a pixel predicted as another object's class is background); the image is copied byte
  for byte; `source` is the input image's path. Objects whose class maps differ from the label
  space the model was trained on are refused, all of them named in one line.
- From a folder of images (searched recursively): each image becomes a sample of `object_name`
  (needed where the label space has several objects), named after its path inside the folder
  (`sub/a.png` -> `sub_a`, made safe and unique as `data convert` does), without split.

Overlays (the image tinted with the predicted mask) go to `<out>/_overlays/<object>/<name>.png`:
`_overlays` can never be an object's folder (object names never start with `_`), and a DS folder's
readers and `data validate` ignore files its index does not name. The folder is this command's:
`--overwrite` replaces an earlier prediction's overlays with the new ones.

The output is built in a staging folder and appears complete or not at all; an existing DS folder
is replaced only with `overwrite`, files of the user's own in it carried over
(`data.dsfolder.carry_user_files`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectspectrum.data.dsfolder import DSFolder, carry_user_files, check_output_folder
from defectspectrum.draw import class_colors, overlay
from defectspectrum.errors import InputError
from defectspectrum.io import list_images, read_rgb, save_png
from defectspectrum.paths import output_path, require_apart, safe_name, unique_name
from defectspectrum.progress import track
from defectspectrum.seg.infer import Predictor
from defectspectrum.seg.labels import LabelSpace, check_same_objects
from defectspectrum.staging import staged_folder

OVERLAY_FOLDER = "_overlays"  # never an object name: safe names do not start with '_'


@dataclass(frozen=True)
class _Item:
    """One image to predict and the sample it becomes."""

    object: str
    name: str
    image: Path
    split: str | None = None
    caption: str | None = None
    synthetic: bool = False
    defect_type: str | None = None


def predict_to_ds(predictor: Predictor, labels: LabelSpace, source: DSFolder | Path, out: Path, *,
                  object_name: str | None = None, split: str | None = None, overwrite: bool = False,
                  overlays: bool = True, info: Mapping[str, Any] | None = None,
                  kept: list[str] | None = None) -> DSFolder:
    """Predict every sample of the DS folder (or every image of the folder) `source` into a new DS
    folder `out` (see the module docstring) and return it. `info` (e.g. the run, runtime and tile
    size) is stored with the label space under `prediction` in `out/dataset.json`; `kept` receives
    the files of the user's own carried over from a replaced DS folder. `split` keeps only the
    samples of that split of a DS folder (a folder of images has none: InputError)."""
    out = Path(out)
    if isinstance(source, DSFolder):
        folder: DSFolder | None = source
        root = source.root
    else:
        root = Path(source)
        if not root.is_dir():
            raise InputError(f"{root}: not found or not a folder; give a DS folder or a folder of images")
        folder = DSFolder.open(root) if DSFolder.is_ds_folder(root) else None
    require_apart(root, out, "choose another folder")
    if folder is not None:
        chosen = _ds_objects(folder, labels, object_name)
        objects, items = {name: folder.objects[name] for name in chosen}, _ds_items(folder, labels, chosen, split)
    else:
        if split is not None:
            raise InputError(f"{root}: a folder of images has no splits; leave out --split or give a DS folder")
        name = _object_for_images(labels, object_name, root)
        objects, items = {name: labels.objects[name]}, _image_items(root, name)
    meta = {"source": str(root.absolute()), "labels": labels.to_json(),
            "overlays": OVERLAY_FOLDER if overlays else None, **dict(info or {})}
    with _staged_prediction(out, overwrite, kept) as staging:
        result = DSFolder.create(staging, out.name, objects)
        colors = {name: class_colors(len(class_map)) for name, class_map in objects.items()}
        for item in track(items, "predict"):
            image = read_rgb(item.image)
            mask = labels.to_object_mask(_checked_prediction(predictor.predict(image), image, labels, item),
                                         item.object)
            sample = result.add_sample(item.object, item.name, item.image, mask, split=item.split,
                                       caption=item.caption, synthetic=item.synthetic,
                                       source=str(item.image.absolute()), defect_type=item.defect_type)
            if overlays:
                target = output_path(staging / OVERLAY_FOLDER, item.object) / f"{sample.name}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                save_png(overlay(image, mask, colors[item.object]), target)
        result.meta["prediction"] = meta
        result.save()
    result.root = out
    return result


def _checked_prediction(labels_mask: np.ndarray, image: np.ndarray, labels: LabelSpace, item: _Item) -> np.ndarray:
    if labels_mask.shape != image.shape[:2]:
        raise InputError(f"{item.image}: the model predicted a {labels_mask.shape} mask for a {image.shape[:2]} image")
    top = int(labels_mask.max(initial=0))
    if top >= labels.num_classes:
        raise InputError(f"{item.image}: the model predicted class index {top} but its label space has "
                         f"{labels.num_classes} classes; use the model with the run it was trained in")
    return labels_mask


def _ds_objects(folder: DSFolder, labels: LabelSpace, object_name: str | None) -> list[str]:
    """The objects of a DS folder to predict: `object_name`, else every trained object the folder has."""
    if object_name is not None:
        folder.classes(object_name)  # unknown: one line listing the folder's objects
        return [object_name]
    chosen = [name for name in labels.objects if name in folder.objects]
    if not chosen:
        raise InputError(f"{folder.root}: has none of the objects the model was trained on "
                         f"({', '.join(labels.objects)}); its objects: {', '.join(folder.objects) or 'none'}")
    return chosen


def _ds_items(folder: DSFolder, labels: LabelSpace, objects: list[str], split: str | None = None) -> list[_Item]:
    """The samples of `objects` (in `split`, if given) in a DS folder to predict, after checking them
    against the label space."""
    samples = [sample for sample in folder if sample.object in objects and (split is None or sample.split == split)]
    if not samples:
        where = f" in split {split!r}" if split is not None else ""
        splits = ", ".join(sorted({s.split or "none" for s in folder if s.object in objects}))
        raise InputError(f"{folder.root}: the DS folder has no samples of {', '.join(objects)}{where} to predict; "
                         f"its splits: {splits}")
    used = list(dict.fromkeys(sample.object for sample in samples))
    where = str(folder.root)
    problems = []
    for name in used:
        try:
            check_same_objects(labels, folder.objects, where, [name])
        except InputError as exc:
            problems.append(str(exc).removeprefix(f"{where}: "))
    if problems:
        raise InputError(f"{where}: {'; '.join(problems)}; predict only the objects the model was trained on, with "
                         "their class maps")
    return [_Item(sample.object, sample.name, folder.image_path(sample), sample.split, sample.caption,
                  sample.synthetic, sample.defect_type) for sample in samples]


def _object_for_images(labels: LabelSpace, object_name: str | None, root: Path) -> str:
    """The object the images of a plain folder become: `object_name`, or the label space's only object."""
    trained = ", ".join(labels.objects)
    if object_name is None:
        if len(labels.objects) > 1:
            raise InputError(f"{root}: a folder of images needs --object: the model was trained on several objects "
                             f"({trained})")
        return next(iter(labels.objects))
    if object_name not in labels.objects:
        raise InputError(f"{root}: object {object_name!r} was not trained on; choose one of {trained}")
    return object_name


def _image_items(root: Path, object_name: str) -> list[_Item]:
    """Every image under `root` as a sample of `object_name`: `sub/a.png` is named `sub_a`."""
    paths = list_images(root, recursive=True)
    if not paths:
        raise InputError(f"{root}: no images found (looked for {', '.join(('png', 'jpg', 'bmp', 'tif'))} files, also "
                         "in subfolders); give a folder of images or a DS folder")
    taken: set[str] = set()
    items = []
    for path in paths:
        relative = path.relative_to(root)
        name = unique_name(safe_name("_".join((*relative.parent.parts, relative.stem))), taken)
        items.append(_Item(object_name, name, path))
    return items




@contextmanager
def _staged_prediction(out: Path, overwrite: bool, kept: list[str] | None) -> Iterator[Path]:
    """`data.dsfolder.staged_ds_folder`, except that a replaced folder's `_overlays/` (an earlier
    prediction's) gives way to the new one instead of being carried over as the user's files."""

    def carry(old: Path, new: Path) -> None:
        ours, aside = new / OVERLAY_FOLDER, new.parent / f"{OVERLAY_FOLDER}.new"
        if ours.exists():
            os.rename(ours, aside)
        moved = carry_user_files(old, new)  # brings old overlays along as links or copies, never moving old's
        if os.path.lexists(ours):
            if ours.is_dir() and not ours.is_symlink():
                shutil.rmtree(ours)
            else:
                ours.unlink()
        if aside.exists():
            os.rename(aside, ours)
        if kept is not None:
            kept[:] = [rel for rel in moved if rel.split("/", 1)[0] != OVERLAY_FOLDER]

    with staged_folder(out, may_replace=lambda path: _may_replace(path, overwrite), carry=carry) as staging:
        yield staging


def _may_replace(path: Path, overwrite: bool) -> bool:
    """`check_output_folder`, and --overwrite replaces only an earlier prediction: a DS folder of
    annotations (no `prediction` block in its dataset.json) is never replaced by predicted masks."""
    replace = check_output_folder(path, overwrite)
    if replace and "prediction" not in DSFolder.open(path).meta:
        raise InputError(f"{path}: is a DS folder of annotations, not an earlier prediction; --overwrite replaces "
                         "predictions only: choose another output folder")
    return replace

