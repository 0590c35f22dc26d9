"""Evaluating a model or a run on a DS folder split: mmseg-exact scores (`seg.metrics`) from
whole-image predictions, tiled at the training crop size where an image is larger."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.errors import InputError
from defectspectrum.progress import track
from defectspectrum.seg.checkpoint import load_checkpoint
from defectspectrum.seg.dataset import DSDataset
from defectspectrum.seg.infer import Predictor, TorchPredictor
from defectspectrum.seg.metrics import ConfusionMatrix, SegScores, scores
from defectspectrum.seg.models import create_model
from defectspectrum.seg.run import BEST, LAST, RunInfo, read_run


def confusion_on(predictor: Predictor, dataset: DSDataset, rank: int = 0, world: int = 1) -> np.ndarray:
    """The confusion matrix (truth x prediction) of `predictor` over this process's share of
    `dataset` (items rank, rank + world, ...), each image predicted whole (tiled by the predictor)."""
    matrix = ConfusionMatrix(dataset.labels.num_classes)
    for index in track(range(rank, len(dataset), world), "evaluate"):
        image, labels = dataset.raw(index)
        matrix.update(predictor.predict(image), labels)
    return matrix.matrix


@dataclass
class LoadedRun:
    """A trained run ready to predict: its info, the model (eval mode) and which weights it holds."""

    info: RunInfo
    model: nn.Module
    weights: Path

    def predictor(self, tile: int | None = -1, overlap: float | None = None) -> TorchPredictor:
        """A predictor with the run's preprocessing; tile -1 (default) = the training crop size."""
        config = self.info.config
        return TorchPredictor(self.model, self.info.preprocess, tile=config.crop_size if tile == -1 else tile,
                              overlap=config.tile_overlap if overlap is None else overlap)


def load_run(run: Path, which: str = "best", device: str | torch.device | None = None) -> LoadedRun:
    """Rebuild a run's model from run.json and load its `best` (default) or `last` weights."""
    info = read_run(run)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    path = run_dir / (BEST if which == "best" else LAST)
    state = load_checkpoint(path, ["model"], "train the run (again), or use the other weights (--weights)")
    model = create_model(info.config.model, info.labels.num_classes)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: does not fit model {info.config.model!r} with {info.labels.num_classes} classes "
                         f"({str(exc).splitlines()[0][:120]}); was run.json edited?") from None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return LoadedRun(info, model.to(device).eval(), path)


def eval_dataset(run: LoadedRun, data: Path, split: str | None = "val", *, objects: list[str] | None = None,
                 tile: int | None = -1, overlap: float | None = None) -> tuple[SegScores, np.ndarray, DSDataset]:
    """Score a loaded run on a DS folder's split; returns scores, the confusion matrix and the dataset."""
    folder = DSFolder.open(Path(data))
    names = objects or [name for name in run.info.labels.objects if name in folder.objects]
    if not names:
        raise InputError(f"{data}: none of the run's objects ({', '.join(run.info.labels.objects)}) is in this "
                         f"folder (objects: {', '.join(folder.objects)})")
    dataset = DSDataset(folder, split=split, objects=names, labels=run.info.labels, synthetic="exclude",
                        transform=None)
    matrix = confusion_on(run.predictor(tile, overlap), dataset)
    return scores(matrix, list(run.info.labels.names)), matrix, dataset
