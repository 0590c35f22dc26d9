"""`gen eval` as a function: generated pairs of one object measured against the training pairs
they were learnt from (`metrics`), with mask-defect consistency (`filters.consistency`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError
from defectspectrum.gen.filters import consistency
from defectspectrum.gen.metrics import GenMetrics, evaluate


@dataclass
class GenResult:
    """Generated and training pairs and the measures of one against the other (`gen eval`)."""

    generated: DSFolder
    train: DSFolder
    object: str
    reference: list[Sample]  # the training pairs, in the order of the metrics' nearest indices
    metrics: GenMetrics
    measures: dict[str, Any]  # the JSON of `gen eval`: to_json() plus consistency (and learned metrics)
    previews: list[Path] = field(default_factory=list)  # training previews to show beside them

    def to_json(self) -> dict[str, Any]:
        return {"generated": str(self.generated.root), "train": str(self.train.root), "object": self.object,
                **self.measures}


def generated_object(generated: DSFolder) -> str:
    """The one object of a folder of generated pairs."""
    objects = sorted({sample.object for sample in generated})
    if len(objects) != 1:
        raise InputError(f"{generated.root}: holds {len(objects)} objects; evaluate the pairs of one object at a "
                         "time")
    return objects[0]


def evaluate_folders(generated: DSFolder, train: DSFolder, split: str = "train", copy_fraction: float = 0.5,
                     segment: Callable[[np.ndarray], np.ndarray] | None = None, *,
                     inception_weights: Path | None = None, lpips_weights: Path | None = None,
                     device: str = "cpu") -> GenResult:
    """Measure the pairs of `generated` against the defective pairs of `split` in `train`; with the
    weight files also FID/KID (`inception_weights`) and IC-LPIPS (`lpips_weights`)."""
    name = generated_object(generated)
    if train.classes(name) != generated.classes(name):
        raise InputError(f"{train.root}: the class map of {name!r} differs from the generated one; give the data "
                         "set the generator learnt from")
    reference = [s for s in train.samples(object=name, split=split) if not s.is_good]
    if len(reference) < 2:
        raise InputError(f"{train.root}: fewer than two defective {name!r} samples in split {split!r}; pick --split")
    pairs = [(generated.load_image(s), generated.load_mask(s)) for s in generated]
    if not pairs:
        raise InputError(f"{generated.root}: holds no pairs to evaluate")
    train_pairs = [(train.load_image(s), train.load_mask(s)) for s in reference]
    metrics = evaluate(pairs, train_pairs, generated.classes(name), copy_fraction)
    measures = {**metrics.to_json(), "consistency": consistency(pairs, segment, train_pairs=train_pairs)}
    if inception_weights is not None or lpips_weights is not None:
        measures["learned"] = learned_measures([image for image, _ in pairs], [image for image, _ in train_pairs],
                                               inception_weights, lpips_weights, device)
    return GenResult(generated, train, name, reference, metrics, measures)


def learned_measures(generated: list[np.ndarray], train: list[np.ndarray], inception_weights: Path | None,
                     lpips_weights: Path | None, device: str = "cpu") -> dict[str, Any]:
    """FID/KID and IC-LPIPS from local weight files (`learned_metrics`), those whose file is given."""
    from defectspectrum.gen.learned_metrics import fid_kid, ic_lpips

    learned: dict[str, Any] = {}
    if inception_weights is not None:
        if len(generated) < 2:
            raise InputError(f"FID/KID need at least two generated pairs, not {len(generated)}; draw more")
        scores = fid_kid(generated, train, inception_weights, device)
        learned.update(fid=scores["fid"], kid=scores["kid_mean"], kid_std=scores["kid_std"],
                       kid_subset_size=scores["kid_subset_size"])
    if lpips_weights is not None:
        learned["ic_lpips"] = ic_lpips(generated, train, lpips_weights, device)
    return learned
