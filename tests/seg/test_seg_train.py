"""Training: exact resume, best checkpoint, run.json, losses, two-process DDP on CPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from seg_helpers import register_tiny_model, split_synth  # noqa: E402

from defectspectrum.errors import InputError  # noqa: E402
from defectspectrum.seg.labels import IGNORE_INDEX  # noqa: E402
from defectspectrum.seg.run import RunConfig, read_run  # noqa: E402
from defectspectrum.seg.train import (  # noqa: E402
    StreamBatches,
    TrainingStopped,
    TrainStep,
    dice_loss,
    poly_schedule,
    stop_requests,
    train,
)


@pytest.fixture(scope="module")
def ds(module_tmp) -> Path:
    return split_synth(module_tmp("seg") / "ds").root


def tiny_config(ds: Path, **changes) -> RunConfig:
    settings = {"data": str(ds), "model": register_tiny_model(), "steps": 6, "val_every": 3, "crop_size": 32,
                "batch_size": 2, "num_workers": 0, "lr": 0.01}
    settings.update(changes)
    return RunConfig(**settings)


def test_resume_is_exact(ds, tmp_path):
    config = tiny_config(ds)
    straight = train(config, tmp_path / "straight")
    train(config, tmp_path / "split", stop_after=3)
    assert read_run(tmp_path / "split").results["last_step"] == 3
    with (tmp_path / "split" / "history.jsonl").open("a") as history:  # logged after the checkpoint, then killed
        history.write(json.dumps({"step": 4, "loss": 9.0}) + "\n")
    resumed = train(config, tmp_path / "split", resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    lines = [json.loads(line) for line in (tmp_path / "split" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 6]  # the line past the checkpoint is gone
    assert all("mIoU" in r for r in lines)


def test_ctrl_c_checkpoints_the_current_step_and_resume_is_exact(ds, tmp_path, sigint_default):
    config = tiny_config(ds, steps=14, val_every=7, num_workers=1)
    straight = train(config, tmp_path / "straight")

    def press_ctrl_c(event):  # the first progress event comes with the validation at step 7
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingStopped, match="stopped at step 8 .*--resume") as stopped:
        train(config, tmp_path / "run", on_event=press_ctrl_c)
    assert stopped.value.step == 8  # the step under way when Ctrl-C came is finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    assert read_run(tmp_path / "run").results["last_step"] == 8
    resumed = train(config, tmp_path / "run", resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_second_ctrl_c_interrupts_at_once(sigint_default):
    with stop_requests(True) as requested:
        assert not requested()
        os.kill(os.getpid(), signal.SIGINT)
        assert requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    with stop_requests(False) as never:  # several processes: Ctrl-C acts as usual
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert not never()


def test_a_different_seed_trains_differently(ds, tmp_path):
    a = train(tiny_config(ds, steps=2), tmp_path / "a").model.state_dict()
    b = train(tiny_config(ds, steps=2, seed=1), tmp_path / "b").model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].dtype.is_floating_point)


def test_run_folder_holds_settings_classes_split_and_best(ds, tmp_path):
    result = train(tiny_config(ds), tmp_path / "run")
    info = read_run(tmp_path / "run")
    assert info.config == tiny_config(ds)
    assert info.labels.names == ("background", "scratch", "dent", "stain") or info.labels.names[0] == "background"
    assert info.data["split_rule"] == {"rule": "first-k", "k": 2}
    assert info.data["train_ids"] and set(info.data["train_ids"]).isdisjoint(info.data["val_ids"])
    best = info.results["best"]
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    scored = [r for r in history if "mIoU" in r]
    assert best["mIoU"] == pytest.approx(max(r["mIoU"] for r in scored), abs=1e-3)
    saved = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert saved["step"] == best["step"]
    assert result.info.results["last_step"] == 6


def test_out_folder_rules(ds, tmp_path):
    config = tiny_config(ds, steps=1, val_every=1)
    train(config, tmp_path / "run")
    with pytest.raises(InputError, match="--resume"):
        train(config, tmp_path / "run")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an empty folder"):
        train(config, tmp_path / "other")
    with pytest.raises(InputError, match="no checkpoint to resume"):
        train(config, tmp_path / "fresh", resume=True)
    with pytest.raises(InputError, match="given ones differ"):
        train(config.replace(lr=0.5), tmp_path / "run", resume=True)


def test_no_split_is_one_clear_error(tmp_path):
    from defectspectrum.data.synth import write_ds_folder

    root = write_ds_folder(tmp_path / "ds", materials=["metal"], n_defective_per_type=1, n_good=1,
                           size=(32, 32)).root
    with pytest.raises(InputError, match="data split"):
        train(tiny_config(root), tmp_path / "run")


def test_stream_batches_cover_each_epoch_once_and_shard():
    pool = [(0, i) for i in range(5)]
    single = StreamBatches(pool, batch_size=2, seed=3, start=0, stop=5)
    keys = [key for batch in single for key in batch]
    first_epoch = [(s, i) for s, i, e in keys if e == 0]
    assert sorted(first_epoch) == pool  # every item once per epoch
    ranks = [StreamBatches(pool, 1, 3, 0, 5, rank=r, world=2) for r in (0, 1)]
    interleaved = [key for step in range(5) for r in ranks for key in r.batch(step)]
    assert interleaved == keys  # two processes together see the one-process stream
    resumed = StreamBatches(pool, 2, 3, start=2, stop=5)
    assert [k for b in resumed for k in b] == keys[4:]


def test_losses_ignore_padding():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    targets = torch.full((2, 4, 4), IGNORE_INDEX)
    step = TrainStep(lambda x: logits)  # type: ignore[arg-type]
    loss, _ = step(torch.zeros(2, 3, 4, 4), targets)
    assert loss.item() == 0.0  # an all-padding batch gives no signal, not NaN
    targets[:, :2, :] = 1
    perfect = torch.full((2, 3, 4, 4), -20.0)
    perfect[:, 1] = 20.0
    assert dice_loss(perfect, targets).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(-perfect, targets).item() > 0.9


def test_poly_schedule_with_warmup():
    factor = poly_schedule(10, warmup=2, power=1.0)
    assert [round(factor(s), 3) for s in (0, 1, 2, 5, 10)] == [0.5, 1.0, 0.8, 0.5, 0.0]


def test_auto_class_weights_favour_rare_classes(ds, tmp_path):
    result = train(tiny_config(ds, steps=1, val_every=1, class_weights="auto"), tmp_path / "run")
    weights = result.info.data["class_weights"]
    assert weights[0] == min(weights)  # background is the most frequent class
    with pytest.raises(InputError, match="class-weights"):
        train(tiny_config(ds, steps=1, class_weights=(1.0, 2.0)), tmp_path / "bad")


@pytest.mark.slow
def test_two_process_cpu_training_ends_with_equal_weights(ds, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not found beside the Python interpreter")
    script = Path(__file__).with_name("ddp_train.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(ds),
                           str(tmp_path / "run"), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(tmp_path / "world1.pt", weights_only=True)["processes"] == 2
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    assert read_run(tmp_path / "run").environment["num_processes"] == 2


def test_bf16_mixed_precision_trains_on_cpu(ds, tmp_path):
    result = train(tiny_config(ds, steps=2, val_every=2, mixed_precision="bf16"), tmp_path / "run")
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert result.model[0].weight.dtype == torch.float32  # weights stay fp32; only the forward is autocast
    assert read_run(tmp_path / "run").results["best"]["mIoU"] is not None
