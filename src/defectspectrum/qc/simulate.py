"""The QC simulation: each image's true verdict (from its ground-truth mask) against its predicted
verdict (from a model's mask), and the image-level rates per object and overall.

```python
truth, pred = DSFolder.open(Path("ds")), DSFolder.open(Path("pred"))
measured = measure_pairs(truth, pred, split="val")          # reads every mask once
result = simulate(measured, rules.policies(truth.objects))  # cheap: re-run it for other rules
result.to_json()["recall"], result.counts().fpr
```

Truth and prediction must hold the same samples (ids) with the same class maps, as `seg predict`
writes them; anything else is an error listing what differs, before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectspectrum.data.dsfolder import DSFolder, select_samples
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError
from defectspectrum.io import write_csv_atomic
from defectspectrum.progress import track
from defectspectrum.qc.rates import Counts, outcome
from defectspectrum.qc.rules import Policy
from defectspectrum.qc.verdict import Verdict, judge
from defectspectrum.regions import areas_by_class

Areas = Mapping[int, np.ndarray]


def _listed(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def pair_samples(truth: DSFolder, pred: DSFolder, split: str | None = None,
                 objects: Iterable[str] | None = None) -> list[tuple[Sample, Sample]]:
    """(truth sample, predicted sample) for every selected truth sample; InputError listing what differs
    where the prediction lacks samples, has others, or another class map for an object."""
    chosen = select_samples(truth, split, objects)
    ids = {s.id for s in chosen}
    names = {s.object for s in chosen}
    missing = [s.id for s in chosen if s.id not in pred]
    extra = [s.id for s in pred if s.id not in ids and s.object in names
             and (split is None or s.split in (split, None))]
    if missing or extra:
        parts = ([f"{len(missing)} sample(s) missing ({_listed(missing)})"] if missing else []) + (
            [f"{len(extra)} extra ({_listed(extra)})"] if extra else [])
        hint = "predict the same samples (seg predict RUN TRUTH PRED) or choose them with --split/--object"
        if split is None and not extra:
            for name in sorted({s.split for s in truth if s.split}):
                if {s.id for s in pred if s.object in names} == {s.id for s in chosen if s.split == name}:
                    hint = f"the prediction holds the {name!r} split: pass --split {name}"
        raise InputError(f"{pred.root}: does not hold the samples of {truth.root}: {'; '.join(parts)}; {hint}")
    differ = [name for name in sorted(names) if name not in pred.objects or pred.classes(name) != truth.classes(name)]
    if differ:
        name = differ[0]
        theirs = list(pred.classes(name).names) if name in pred.objects else "no such object"
        raise InputError(f"{pred.root}: class map of {name!r} differs from the truth's ({theirs} vs "
                         f"{list(truth.classes(name).names)}){f'; also {_listed(differ[1:])}' if differ[1:] else ''}"
                         "; predict with a model trained on this data set's class maps")
    return [(sample, pred[sample.id]) for sample in chosen]


def read_areas(folder: DSFolder, sample: Sample) -> Areas:
    """The regions of `sample`'s mask (class index -> region areas), the mask checked against its class map."""
    return areas_by_class(folder.load_checked_mask(sample))


@dataclass(frozen=True)
class Measured:
    """One image's regions in truth and prediction (what the verdicts are computed from)."""

    sample: Sample
    truth: Areas
    pred: Areas


def measure_pairs(truth: DSFolder, pred: DSFolder, split: str | None = None,
                  objects: Iterable[str] | None = None) -> list[Measured]:
    """Read every paired mask once (checked; InputError for masks of different sizes)."""
    pairs = pair_samples(truth, pred, split, objects)
    measured = []
    for sample, guess in track(pairs, "Reading masks"):
        truth_mask, pred_mask = truth.load_checked_mask(sample), pred.load_checked_mask(guess)
        if truth_mask.shape != pred_mask.shape:
            raise InputError(f"{pred.mask_path(guess)}: {pred_mask.shape[1]}x{pred_mask.shape[0]} px, but the truth "
                             f"mask {truth.mask_path(sample)} is {truth_mask.shape[1]}x{truth_mask.shape[0]}; "
                             "predict from the same images")
        measured.append(Measured(sample, areas_by_class(truth_mask), areas_by_class(pred_mask)))
    return measured


@dataclass(frozen=True)
class JudgedImage:
    """One image's true and predicted verdicts."""

    sample: Sample
    truth: Verdict
    pred: Verdict

    @property
    def outcome(self) -> str:
        return outcome(self.truth.defective, self.pred.defective)


@dataclass
class Simulation:
    """Every image's verdicts; counts and rates overall and per object."""

    images: list[JudgedImage]

    def counts(self, object_name: str | None = None) -> Counts:
        counts = Counts()
        for image in self.images:
            if object_name is None or image.sample.object == object_name:
                counts.add(image.truth.defective, image.pred.defective)
        return counts

    @property
    def objects(self) -> list[str]:
        return sorted({image.sample.object for image in self.images})

    def to_json(self) -> dict[str, Any]:
        """`recall`, `fpr`, `precision` (percent, None where undefined), `counts`, `objects` (the same per
        object) and `images` (each with both verdicts, their reasons and its outcome)."""
        return {**self.counts().rates_json(),
                "objects": {name: self.counts(name).rates_json() for name in self.objects},
                "images": [{"id": image.sample.id, "object": image.sample.object, "split": image.sample.split,
                            "outcome": image.outcome, "truth": image.truth.to_json(), "pred": image.pred.to_json()}
                           for image in self.images]}

    CSV_HEADER = ("id", "object", "split", "truth", "pred", "outcome", "truth_reasons", "pred_reasons")

    def csv_rows(self) -> list[list[str]]:
        """One row per image (`CSV_HEADER`): both verdicts, the outcome and both verdicts' reasons."""
        return [[image.sample.id, image.sample.object, image.sample.split or "", image.truth.label, image.pred.label,
                 image.outcome, image.truth.text, image.pred.text] for image in self.images]

    def write_csv(self, path: Path) -> None:
        write_csv_atomic(Path(path), self.CSV_HEADER, self.csv_rows())


def simulate(measured: Sequence[Measured], policies: Mapping[str, Policy]) -> Simulation:
    """Judge truth and prediction of every image by the same `policies`."""
    return Simulation([JudgedImage(item.sample, judge(item.truth, policies[item.sample.object]),
                                   judge(item.pred, policies[item.sample.object])) for item in measured])


def judge_folder(folder: DSFolder, policies: Mapping[str, Policy], split: str | None = None,
                 objects: Iterable[str] | None = None) -> list[tuple[Sample, Verdict]]:
    """Verdicts without ground truth (`qc judge`): every selected sample of `folder` under `policies`."""
    samples = select_samples(folder, split, objects)
    return [(sample, judge(read_areas(folder, sample), policies[sample.object]))
            for sample in track(samples, "Judging")]
