"""A learning test on real steel images: a small model trained briefly on SD-900 beats the
all-background prediction on its val split by a clear margin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import real_dataset  # noqa: E402
from defectspectrum.data.convert import convert  # noqa: E402
from defectspectrum.data.splits import assign_splits  # noqa: E402
from defectspectrum.seg.evaluate import eval_dataset, load_run  # noqa: E402
from defectspectrum.seg.metrics import ConfusionMatrix, scores  # noqa: E402
from defectspectrum.seg.run import RunConfig  # noqa: E402
from defectspectrum.seg.train import train  # noqa: E402

MARGIN = 10.0  # mIoU points above predicting background everywhere


@pytest.mark.slow
@pytest.mark.realdata
def test_brief_training_on_sd900_beats_all_background(shared_data: Path, tmp_path: Path) -> None:
    folder = convert(real_dataset(shared_data, "sd_saliency_900"), tmp_path / "sd900", "sd900")
    assign_splits(folder, rule="random", val_fraction=0.1, seed=0)
    folder.save()
    config = RunConfig(data=str(folder.root), model="segformer-mit-b0", steps=100, val_every=100, batch_size=8,
                       crop_size=96, lr=3e-3, num_workers=1, seed=0)
    train(config, tmp_path / "run")
    result, _, dataset = eval_dataset(load_run(tmp_path / "run", device="cpu"), folder.root, "val")
    background = ConfusionMatrix(dataset.labels.num_classes)
    for index in range(len(dataset)):
        labels = dataset.raw(index)[1]
        background.update(np.zeros_like(labels), labels)
    baseline = scores(background.matrix).mIoU
    assert result.mIoU > baseline + MARGIN, (result.mIoU, baseline)
    # not background alone: at least one defect class is segmented well
    assert max(result.iou[1:]) > 30.0, result.iou
