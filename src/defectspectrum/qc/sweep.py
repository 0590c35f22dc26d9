"""Vary one limit of the rules on the model's side and watch recall and FPR move (`qc sweep`), or pick
the value that meets a target escape or false-reject rate (`qc calibrate`).

The true verdicts stay those of the rules as written (the experts' standard); only the limit applied
to the predicted masks changes, e.g. because a model draws regions larger than the annotators did.
Raising a limit can only remove reasons, so recall and FPR both fall (weakly) as the value grows.

```python
knob = Knob("max_area", "contamination")               # on every object with that class
points = sweep(measured, policies, knob)               # every value where a verdict can change
choice = calibrate(points, max_escape=5.0)             # the most lenient value letting <= 5 % escape
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from defectspectrum.errors import InputError
from defectspectrum.qc.rates import Counts, percent, wilson_interval
from defectspectrum.qc.rules import LIMIT_NAMES, PixelLimits, Policy
from defectspectrum.qc.simulate import Measured
from defectspectrum.qc.verdict import judge

MAX_AUTO_VALUES = 200  # values an automatic sweep tries at most (quantiles of the measured ones beyond that)


@dataclass(frozen=True)
class Knob:
    """Which limit to vary: `limit` of class `class_name` (None: the objects' speck size
    `min_region_area`) on `objects` (None: every object with that class)."""

    limit: str
    class_name: str | None = None
    objects: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.limit not in LIMIT_NAMES:
            raise InputError(f"limit {self.limit!r}: choose one of {', '.join(LIMIT_NAMES)}")
        if self.class_name is None and self.limit != "min_region_area":
            raise InputError(f"limit {self.limit} belongs to a class: name it with --class")

    @property
    def label(self) -> str:
        where = f"{self.class_name}." if self.class_name else ""
        scope = f" on {', '.join(self.objects)}" if self.objects else ""
        return f"{where}{self.limit}{scope}"

    def targets(self, policies: Mapping[str, Policy]) -> list[str]:
        """The objects whose policy the knob changes; InputError where there are none."""
        names = list(self.objects) if self.objects else list(policies)
        unknown = [name for name in names if name not in policies]
        if unknown:
            raise InputError(f"object {unknown[0]!r} is not in the data; its objects: {', '.join(policies)}")
        if self.class_name is None:
            return names
        having = [name for name in names if self.class_name in policies[name].classes.names[1:]]
        if not having:
            known = sorted({c for name in names for c in policies[name].classes.defects})
            raise InputError(f"no object has class {self.class_name!r}; classes: {', '.join(known)}")
        return having

    def apply(self, policies: Mapping[str, Policy], value: float) -> dict[str, Policy]:
        """`policies` with this limit set to `value` on the target objects (a forbidden or unnamed class
        given a maximum becomes a limited one; a speck size keeps the class's status)."""
        changed = dict(policies)
        for name in self.targets(policies):
            policy = policies[name]
            if self.class_name is None:
                changed[name] = replace(policy, min_region_area=float(value))
                continue
            index = policy.classes.index(self.class_name)
            current = policy.limits.get(index) or PixelLimits()
            changes: dict[str, Any] = {self.limit: int(value) if self.limit == "max_count" else float(value)}
            limits = {**policy.limits, index: replace(current, **changes)}
            if self.limit == "min_region_area":
                changed[name] = replace(policy, limits=limits)
            else:
                changed[name] = replace(policy, limits=limits, forbidden=policy.forbidden - {index},
                                        accept=policy.accept - {index})
        return changed

    def candidates(self, measured: Sequence[Measured], policies: Mapping[str, Policy]) -> list[float]:
        """Every value at which some predicted verdict can change (at most MAX_AUTO_VALUES, by quantiles)."""
        targets = set(self.targets(policies))
        values: list[float] = [0.0]
        for item in measured:
            name = item.sample.object
            if name not in targets:
                continue
            policy = policies[name]
            indices = [policy.classes.index(self.class_name)] if self.class_name else list(item.pred)
            for index in indices:
                areas = np.asarray(item.pred.get(index, np.zeros(0, np.int64)))
                if self.limit == "min_region_area":  # a region of area a is dropped from a + 1 on
                    values.extend(float(a) + 1 for a in areas)
                    continue
                kept = areas[areas >= policy.speck_size(index)]
                if kept.size:
                    measure = {"max_area": kept.max(), "max_total_area": kept.sum(), "max_count": kept.size}
                    values.append(float(measure[self.limit]))
        unique = np.unique(np.asarray(values, dtype=np.float64))
        if unique.size > MAX_AUTO_VALUES:
            unique = np.unique(np.quantile(unique, np.linspace(0, 1, MAX_AUTO_VALUES), method="nearest"))
        return [float(v) for v in unique]


@dataclass(frozen=True)
class SweepPoint:
    """The rates with the knob at `value`."""

    value: float
    counts: Counts

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, **self.counts.rates_json(), "escape_rate": self.counts.escape_rate}


def sweep(measured: Sequence[Measured], policies: Mapping[str, Policy], knob: Knob,
          values: Sequence[float] | None = None) -> list[SweepPoint]:
    """Rates at each of `values` (default: `knob.candidates`), ascending; truth judged by `policies`."""
    if not measured:
        raise InputError("nothing to sweep: no images")
    chosen = sorted({float(v) for v in (values if values is not None else knob.candidates(measured, policies))})
    for value in chosen:
        if value < 0:
            raise InputError(f"{knob.limit} value {value:g}: limits are at least 0")
    truth = [judge(item.truth, policies[item.sample.object]).defective for item in measured]  # fixed: judged once
    points = []
    for value in chosen:
        changed = knob.apply(policies, value)
        counts = Counts()
        for item, defective in zip(measured, truth):
            counts.add(defective, judge(item.pred, changed[item.sample.object]).defective)
        points.append(SweepPoint(value, counts))
    return points


@dataclass(frozen=True)
class Calibration:
    """The chosen value and how well it meets the target on the validation images."""

    knob: Knob
    target: str  # "escape" or "false_reject"
    target_rate: float  # percent
    point: SweepPoint
    confidence: float
    escape_interval: tuple[float, float] | None
    false_reject_interval: tuple[float, float] | None
    same_until: float | None = None  # the next value tried: values from `value` up to it judge these images alike

    @property
    def value(self) -> float:
        return self.point.value

    @property
    def confident(self) -> bool:
        """True where the interval's upper end meets the target too, not only the rate measured."""
        interval = self.escape_interval if self.target == "escape" else self.false_reject_interval
        return interval is not None and interval[1] <= self.target_rate

    def summary(self) -> str:
        counts = self.point.counts
        escape, reject = self.escape_interval, self.false_reject_interval
        level = f"{self.confidence * 100:g}%"

        def span(interval: tuple[float, float] | None) -> str:
            return "" if interval is None else f" ({level} interval {interval[0]:.1f}-{interval[1]:.1f})"

        text = (f"{self.knob.label} = {self.value:g}: escape rate {percent(counts.escape_rate)}% "
                f"({counts.fn} of {counts.defective} defective accepted){span(escape)}, false-reject rate "
                f"{percent(counts.fpr)}% ({counts.fp} of {counts.benign} benign rejected){span(reject)}")
        if self.target == "escape":
            text += (f"; any value from {self.value:g} up" if self.same_until is None else
                     f"; values from {self.value:g} to below {self.same_until:g}") + " judge these images alike"
        if not self.confident:
            what = "escape" if self.target == "escape" else "false-reject"
            text += (f"; the target {what} rate {self.target_rate:g}% is met on these images but not with "
                     f"{level} confidence: more validation images would narrow the interval")
        return text

    def to_json(self) -> dict[str, Any]:
        return {"limit": self.knob.limit, "class": self.knob.class_name, "objects": self.knob.objects,
                "target": self.target, "target_rate": self.target_rate, "value": self.value,
                "confidence": self.confidence, "confident": self.confident, **self.point.to_json(),
                "escape_interval": self.escape_interval, "false_reject_interval": self.false_reject_interval}


def calibrate(points: Sequence[SweepPoint], knob: Knob, *, max_escape: float | None = None,
              max_false_reject: float | None = None, confidence: float = 0.95) -> Calibration:
    """The most lenient value whose escape rate is at most `max_escape` (percent), or the strictest whose
    false-reject rate is at most `max_false_reject`; InputError where the images cannot decide it (no
    defective images for an escape target, no benign ones for a false-reject target) or no value meets it."""
    if (max_escape is None) == (max_false_reject is None):
        raise InputError("give one target: --max-escape or --max-false-reject (percent)")
    target = "escape" if max_escape is not None else "false_reject"
    rate_limit = float(max_escape if max_escape is not None else max_false_reject)  # type: ignore[arg-type]
    if not 0 <= rate_limit <= 100:
        raise InputError(f"target rate {rate_limit:g}: give a percentage from 0 to 100")
    if not points:
        raise InputError("nothing to calibrate: no values were tried")
    counts = points[0].counts
    if target == "escape" and counts.defective == 0:
        raise InputError("the validation images hold no defective product (by the rules on the truth), so an "
                         "escape rate cannot be measured; add defective images or calibrate --max-false-reject")
    if target == "false_reject" and counts.benign == 0:
        raise InputError("the validation images hold no benign product (by the rules on the truth), so a "
                         "false-reject rate cannot be measured; add defect-free images or calibrate --max-escape")
    if target == "escape":
        meeting = [p for p in points if (p.counts.escape_rate or 0.0) <= rate_limit]
        chosen = max(meeting, key=lambda p: p.value) if meeting else None
    else:
        meeting = [p for p in points if (p.counts.fpr or 0.0) <= rate_limit]
        chosen = min(meeting, key=lambda p: p.value) if meeting else None
    if chosen is None:
        best = min(points, key=lambda p: (p.counts.escape_rate if target == "escape" else p.counts.fpr) or 0.0)
        what = "escape" if target == "escape" else "false-reject"
        reached = best.counts.escape_rate if target == "escape" else best.counts.fpr
        raise InputError(f"no value of {knob.label} keeps the {what} rate at or below {rate_limit:g}%: the best, "
                         f"{best.value:g}, gives {percent(reached)}%; this limit alone cannot meet the target "
                         "(the model misses or over-draws defects this limit does not govern)")
    final = chosen.counts
    above = [p.value for p in points if p.value > chosen.value]
    return Calibration(knob, target, rate_limit, chosen, confidence,
                       wilson_interval(final.fn, final.defective, confidence),
                       wilson_interval(final.fp, final.benign, confidence), min(above) if above else None)
