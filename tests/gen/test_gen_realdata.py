"""Defect-Gen on a real MVTec AD object (the subset in ../shared/data): a tiny model trained for a
few hundred steps lowers its loss and draws pairs whose masks are valid for the object's classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from conftest import real_dataset  # noqa: E402
from defectspectrum.data.convert import convert  # noqa: E402
from defectspectrum.data.dsfolder import DSFolder  # noqa: E402
from defectspectrum.data.splits import assign_splits  # noqa: E402
from defectspectrum.data.validate import validate  # noqa: E402
from defectspectrum.gen.sample import load_generator, write_samples  # noqa: E402
from defectspectrum.gen.train import GenConfig, train_generator  # noqa: E402

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_tiny_generator_learns_a_real_object(shared_data: Path, tmp_path: Path) -> None:
    folder = convert(real_dataset(shared_data, "mvtec_ad_subset"), tmp_path / "mvtec", "auto")
    assign_splits(folder, rule="first-k", k=2)
    folder.save()
    config = GenConfig(data=str(folder.root), object="bottle", preset="small", width=16, layers=1, size=64,
                       steps=300, batch_size=2, lr=2e-3, ema_decay=0.99, checkpoint_every=300, seed=0)
    result = train_generator(config, tmp_path / "run")
    first, last = np.mean(result.losses[:30]), np.mean(result.losses[-30:])
    assert last < 0.6 * first, (first, last)
    generator = load_generator(tmp_path / "run")
    drawn, _ = write_samples(generator, generator, switch=0, num=4, out=tmp_path / "gen", steps=25, keep_empty=True)
    assert validate(DSFolder.open(tmp_path / "gen")).ok
    classes = folder.classes("bottle")
    assert drawn.classes("bottle") == classes
    for sample in drawn:
        image, mask = drawn.load_image(sample), drawn.load_mask(sample)
        assert image.shape == (64, 64, 3) and mask.shape == (64, 64) and int(mask.max()) < len(classes)
        assert image.std() > 5  # not a flat grey: the model draws structure
