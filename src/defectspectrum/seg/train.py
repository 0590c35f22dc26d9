"""Training: one loop for every zoo model, on CPU, one GPU or many (Accelerate / torchrun).

The data order is a pure function of the seed: step s takes positions [s*B*W, (s+1)*B*W) of an
endless stream of seeded per-epoch permutations, each process its own B, and augmentation of an
item draws from (seed, epoch, index). With the model, optimiser, LR schedule and torch RNG states
in `checkpoints/last.pt`, a resumed run continues exactly where it stopped (2N steps equal N +
resume + N). Validation runs every `val_every` steps on the whole val images (tiled at the
training crop size), sharded over processes, and keeps the best weights by val mIoU in `best.pt`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.errors import DefectSpectrumError, InputError
from defectspectrum.io import write_json_atomic, write_text_atomic
from defectspectrum.progress import progress
from defectspectrum.seg.checkpoint import load_checkpoint, restore_states, save_checkpoint
from defectspectrum.seg.dataset import DSDataset
from defectspectrum.seg.evaluate import confusion_on
from defectspectrum.seg.infer import TorchPredictor
from defectspectrum.seg.labels import IGNORE_INDEX, LabelSpace
from defectspectrum.seg.metrics import SegScores, scores
from defectspectrum.seg.models import create_model
from defectspectrum.seg.preprocess import Preprocess
from defectspectrum.seg.run import (
    BEST,
    HISTORY,
    LAST,
    RUN_JSON,
    RunConfig,
    RunInfo,
    ids_digest,
    read_history,
    read_run,
)
from defectspectrum.seg.transforms import TrainTransform


@dataclass
class TrainResult:
    """A finished (or stopped) run: what run.json holds, and the trained model as it is in memory
    (the last weights, unwrapped, on the training device)."""

    info: RunInfo
    model: nn.Module


@dataclass(frozen=True)
class TrainEvent:
    """What the trainer reports to its caller after a logged step (the CLI prints it)."""

    step: int
    steps: int
    loss: float
    lr: float
    scores: SegScores | None = None  # set on validation steps
    best_miou: float | None = None


# -- data ------------------------------------------------------------------------------------------


class _EpochItems(Dataset):
    """Items addressed as (source, index, epoch): the epoch seeds the item's augmentation."""

    def __init__(self, sources: Sequence[DSDataset]) -> None:
        self.sources = list(sources)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        source, index, epoch = key
        dataset = self.sources[source]
        dataset.set_epoch(epoch)
        item = dataset[index]
        return {"image": item["image"], "mask": item["mask"]}


class StreamBatches:
    """Batch sampler over an endless stream of seeded per-epoch permutations of `pool`.

    `pool` lists (source, index) pairs; step s of process `rank` takes the stream positions
    s*B*W + rank*B ... + B. Starting at `start` skips the earlier steps without loading them."""

    def __init__(self, pool: Sequence[tuple[int, int]], batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world: int = 1) -> None:
        if not pool:
            raise InputError("no training samples")
        self.pool = list(pool)
        self.batch_size, self.seed, self.start, self.stop = batch_size, seed, start, stop
        self.rank, self.world = rank, world
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.pool))}
        return self._orders[epoch]

    def batch(self, step: int) -> list[tuple[int, int, int]]:
        first = (step * self.world + self.rank) * self.batch_size
        keys = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, len(self.pool))
            source, index = self.pool[int(self._order(epoch)[offset])]
            keys.append((source, index, epoch))
        return keys

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for step in range(self.start, self.stop):
            yield self.batch(step)


def _synthetic_pool(config: RunConfig, labels: LabelSpace, transform: TrainTransform, n_real: int) -> DSDataset | None:
    """The extra synthetic pairs of an aug-study run: round(ratio * n_real) of them, seeded."""
    if config.extra_synthetic is None or config.synthetic_ratio <= 0:
        return None
    dataset = DSDataset(config.extra_synthetic, objects=list(labels.objects), labels=labels, synthetic="include",
                        transform=transform, seed=config.seed)
    wanted = round(config.synthetic_ratio * n_real)
    if wanted > len(dataset):
        raise InputError(f"{config.extra_synthetic}: {len(dataset)} synthetic pairs, but ratio "
                         f"{config.synthetic_ratio:g} of {n_real} real pairs needs {wanted}; generate more or lower it")
    chosen = np.sort(np.random.default_rng([config.seed, 7]).choice(len(dataset), size=wanted, replace=False))
    dataset.samples = [dataset.samples[i] for i in chosen]
    return dataset


# -- loss --------------------------------------------------------------------------------------------


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft multi-class dice (1 - mean dice over the classes present in the batch), ignoring 255."""
    valid = targets != IGNORE_INDEX
    probs = logits.float().softmax(1) * valid.unsqueeze(1)
    onehot = F.one_hot(targets.masked_fill(~valid, 0), logits.shape[1]).permute(0, 3, 1, 2).float()
    onehot = onehot * valid.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    if not present.any():
        return logits.sum() * 0.0
    dice = (2 * intersection + 1.0) / (total + 1.0)
    return 1.0 - dice[present].mean()


class TrainStep(nn.Module):
    """Model + loss as one module, so DDP sees every forward (models with their own `loss` too)."""

    def __init__(self, model: nn.Module, class_weights: torch.Tensor | None = None, dice_weight: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.dice_weight = dice_weight
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        own_loss = getattr(self.model, "loss", None)
        if callable(own_loss):
            loss, logits = own_loss(images, targets)
            return loss, logits
        logits = self.model(images)
        if not (targets != IGNORE_INDEX).any():  # an all-padding batch: no signal, but keep the graph
            return logits.sum() * 0.0, logits
        loss = F.cross_entropy(logits.float(), targets, weight=self.class_weights, ignore_index=IGNORE_INDEX)
        if self.dice_weight > 0:
            loss = loss + self.dice_weight * dice_loss(logits, targets)
        return loss, logits


def auto_class_weights(dataset: DSDataset, num_classes: int) -> torch.Tensor:
    """ENet-style weights 1 / ln(1.02 + frequency) from the training masks (absent classes get the
    largest weight), normalised to mean 1."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for sample in dataset.samples:  # masks only: the images are not needed to count pixels
        labels = dataset.labels.to_labels(dataset.folder.load_checked_mask(sample), sample.object)
        counts += np.bincount(labels[labels != IGNORE_INDEX].ravel(), minlength=num_classes)[:num_classes]
    frequency = counts / max(1, counts.sum())
    weights = 1.0 / np.log(1.02 + frequency)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def poly_schedule(steps: int, warmup: int, power: float) -> Callable[[int], float]:
    """LR factor at step s: linear warm-up, then (1 - s/steps)^power (mmseg's PolyLR, eta_min 0)."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, 1.0 - step / steps) ** power

    return factor


# -- the run -----------------------------------------------------------------------------------------


def _check_out(out: Path, resume: bool) -> None:
    if resume:
        if not (out / LAST).is_file():
            raise InputError(f"{out}: no checkpoint to resume ({LAST} is missing: the run stopped before its first "
                             "checkpoint); start it again without --resume")
        return
    if (out / RUN_JSON).exists():
        if not (out / LAST).exists():  # a run that stopped before its first checkpoint: start it again
            read_run(out)  # only a folder of ours
            for name in (RUN_JSON, HISTORY, BEST):
                (out / name).unlink(missing_ok=True)
            return
        raise InputError(f"{out}: a run is already there; use --resume to continue it or choose a new --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty folder; choose a new --out")


def cpu_launch() -> bool:
    """True for a multi-process launch (torchrun, accelerate launch) without GPUs: Accelerate then needs
    `cpu=True` to treat it as CPU data parallel (gloo) instead of as many single processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def make_accelerator(mixed_precision: str = "no") -> Accelerator:
    """Accelerate's view of this process: one GPU, many (torchrun / accelerate launch) or the CPU.
    Accelerate treats a multi-process launch without GPUs as CPU data parallel (gloo) only when told
    `cpu=True`, so that is passed exactly then."""
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        raise InputError("--mixed-precision fp16 needs a GPU; on the CPU use bf16 or no")
    from accelerate.state import AcceleratorState

    # Accelerate keeps one state per process; a second run in the same process (a benchmark grid, a
    # notebook) with another precision needs it cleared (the process group, if any, is kept).
    if AcceleratorState._shared_state and AcceleratorState._shared_state.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu_launch())


def sync_buffers(model: nn.Module, accelerator: Accelerator) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics), as DDP does before each
    forward: after the last step each rank holds its own, and validation and the saved weights must agree."""
    if accelerator.num_processes > 1:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer.data, src=0)


def _environment(accelerator: Accelerator) -> dict[str, Any]:
    import accelerate

    return {"torch": torch.__version__, "accelerate": accelerate.__version__, "python": platform.python_version(),
            "device": str(accelerator.device), "num_processes": accelerator.num_processes,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _data_info(folder: DSFolder, train: DSDataset, val: DSDataset | None,
               synthetic: DSDataset | None) -> dict[str, Any]:
    train_ids = [s.id for s in train.samples]
    val_ids = [s.id for s in val.samples] if val is not None else []
    info: dict[str, Any] = {"name": folder.name, "split_rule": folder.meta.get("split"),
                            "train_ids": train_ids, "val_ids": val_ids,
                            "train_digest": ids_digest(train_ids), "val_digest": ids_digest(val_ids)}
    if synthetic is not None:
        info["synthetic_ids"] = [s.id for s in synthetic.samples]
    return info


def _datasets(config: RunConfig, folder: DSFolder, labels: LabelSpace
              ) -> tuple[DSDataset, DSDataset | None, DSDataset | None]:
    transform = TrainTransform(crop_size=config.crop_size, scale=config.scale, hflip=config.hflip,
                               vflip=config.vflip, rotate90=config.rotate90, defect_crop=config.defect_crop)
    objects = list(labels.objects)
    train = DSDataset(folder, split=config.train_split, objects=objects, labels=labels, synthetic=config.synthetic,
                      include_good=config.include_good, transform=transform, seed=config.seed)
    val = None
    if config.val_split and any(s.split == config.val_split and s.object in labels.objects and not s.synthetic
                                for s in folder):
        val = DSDataset(folder, split=config.val_split, objects=objects, labels=labels, synthetic="exclude",
                        transform=None, seed=config.seed)
    return train, val, _synthetic_pool(config, labels, transform, len(train))


def prepare_data(config: RunConfig) -> tuple[DSFolder, LabelSpace, tuple[DSDataset, DSDataset | None,
                                                                        DSDataset | None]]:
    """The run's DS folder, label space and datasets (train, val, extra synthetic): reads the indexes
    only, so grids call it for every cell before training any (a bad cell fails first, not halfway)."""
    folder = DSFolder.open(Path(config.data))
    objects = config.objects if config.objects is not None else tuple(folder.objects)
    labels = LabelSpace.build({name: folder.classes(name) for name in objects}, config.labels)
    return folder, labels, _datasets(config, folder, labels)


def _trim_history(out: Path, step: int) -> None:
    """Drop history lines past `step` (logged after the checkpoint a resumed run starts from)."""
    kept = [record for record in read_history(out) if record.get("step", 0) <= step]
    write_text_atomic(out / HISTORY, "".join(json.dumps(record, allow_nan=False) + "\n" for record in kept))


def _append_history(out: Path, record: dict[str, Any]) -> None:
    with (out / HISTORY).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, allow_nan=False) + "\n")


class TrainingStopped(DefectSpectrumError):
    """Ctrl-C during training: the run was checkpointed after its current step and can be resumed."""

    def __init__(self, out: Path, step: int, command: str = "seg train") -> None:
        super().__init__(f"stopped at step {step} (Ctrl-C); its checkpoint is saved: continue with "
                         f"`defectspectrum {command} --out {out} --resume`")
        self.out, self.step = out, step


@contextmanager
def stop_requests(enabled: bool) -> Iterator[Callable[[], bool]]:
    """Yields `requested()`: in one process on the main thread, the first Ctrl-C (SIGINT) only asks the
    training loop to stop after its current step (so that it checkpoints); a second one interrupts at once.
    Elsewhere (several processes, where ranks would stop at different steps) Ctrl-C acts as usual."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    requested: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def ignore_interrupts(_worker: int) -> None:
    """Data loader workers leave Ctrl-C to the main process, which stops them when it ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train(config: RunConfig, out: Path, *, resume: bool = False, stop_after: int | None = None,
          on_event: Callable[[TrainEvent], None] | None = None) -> TrainResult:
    """Train `config.model` on `config.data` into `out` (a new folder, or an existing run with
    `resume`); returns the run's info (as written to run.json) and the model. `stop_after` ends the run early at
    that step, leaving a checkpoint to resume (the LR schedule still spans `config.steps`)."""
    out = Path(out)
    accelerator = make_accelerator(config.mixed_precision)
    _check_out(out, resume)
    accelerator.wait_for_everyone()  # every process has checked `out` before the first one writes there
    folder, labels, (train_set, val_set, synthetic) = prepare_data(config)
    preprocess = Preprocess()
    info = RunInfo(config=config, labels=labels, preprocess=preprocess,
                   data=_data_info(folder, train_set, val_set, synthetic), environment=_environment(accelerator))
    if resume:
        previous = read_run(out)
        if previous.config != config:
            raise InputError(f"{out}: --resume takes the run's own settings; the given ones differ")
        if previous.data.get("train_digest") != info.data["train_digest"]:
            raise InputError(f"{out}: the training split of {config.data} changed since the run started; "
                             "resume on the same data or start a new run")
        info.results = previous.results

    torch.manual_seed(config.seed)
    model = create_model(config.model, labels.num_classes,
                         weights=Path(config.weights) if config.weights else None)
    weights = None
    if config.class_weights == "auto":
        weights = auto_class_weights(train_set, labels.num_classes)
    elif config.class_weights is not None:
        if len(config.class_weights) != labels.num_classes:
            raise InputError(f"--class-weights: {len(config.class_weights)} values for {labels.num_classes} classes "
                             f"({', '.join(labels.names)})")
        weights = torch.tensor(config.class_weights, dtype=torch.float32)
    if weights is not None:
        info.data["class_weights"] = [round(float(w), 6) for w in weights]
    step_module = TrainStep(model, weights, config.dice_weight)
    parameters = [p for p in step_module.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=0.9,
                                                           weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_schedule(config.steps, config.warmup_steps,
                                                                          config.poly_power))
    step_module, optimizer = accelerator.prepare(step_module, optimizer)
    core = accelerator.unwrap_model(step_module).model

    start, best = 0, None
    if resume:
        state = load_checkpoint(out / LAST, ["model", "optimizer", "schedule", "rng", "step"],
                                "start the run again in a new folder")
        restore_states(out / LAST, state, {"model": core, "optimizer": optimizer, "schedule": schedule},
                       "start the run again in a new folder")
        if accelerator.scaler is not None and state.get("scaler"):
            accelerator.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        if torch.cuda.is_available() and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start, best = int(state["step"]), state.get("best")
        if accelerator.is_main_process:
            _trim_history(out, start)
    stop = min(config.steps, stop_after) if stop_after is not None else config.steps
    if start >= stop:
        return TrainResult(info, core)

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        info.results.setdefault("params", sum(p.numel() for p in core.parameters()))
        write_json_atomic(out / RUN_JSON, info.to_json())
    accelerator.wait_for_everyone()

    sources = [train_set] + ([synthetic] if synthetic is not None else [])
    pool = [(s, i) for s, dataset in enumerate(sources) for i in range(len(dataset))]
    batches = StreamBatches(pool, config.batch_size, config.seed, start, stop, accelerator.process_index,
                            accelerator.num_processes)
    loader = DataLoader(_EpochItems(sources), batch_sampler=batches, num_workers=config.num_workers,
                        pin_memory=accelerator.device.type == "cuda",
                        generator=torch.Generator().manual_seed(config.seed),
                        worker_init_fn=ignore_interrupts, persistent_workers=False)

    def checkpoint(step: int) -> None:
        if accelerator.is_main_process:
            save_checkpoint(out / LAST, {
                "model": core.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "step": step, "best": best})
            write_json_atomic(out / RUN_JSON, info.to_json())
        accelerator.wait_for_everyone()

    def validate(step: int) -> SegScores | None:
        nonlocal best
        if val_set is None:
            if accelerator.is_main_process:
                save_checkpoint(out / BEST, {"model": core.state_dict(), "step": step})
                info.results["best"] = {"step": step, "mIoU": None, "note": "no val split: the last weights"}
            return None
        sync_buffers(core, accelerator)
        core.eval()
        predictor = TorchPredictor(core, preprocess, tile=config.crop_size, overlap=config.tile_overlap)
        matrix = confusion_on(predictor, val_set, accelerator.process_index, accelerator.num_processes)
        total = accelerator.reduce(torch.from_numpy(matrix).to(accelerator.device), reduction="sum")
        core.train()
        result = scores(total.cpu().numpy(), list(labels.names))
        miou = result.mIoU if not math.isnan(result.mIoU) else -1.0
        if best is None or miou > best:
            best = miou
            if accelerator.is_main_process:
                save_checkpoint(out / BEST, {"model": core.state_dict(), "step": step, "mIoU": result.mIoU})
                summary = {key: value for key, value in result.to_json().items() if key != "confusion_matrix"}
                info.results["best"] = {"step": step, **summary}
        return result

    core.train()
    begun = time.perf_counter()
    running: list[float] = []
    with progress(stop, f"train {config.model}", completed=start) as update, \
            stop_requests(accelerator.num_processes == 1) as stop_requested:
        for step, batch in enumerate(loader, start=start):
            images = batch["image"].to(accelerator.device, non_blocking=True)
            targets = batch["mask"].to(accelerator.device, non_blocking=True)
            with accelerator.autocast():
                loss, _ = step_module(images, targets)
            if not torch.isfinite(loss.detach()):
                raise InputError(f"the loss became {float(loss.detach())} at step {step + 1}: training diverged; "
                                 "lower --lr, check --class-weights, or resume from the last checkpoint")
            accelerator.backward(loss)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            running.append(float(loss.detach()))
            done = step + 1
            is_val = done % config.val_every == 0 or done == config.steps
            status = f"loss {np.mean(running[-20:]):.3f}" + (f"  best mIoU {best:.1f}" if best is not None else "")
            update(1, status)
            if stop_requested() and done < stop:
                info.results["last_step"] = done
                info.results["train_seconds"] = round(info.results.get("train_seconds", 0.0)
                                                      + time.perf_counter() - begun, 2)
                checkpoint(done)
                raise TrainingStopped(out, done)
            if not (is_val or done == stop or done % 10 == 0):
                continue
            mean_loss = float(accelerator.reduce(torch.tensor(np.mean(running), device=accelerator.device),
                                                 reduction="mean"))
            running.clear()
            result = validate(done) if is_val else None
            record: dict[str, Any] = {"step": done, "loss": round(mean_loss, 6), "lr": schedule.get_last_lr()[0],
                                      "seconds": round(time.perf_counter() - begun, 2)}
            if result is not None:
                record.update(mIoU=_finite(result.mIoU), aAcc=_finite(result.aAcc), mAcc=_finite(result.mAcc))
            if accelerator.is_main_process:
                _append_history(out, record)
            info.results["last_step"] = done
            if is_val or done == stop:
                checkpoint(done)
            if on_event is not None and accelerator.is_main_process:
                on_event(TrainEvent(done, config.steps, mean_loss, record["lr"], result, best))
    sync_buffers(core, accelerator)
    info.results["train_seconds"] = round(info.results.get("train_seconds", 0.0) + time.perf_counter() - begun, 2)
    if accelerator.is_main_process:
        write_json_atomic(out / RUN_JSON, info.to_json())
    accelerator.wait_for_everyone()
    return TrainResult(info, core)


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)
