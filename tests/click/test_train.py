"""Training ClickNet: the loss falls on procedural data, exact resume, crops and clicks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click_helpers import TINY, split_synth  # noqa: E402

from conftest import ModuleTmp  # noqa: E402
from defectspectrum.click.train import (  # noqa: E402
    LAST,
    RUN_JSON,
    ClickTrainConfig,
    crop_window,
    train_click,
)
from defectspectrum.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def ds(module_tmp: ModuleTmp) -> Path:
    root = module_tmp("clicktrain") / "synth"
    split_synth(root)
    return root


def config(ds: Path, steps: int, **options: object) -> ClickTrainConfig:
    settings: dict[str, object] = {"data": str(ds), "steps": steps, "batch_size": 4, "crop_size": 64,
                                   "lr": 3e-3, "checkpoint_every": 100, "model": TINY, **options}
    return ClickTrainConfig(**settings)  # type: ignore[arg-type]


def test_training_lowers_the_loss_and_writes_the_run(ds: Path, tmp_path: Path) -> None:
    run = train_click(config(ds, 40), tmp_path / "run")
    history = [h["loss"] for h in run.info["results"]["history"]]
    assert len(history) == 4 and history[-1] < history[0]
    saved = json.loads((tmp_path / "run" / RUN_JSON).read_text())
    assert saved["config"]["steps"] == 40 and saved["model_config"] == TINY.to_json()
    assert saved["results"]["last_step"] == 40 and (tmp_path / "run" / LAST).is_file()


def test_resume_is_exact(ds: Path, tmp_path: Path) -> None:
    whole = train_click(config(ds, 6, checkpoint_every=3), tmp_path / "whole").model.state_dict()
    train_click(config(ds, 6, checkpoint_every=3), tmp_path / "parts", stop_after=3)
    assert json.loads((tmp_path / "parts" / RUN_JSON).read_text())["results"]["last_step"] == 3
    resumed = train_click(config(ds, 6, checkpoint_every=3), tmp_path / "parts", resume=True).model.state_dict()
    for key, value in whole.items():
        assert torch.equal(value, resumed[key]), key


def test_run_folder_errors(ds: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no checkpoint to resume"):
        train_click(config(ds, 2), tmp_path / "none", resume=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="not an empty folder"):
        train_click(config(ds, 2), tmp_path / "full")
    with pytest.raises(InputError, match="--crop-size 50"):
        train_click(config(ds, 2, crop_size=50), tmp_path / "bad")


def test_multi_level_crop_holds_the_object_where_it_fits() -> None:
    pixels = np.ones((10, 20), bool)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y0, x0, side = crop_window((400, 400), (100, 200, 20, 10), pixels, 64, (1.0, 6.0), rng)
        assert 400 / 6 - 1e-6 <= side <= 400 + 1e-6
        assert y0 <= 200 and 210 <= y0 + side and x0 <= 100 and 120 <= x0 + side


def test_appearance_jitter_moves_image_and_mask_together() -> None:
    from defectspectrum.click.train import jitter_appearance

    image = np.full((32, 32, 3), 100, np.uint8)
    image[2:6, 20:30] = 250  # a bright bar, off-centre
    truth = np.zeros((32, 32), bool)
    truth[2:6, 20:30] = True
    seen = set()
    for seed in range(24):
        out, mask = jitter_appearance(image, truth, np.random.default_rng(seed))
        assert mask.sum() == truth.sum() and out.dtype == np.uint8 and out.shape == image.shape
        inside, outside = out[mask].astype(int).sum(1), out[~mask].astype(int).sum(1)
        assert abs(inside.mean() - outside.mean()) > 60  # the bar is still where the mask says
        seen.add(np.flatnonzero(mask.any(0)).tolist().__str__() + np.flatnonzero(mask.any(1)).tolist().__str__())
    assert len(seen) >= 4  # flips and turns put the bar in several places


def test_fine_tuning_starts_from_the_given_weights(ds: Path, tmp_path: Path) -> None:
    first = train_click(config(ds, 2), tmp_path / "first").model
    tuned = train_click(config(ds, 1, lr=0.0, warmup_steps=0, init=str(tmp_path / "first")), tmp_path / "tuned")
    start = dict(first.named_parameters())
    for name, value in tuned.model.named_parameters():  # lr 0: the weights are the ones it started from
        assert torch.equal(value, start[name]), name
    fresh = train_click(config(ds, 1, lr=0.0, warmup_steps=0, seed=5), tmp_path / "fresh").model
    assert not all(torch.equal(v, start[k]) for k, v in fresh.named_parameters())
    from defectspectrum.click.model import ClickModelConfig

    with pytest.raises(InputError, match="--init .* differs"):
        train_click(config(ds, 1, init=str(tmp_path / "first"), model=ClickModelConfig()), tmp_path / "other")


def test_crop_workers_do_not_change_the_run(ds: Path, tmp_path: Path) -> None:
    alone = train_click(config(ds, 3), tmp_path / "alone").model.state_dict()
    helped = train_click(config(ds, 3), tmp_path / "helped", workers=2).model.state_dict()
    for key, value in alone.items():
        assert torch.equal(value, helped[key]), key


def test_flawed_starts_give_masks_to_edit_and_the_first_click_fixes_them(ds: Path) -> None:
    from defectspectrum.click.noc import iou
    from defectspectrum.click.objects import folder_instances
    from defectspectrum.click.train import ObjectCrops, StepBatches, simulate_clicks
    from defectspectrum.data.dsfolder import DSFolder

    folder = DSFolder.open(ds)
    items = folder_instances(folder, list(folder))
    always = StepBatches(ObjectCrops(folder, items, config(ds, 4, flawed_starts=1.0)), 0)
    _images, truths, starts, _extra = always[2]
    scores = [iou(t, s) for t, s in zip(truths, starts) if t.sum() >= 4]
    assert scores and all(0.45 <= score <= 0.92 for score in scores)
    never = StepBatches(ObjectCrops(folder, items, config(ds, 4, flawed_starts=0.0)), 0)
    assert not never[2][2].any()
    clicks, previous = simulate_clicks(None, None, truths, 0, 2, starts)  # type: ignore[arg-type]
    assert np.array_equal(previous.numpy() > 0, starts)
    for truth, start, (first,) in zip(truths, starts, clicks):  # the first click lies on the start's error
        assert truth[first.y, first.x] != start[first.y, first.x]
