"""Generator training: the data policy, exact resume (model and EMA), and a loss that falls."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seg"))

from seg_helpers import split_synth  # noqa: E402

from defectspectrum.errors import InputError  # noqa: E402
from defectspectrum.gen.train import FewShotPairs, GenConfig, loss_rise, train_generator  # noqa: E402


@pytest.fixture(scope="module")
def ds(module_tmp) -> Path:
    return split_synth(module_tmp("gen") / "ds", size=40, per_type=3, k=2).root


def tiny(ds: Path, **changes) -> GenConfig:
    settings = {"data": str(ds), "object": "metal", "preset": "small", "width": 8, "layers": 1, "size": 32,
                "steps": 6, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 3, "ema_decay": 0.9}
    settings.update(changes)
    return GenConfig(**settings)


def test_batches_follow_the_data_policy(ds: Path) -> None:
    config = tiny(ds, size=24, hflip=True, rotate90=True)
    data = FewShotPairs.load(config)
    assert data.classes == ("background", "scratch", "spot", "hole", "stain")
    assert all(min(mask.shape) == 24 and image.shape[:2] == mask.shape for image, mask in data.pairs)
    assert all(not i.endswith(("good_000", "good_001")) for i in data.ids)  # defective images only by default
    batch = data.batch(config, 5)
    assert batch.shape == (2, 3 + 5, 24, 24)
    assert torch.equal(batch, data.batch(config, 5)) and not torch.equal(batch, data.batch(config, 6))
    halves = [data.batch(config, 5, rank, 2) for rank in (0, 1)]  # two processes share one global batch
    assert halves[0].shape == (2, 8, 24, 24) and not torch.equal(halves[0], halves[1])


def test_resume_is_exact_for_model_and_ema(ds: Path, tmp_path: Path) -> None:
    config = tiny(ds)
    straight = train_generator(config, tmp_path / "straight")
    train_generator(config, tmp_path / "split", stop_after=3)
    resumed = train_generator(config, tmp_path / "split", resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for x, y in zip(straight.ema.shadow_params, resumed.ema.shadow_params):
        assert torch.equal(x, y)
    assert not torch.equal(straight.ema.shadow_params[0], next(straight.model.parameters()).detach())
    with pytest.raises(InputError, match="--resume takes the run's own settings"):
        train_generator(tiny(ds, lr=5e-4), tmp_path / "split", resume=True)
    with pytest.raises(InputError, match="not an empty folder"):
        train_generator(config, tmp_path / "split")


def test_previews_show_ema_samples_and_leave_training_unchanged(ds: Path, tmp_path: Path) -> None:
    from PIL import Image

    plain = train_generator(tiny(ds, steps=4), tmp_path / "plain")
    watched = train_generator(tiny(ds, steps=4, preview_every=2), tmp_path / "watched")
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, watched.model.state_dict()[key]), key  # the model's own weights are put back
    for x, y in zip(plain.ema.shadow_params, watched.ema.shadow_params):
        assert torch.equal(x, y)
    previews = sorted((tmp_path / "watched" / "previews").glob("*.png"))
    assert [p.name for p in previews] == ["step_0000002.png", "step_0000004.png"]
    sheet = np.asarray(Image.open(previews[0]))
    assert sheet.shape[0] == 2 * 128 + 4 and sheet.shape[1] == 4 * 128 + 3 * 4  # 4 columns: image over overlay
    assert not np.array_equal(sheet, np.asarray(Image.open(previews[1])))  # the EMA weights moved between them
    assert not (tmp_path / "plain" / "previews").exists()


def test_a_rising_loss_is_named_as_divergence() -> None:
    falling = list(np.linspace(1.0, 0.1, 300))
    assert loss_rise(falling) is None and loss_rise(falling[:60]) is None
    diverged = falling + [0.4] * 100  # what a too-high learning rate did to a large model on MVTec bottle
    step, lowest, last = loss_rise(diverged)
    assert 250 <= step <= 310 and lowest < 0.2 and last == pytest.approx(0.4)
    assert loss_rise(falling + [0.15] * 100) is None  # a plateau a little above the best is not divergence


def test_the_loss_falls(ds: Path, tmp_path: Path) -> None:
    result = train_generator(tiny(ds, steps=60, lr=2e-3, checkpoint_every=60), tmp_path / "run")
    first, last = np.mean(result.losses[:10]), np.mean(result.losses[-10:])
    assert last < 0.8 * first, (first, last)


def test_config_mistakes_are_one_line(ds: Path) -> None:
    with pytest.raises(InputError, match="--size 30: a multiple of 4"):
        tiny(ds, size=30)
    with pytest.raises(InputError, match="--batch-size 100000: use 1 to 1024"):
        tiny(ds, batch_size=100_000)
    with pytest.raises(InputError, match="--steps 999999999999: use 1 to 100000000"):
        tiny(ds, steps=999_999_999_999)
    with pytest.raises(InputError, match="unknown object 'pill'; objects: metal"):
        FewShotPairs.load(tiny(ds, object="pill"))
    with pytest.raises(InputError, match="no defective samples in split 'test'"):
        FewShotPairs.load(tiny(ds, split="test"))
