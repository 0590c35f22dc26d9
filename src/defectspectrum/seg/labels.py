"""Label spaces: which class names a model predicts, and how each object's mask indices map to them.

A run trains either on one object's class map (`per-object`, the paper's setting: one model per
MVTec category) or on every object at once (`global`: background plus every (object, class) pair,
`DSFolder.global_classes()`). Numpy only, so evaluation and prediction code can use it without torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from defectspectrum.data.classes import MAX_CLASSES, ClassMap, global_classes, global_lookup
from defectspectrum.errors import InputError

IGNORE_INDEX = 255  # label of padded or unlabelled pixels: never counted in the loss or the metric
LabelMode = Literal["object", "global"]
LABEL_MODES: tuple[str, ...] = ("object", "global")


@dataclass(frozen=True)
class LabelSpace:
    """The classes a model predicts (index 0 is background) and, per object, the table from the
    object's mask index to the label index."""

    mode: str
    names: tuple[str, ...]
    objects: Mapping[str, ClassMap]

    @classmethod
    def build(cls, objects: Mapping[str, ClassMap], mode: str = "object") -> LabelSpace:
        """`object`: the objects must share one class map (one object, as the paper trains);
        `global`: background plus every (object, class) pair."""
        if not objects:
            raise InputError("no objects to train on; check --object and the DS folder's dataset.json")
        if mode == "global":
            names = tuple(entry.label for entry in global_classes(objects))
        elif mode == "object":
            maps = {class_map.names for class_map in objects.values()}
            if len(maps) > 1:
                raise InputError(f"objects {', '.join(objects)} have different class maps; train one object at a "
                                 "time (--object NAME) or all of them with --labels global")
            names = next(iter(maps))
        else:
            raise InputError(f"unknown label mode {mode!r}; choose one of {', '.join(LABEL_MODES)}")
        if len(names) > IGNORE_INDEX:
            raise InputError(f"{len(names)} classes: at most {IGNORE_INDEX} fit beside the ignore index")
        return cls(mode, names, dict(objects))

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def lookup(self, object_name: str) -> np.ndarray:
        """uint8 table of 256 entries: object mask index -> label index (255 stays ignored)."""
        if object_name not in self.objects:
            raise InputError(f"object {object_name!r} is not in this label space ({', '.join(self.objects)})")
        if self.mode == "global":
            table = global_lookup(self.objects)[object_name].astype(np.uint8)
        else:
            table = np.arange(MAX_CLASSES, dtype=np.uint8)
        table[IGNORE_INDEX] = IGNORE_INDEX
        return table

    def to_labels(self, mask: np.ndarray, object_name: str) -> np.ndarray:
        """An object's class-index mask as label indices (uint8)."""
        return self.lookup(object_name)[mask]

    def to_object_mask(self, labels: np.ndarray, object_name: str) -> np.ndarray:
        """Predicted label indices as the object's own class indices (uint8). In global mode a pixel
        predicted as another object's class becomes background: an object's mask holds only its classes."""
        if self.mode == "object":
            return labels.astype(np.uint8)
        inverse = np.zeros(MAX_CLASSES, dtype=np.uint8)
        table = self.lookup(object_name)
        for local in range(1, len(self.objects[object_name])):
            inverse[table[local]] = local
        return inverse[labels]

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "names": list(self.names),
                "objects": {name: list(class_map.names) for name, class_map in self.objects.items()}}

    @classmethod
    def from_json(cls, data: Any, where: str) -> LabelSpace:
        """Parse `to_json`'s output, checked (InputError naming `where`)."""
        try:
            objects = {str(name): ClassMap(tuple(names)) for name, names in data["objects"].items()}
            space = cls.build(objects, data["mode"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{where}: 'labels' must hold mode, names and objects ({exc})") from None
        if list(space.names) != list(data.get("names", [])):
            raise InputError(f"{where}: label names {str(data.get('names'))[:80]} do not match the objects' "
                             "class maps")
        return space


def check_same_objects(space: LabelSpace, objects: Mapping[str, ClassMap], where: str,
                       names: Sequence[str] | None = None) -> None:
    """InputError unless every object in `names` (default: all of `objects`) has the class map the
    label space was trained with."""
    for name in names if names is not None else objects:
        if name not in space.objects:
            raise InputError(f"{where}: object {name!r} was not trained on (trained: {', '.join(space.objects)})")
        if objects[name] != space.objects[name]:
            raise InputError(f"{where}: object {name!r} has classes {list(objects[name].names)} but the model was "
                             f"trained on {list(space.objects[name].names)}")
