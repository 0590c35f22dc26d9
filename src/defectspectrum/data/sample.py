"""A sample: one image with its class-index mask and metadata, as a line of `samples.jsonl`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from defectspectrum.errors import SchemaError

GOOD = "good"  # defect_type of a defect-free image
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
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
    extra: dict[str, Any] = field(default_factory=dict)

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

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to samples.jsonl; fields this version does not know (`extra`)
        are written back at the top level, as they were read."""
        data = asdict(self)
        extra = data.pop("extra")
        return {**extra, **data}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Sample:
        """Parse one samples.jsonl record; `where` names the file and line for errors."""
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: expected a JSON object per line")
        missing = [key for key in ("id", "object", "image", "mask") if not isinstance(data.get(key), str)]
        if missing:
            raise SchemaError(f"{where}: missing or non-string field(s) {', '.join(missing)}")
        fields = set(cls.__dataclass_fields__) - {"extra"}
        known = {key: data[key] for key in fields if key in data}
        extra = {key: value for key, value in data.items() if key not in fields}
        return cls(**known, extra=extra)
