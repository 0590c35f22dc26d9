"""The NoC evaluation: a segmenter and the simulated user, object by object, and the field's metrics.

```python
run = run_object(GrabCut(), image, instance.mask())        # up to 20 clicks; run.ious[k - 1] after click k
summary = summarize([run.ious for run in runs])            # NoC@85/90, NoF@85/90, IoU@1/3/5
summary.to_json()["NoC85"]
```

The loop (RITM's `evaluate_sample`): start from an empty mask (or a given one); the simulator clicks,
the segmenter predicts from the image, every click so far and its previous mask; the IoU with the
object is recorded after each click. Where the simulator has nothing left to click (the prediction is
the object, or every error pixel was clicked already) the run stops and the curve keeps its last IoU
for the remaining clicks, as a user who stops would leave it.

The metrics, over a list of IoU curves (`curve[k - 1]` = IoU after click k):
- NoC@t: the first click whose IoU is at least t (RITM: `argmax(iou >= t) + 1`), `max_clicks` where
  none reaches it within `max_clicks`; averaged over the objects.
- NoF@t: the number of objects whose NoC@t is `max_clicks`, as RITM counts them (so an object that
  reaches t exactly at the last click is counted with those that never do): comparable with the
  numbers papers report.
- IoU@k: the mean IoU after click k (a shorter curve holds its last value); None where k > max_clicks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from defectspectrum.click.clicks import Click
from defectspectrum.click.objects import Instance
from defectspectrum.click.simulator import next_click
from defectspectrum.errors import InputError

MAX_CLICKS = 20
THRESHOLDS = (0.85, 0.90)
IOU_AT = (1, 3, 5)
METRIC_KEYS = ("NoC85", "NoC90", "NoF85", "NoF90", "IoU@1", "IoU@3", "IoU@5", "objects")


class Segmenter(Protocol):
    """What the evaluation drives: the learned model later, the baselines now."""

    def predict(self, image: np.ndarray, clicks: Sequence[Click], previous: np.ndarray) -> np.ndarray:
        """The object's mask (bool H x W) from the (H, W, 3) uint8 RGB image, every click so far (oldest
        first) and the previous prediction (bool H x W; all False before the first click)."""
        ...


def iou(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 where both are empty."""
    union = int(np.count_nonzero(truth | prediction))
    return 1.0 if union == 0 else int(np.count_nonzero(truth & prediction)) / union


@dataclass
class ObjectRun:
    """One object's run: `ious[k - 1]` after click k (always `max_clicks` values) and the clicks made."""

    ious: list[float]
    clicks: list[Click] = field(default_factory=list)


def run_object(segmenter: Segmenter, image: np.ndarray, truth: np.ndarray, max_clicks: int = MAX_CLICKS,
               initial: np.ndarray | None = None) -> ObjectRun:
    """The NoC loop for one object (bool H x W `truth`) from an empty mask or `initial`."""
    if max_clicks < 1:
        raise InputError(f"max_clicks must be at least 1, got {max_clicks}")
    truth = np.asarray(truth, bool)
    prediction = np.zeros(truth.shape, bool) if initial is None else np.asarray(initial, bool).copy()
    if prediction.shape != truth.shape:
        raise InputError(f"initial mask {prediction.shape} and object {truth.shape} differ in shape")
    clicks: list[Click] = []
    ious: list[float] = []
    while len(ious) < max_clicks:
        click = next_click(truth, prediction, clicks)
        if click is None:
            break
        clicks.append(click)
        prediction = np.asarray(segmenter.predict(image, tuple(clicks), prediction), bool)
        if prediction.shape != truth.shape:
            raise ValueError(f"segmenter returned a {prediction.shape} mask for a {truth.shape} image")
        ious.append(iou(truth, prediction))
    last = iou(truth, prediction)
    ious.extend([last] * (max_clicks - len(ious)))
    return ObjectRun(ious, clicks)


def noc(curve: Sequence[float], threshold: float, max_clicks: int = MAX_CLICKS) -> int:
    """Clicks needed to reach IoU `threshold` (the first k with curve[k - 1] >= threshold); max_clicks if never."""
    for k, value in enumerate(curve[:max_clicks], start=1):
        if value >= threshold:
            return k
    return max_clicks


def reached(curve: Sequence[float], threshold: float, max_clicks: int = MAX_CLICKS) -> bool:
    """True where the curve reaches `threshold` within `max_clicks` clicks."""
    return any(value >= threshold for value in curve[:max_clicks])


def iou_after(curve: Sequence[float], k: int) -> float:
    """The IoU after click k; a curve shorter than k holds its last value (0.0 for an empty one)."""
    if not curve:
        return 0.0
    return float(curve[min(k, len(curve)) - 1])


@dataclass(frozen=True)
class Summary:
    """The metrics over some objects; None where there is nothing to average (no objects, k > max_clicks)."""

    noc85: float | None
    noc90: float | None
    nof85: int
    nof90: int
    iou_at: Mapping[int, float | None]
    objects: int

    def to_json(self, digits: int = 4) -> dict[str, Any]:
        """The JSON form: keys METRIC_KEYS."""
        def r(value: float | None) -> float | None:
            return None if value is None else round(float(value), digits)

        return {"NoC85": r(self.noc85), "NoC90": r(self.noc90), "NoF85": self.nof85, "NoF90": self.nof90,
                **{f"IoU@{k}": r(self.iou_at.get(k)) for k in IOU_AT}, "objects": self.objects}


def summarize(curves: Sequence[Sequence[float]], max_clicks: int = MAX_CLICKS) -> Summary:
    """NoC@85/90 (mean), NoF@85/90 (count) and IoU@1/3/5 (mean) over the IoU `curves`, one per object."""
    n = len(curves)
    low, high = THRESHOLDS

    def mean(values: Iterable[float]) -> float | None:
        values = list(values)
        return float(np.mean(values)) if values else None

    return Summary(
        noc85=mean(noc(c, low, max_clicks) for c in curves),
        noc90=mean(noc(c, high, max_clicks) for c in curves),
        nof85=sum(noc(c, low, max_clicks) == max_clicks for c in curves),
        nof90=sum(noc(c, high, max_clicks) == max_clicks for c in curves),
        iou_at={k: mean(iou_after(c, k) for c in curves) if k <= max_clicks else None for k in IOU_AT},
        objects=n,
    )


def mean_curve(curves: Sequence[Sequence[float]], max_clicks: int = MAX_CLICKS) -> list[float]:
    """The mean IoU after each click 1..max_clicks over `curves` (empty for no curves)."""
    if not curves:
        return []
    return [float(np.mean([iou_after(c, k) for c in curves])) for k in range(1, max_clicks + 1)]


@dataclass
class ModelResult:
    """One segmenter's runs over the objects (in the objects' order) and their summaries; `degraded`: the
    runs from the flawed start masks of `degrade` (empty where not asked for) and those masks' IoUs."""

    runs: list[ObjectRun]
    thin: list[bool]
    max_clicks: int
    degraded: list[ObjectRun] = field(default_factory=list)
    start_ious: list[float] = field(default_factory=list)

    def summary(self, thin_only: bool = False) -> Summary:
        """The metrics over every object, or over the thin ones only."""
        return summarize(self.curves(thin_only), self.max_clicks)

    def curves(self, thin_only: bool = False) -> list[list[float]]:
        """Each object's IoU curve (of the thin objects only, on request)."""
        return [run.ious for run, thin in zip(self.runs, self.thin) if thin or not thin_only]

    def to_json(self) -> dict[str, Any]:
        """The summary's keys, `thin` (the same over thin objects; absent without any), `degraded` (the same
        from flawed start masks, with their mean IoU `start_IoU`; absent where not run) and the mean curve."""
        data = self.summary().to_json()
        if any(self.thin):
            data["thin"] = self.summary(thin_only=True).to_json()
        if self.degraded:
            data["degraded"] = {**summarize([run.ious for run in self.degraded], self.max_clicks).to_json(),
                                "start_IoU": round(float(np.mean(self.start_ious)), 4)}
        data["mean_iou_curve"] = [round(v, 4) for v in mean_curve(self.curves(), self.max_clicks)]
        return data


def evaluate(segmenters: Mapping[str, Segmenter], items: Iterable[Instance],
             load_image: Callable[[Instance], np.ndarray], max_clicks: int = MAX_CLICKS,
             from_degraded: bool = False) -> dict[str, ModelResult]:
    """Every segmenter on every object of `items`; `load_image(instance)` gives its (H, W, 3) uint8 image
    (called once per run of consecutive objects of the same sample). `from_degraded`: each object is
    also run from its flawed start mask (`degrade.degraded_mask`, by the object's index)."""
    from defectspectrum.click.degrade import degraded_mask

    results = {name: ModelResult([], [], max_clicks) for name in segmenters}
    current: tuple[str | None, np.ndarray] | None = None
    for index, instance in enumerate(items):
        if current is None or current[0] != instance.sample_id or instance.sample_id is None:
            current = (instance.sample_id, load_image(instance))
        image = current[1]
        if image.shape[:2] != instance.shape:
            raise InputError(f"{instance.sample_id}: image {image.shape[1]}x{image.shape[0]} and mask "
                             f"{instance.shape[1]}x{instance.shape[0]} differ in size; fix the data (data validate)")
        truth = instance.mask()
        start = degraded_mask(truth, index) if from_degraded else None
        for name, segmenter in segmenters.items():
            results[name].runs.append(run_object(segmenter, image, truth, max_clicks))
            results[name].thin.append(instance.thin)
            if start is not None:
                results[name].degraded.append(run_object(segmenter, image, truth, max_clicks, initial=start))
                results[name].start_ious.append(iou(truth, start))
    return results
