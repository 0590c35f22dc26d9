"""One mask's verdict under one object's `Policy`: defective (rejected) or benign (accepted), with
the reasons (which rule fired, what was measured against which limit).

```python
verdict = judge(areas_by_class(mask), policy)
verdict.defective, [reason.text for reason in verdict.reasons]
```

For each defect class present, regions smaller than its speck size are dropped first; then a
forbidden class rejects with any region left; a limited class rejects where its largest region
exceeds `max_area`, its summed area `max_total_area` or its region count `max_count`; an accepted
class never rejects; any other class rejects unless the rules say `other_classes: accept`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from defectspectrum.qc.rules import Policy

DEFECTIVE, BENIGN = "defective", "benign"


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(float(value), 2)


@dataclass(frozen=True)
class Reason:
    """One rule that fired: `rule` is forbidden, other_classes, max_area, max_total_area or max_count."""

    class_name: str
    rule: str
    measured: float  # regions (max_count), or px: the largest region (max_area), else the total area
    limit: float | None = None
    regions: int = 0

    @property
    def text(self) -> str:
        measured, limit = _number(self.measured), None if self.limit is None else _number(self.limit)
        plural = "s" if self.regions != 1 else ""
        if self.rule == "forbidden":
            return f"{self.class_name}: forbidden ({self.regions} region{plural}, {measured} px)"
        if self.rule == "other_classes":
            return f"{self.class_name}: no rule accepts this class ({self.regions} region{plural}, {measured} px)"
        if self.rule == "max_area":
            return f"{self.class_name}: a region of {measured} px > max_area {limit} px"
        if self.rule == "max_total_area":
            return f"{self.class_name}: total {measured} px > max_total_area {limit} px"
        return f"{self.class_name}: {measured} regions > max_count {limit}"

    def to_json(self) -> dict[str, Any]:
        return {"class": self.class_name, "rule": self.rule, "measured": _number(self.measured),
                "limit": None if self.limit is None else _number(self.limit), "regions": self.regions,
                "text": self.text}


@dataclass(frozen=True)
class Verdict:
    """Rejected (defective) where any reason fired, else accepted (benign)."""

    reasons: tuple[Reason, ...] = ()

    @property
    def defective(self) -> bool:
        return bool(self.reasons)

    @property
    def label(self) -> str:
        return DEFECTIVE if self.reasons else BENIGN

    @property
    def text(self) -> str:
        return "; ".join(reason.text for reason in self.reasons) if self.reasons else "within every rule"

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.label, "reasons": [reason.to_json() for reason in self.reasons]}


def judge(areas: Mapping[int, np.ndarray], policy: Policy) -> Verdict:
    """The verdict on a mask whose regions are `areas` (class index -> region areas, as
    `regions.areas_by_class` gives them) under `policy`."""
    reasons: list[Reason] = []
    for index in sorted(areas):
        if index == 0 or index in policy.accept:
            continue
        kept = np.asarray(areas[index])
        kept = kept[kept >= policy.speck_size(index)]
        if kept.size == 0:
            continue
        name, count, total = policy.classes[index], int(kept.size), float(kept.sum())
        limits = policy.limits.get(index)
        if index in policy.forbidden:
            reasons.append(Reason(name, "forbidden", total, None, count))
        elif limits is not None and limits.limited:
            largest = float(kept.max())
            if limits.max_area is not None and largest > limits.max_area:
                reasons.append(Reason(name, "max_area", largest, limits.max_area, count))
            if limits.max_total_area is not None and total > limits.max_total_area:
                reasons.append(Reason(name, "max_total_area", total, limits.max_total_area, count))
            if limits.max_count is not None and count > limits.max_count:
                reasons.append(Reason(name, "max_count", count, limits.max_count, count))
        elif policy.reject_others:
            reasons.append(Reason(name, "other_classes", total, None, count))
    return Verdict(tuple(reasons))
