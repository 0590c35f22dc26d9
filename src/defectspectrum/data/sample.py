"""A sample: one image with its class-index mask and metadata, as a line of `samples.jsonl`.

Field types are strict (a line with a wrong type is refused, naming the line): `id`, `object`,
`image`, `mask` are strings; `split`, `caption`, `source`, `defect_type` are strings or null;
`synthetic` is true or false. Fields this version does not know are kept as they are (`extra`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from defectspectrum.errors import SchemaError
from defectspectrum.paths import apart_ignoring_case

GOOD = "good"  # defect_type of a defect-free image
SPLITS = ("train", "val", "test")
UNSPLIT = "unsplit"  # the split folder / file name exports give samples without a split
REQUIRED_FIELDS = ("id", "object", "image", "mask")  # strings
OPTIONAL_TEXT_FIELDS = ("split", "caption", "source", "defect_type")  # strings or null
FLAG_FIELDS = ("synthetic",)  # true or false


def split_folder_names(names: Iterable[str]) -> dict[str, str]:
    """Split folder names of an export made distinct ignoring case (`paths.apart_ignoring_case`), the
    standard splits and UNSPLIT keeping theirs (`Train` beside `train` becomes `Train-2`)."""
    return apart_ignoring_case(sorted(names, key=lambda name: (name not in (*SPLITS, UNSPLIT), name)))


def _json_type(value: Any) -> str:
    """How `value` reads in JSON terms, for messages: `5 (a number)`, `["a"] (a list)`."""
    kind = {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({kind})"


def check_field_types(values: Mapping[str, Any], where: str) -> None:
    """SchemaError naming `where` and the first field of `values` (a samples.jsonl record, or a
    Sample's fields) whose type is wrong; absent optional fields are fine."""
    missing = [key for key in REQUIRED_FIELDS if not isinstance(values.get(key), str)]
    if missing:
        raise SchemaError(f"{where}: missing or non-string field(s) {', '.join(missing)}; every sample needs "
                          "string id, object, image and mask")
    for key in OPTIONAL_TEXT_FIELDS:
        value = values.get(key)
        if value is not None and not isinstance(value, str):
            raise SchemaError(f"{where}: field {key!r} must be a string or null, not {_json_type(value)}; "
                              "fix that line")
    for key in FLAG_FIELDS:
        value = values.get(key, False)
        if not isinstance(value, bool):
            raise SchemaError(f"{where}: field {key!r} must be true or false, not {_json_type(value)}; fix that line")


class _NoExtra(dict[str, Any]):
    """The one empty `extra` that samples without extra fields share (a dict takes 64 bytes a sample):
    read-only, so a change through one sample cannot reach the others; pickled by name."""

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise TypeError("Sample.extra of a sample without extra fields is shared and read-only; "
                        "give new extra fields with sample.replace(extra={...})")

    __setitem__ = __delitem__ = __ior__ = _refuse
    update = setdefault = pop = popitem = clear = _refuse

    def __reduce__(self) -> str:
        return "NO_EXTRA"


NO_EXTRA: dict[str, Any] = _NoExtra()


@dataclass(frozen=True, slots=True)
class Sample:
    """One image–mask pair of a DS folder; paths are relative to the folder root."""

    id: str
    object: str
    image: str
    mask: str
    split: str | None = None
    caption: str | None = None
    synthetic: bool = False
    source: str | None = None
    defect_type: str | None = None
    extra: dict[str, Any] = field(default_factory=lambda: NO_EXTRA)

    def __post_init__(self) -> None:
        if type(self.extra) is dict and not self.extra:  # one shared empty dict, not one a sample
            object.__setattr__(self, "extra", NO_EXTRA)

    @property
    def name(self) -> str:
        """The sample's name within its object (the id without the object prefix)."""
        return self.id.split("/", 1)[1] if "/" in self.id else self.id

    @property
    def is_good(self) -> bool:
        """True where the source marks the image defect-free."""
        return self.defect_type == GOOD

    def replace(self, **changes: Any) -> Sample:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def check_types(self, where: str) -> None:
        """SchemaError naming `where` unless every field has its type (for samples built in Python;
        `from_json` checks records as it reads them)."""
        check_field_types({name: getattr(self, name) for name in (*_FIELDS, "extra")}, where)
        if not isinstance(self.extra, dict):
            raise SchemaError(f"{where}: 'extra' must be a dict, not {_json_type(self.extra)}")

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to samples.jsonl; fields this version does not know (`extra`)
        are written back at the top level, as they were read."""
        data = asdict(self)
        extra = data.pop("extra")
        return {**extra, **data}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Sample:
        """Parse one samples.jsonl record, its field types checked; `where` names the file and line
        for errors (SchemaError)."""
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: expected a JSON object per line")
        check_field_types(data, where)
        fields = _FIELDS
        known = {key: data[key] for key in fields if key in data}
        for key in _REPEATED_FIELDS:  # the same few values on every line: one string each, not one a line
            if isinstance(known.get(key), str):
                known[key] = sys.intern(known[key])
        extra = {key: value for key, value in data.items() if key not in fields}
        return cls(**known, extra=extra)


_FIELDS = frozenset(Sample.__dataclass_fields__) - {"extra"}
_REPEATED_FIELDS = ("object", "split", "defect_type")
