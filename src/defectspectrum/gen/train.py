"""Training one Defect-Gen UNet on the `train` split of one object (few-shot: the paper uses 5
images per defect type), through Accelerate, with EMA weights and exact resume.

Data policy: images of any aspect are scaled so that the SHORT side is `size` (never stretched;
masks nearest-neighbour), then a random `size` x `size` crop is taken, with optional flips and
quarter turns (`hflip`, `vflip`, `rotate90`: safe for textures, not for oriented objects). The
few training pairs are decoded once and kept in memory.

Everything random at step k (which pairs, their crops and flips, the noise and timesteps) is drawn
from generators seeded by (seed, k), so a run resumed from its checkpoint at step N takes exactly
the steps it would have taken: N + resume + N gives the same weights as 2N. Each process of a
multi-process launch takes its share of every batch. Ctrl-C (one process) finishes the step under
way, checkpoints it and raises `TrainingStopped`; a second Ctrl-C stops at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.errors import InputError
from defectspectrum.gen.diffusion import DiffusionConfig, decode_pair, diffusion_loss, encode_pair, make_scheduler
from defectspectrum.gen.presets import Preset, load_preset
from defectspectrum.gen.unet import build_unet
from defectspectrum.io import write_json_atomic
from defectspectrum.progress import progress
from defectspectrum.seg.checkpoint import load_checkpoint, restore_states, save_checkpoint
from defectspectrum.seg.train import TrainingStopped, make_accelerator, stop_requests

GEN_JSON, LAST, PREVIEWS = "gen.json", "checkpoints/last.pt", "previews"
PREVIEW_SAMPLES, PREVIEW_STEPS = 4, 25  # pairs per preview, DDIM steps
FORMAT = "defectspectrum-gen-run"


@dataclass(frozen=True)
class GenConfig:
    """Every setting of a generator training run."""

    data: str
    object: str
    preset: str = "small"  # a preset name or a YAML file
    width: int | None = None  # base channels instead of the preset's
    layers: int | None = None  # resnet layers per block instead of the preset's
    size: int = 64
    split: str = "train"
    include_good: bool = False
    steps: int = 1000
    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 2e-3
    ema_decay: float = 0.9999
    grad_accum: int = 1
    hflip: bool = True
    vflip: bool = False
    rotate90: bool = False
    schedule: str = "cosine"
    prediction: str = "x0"
    mask_ce_weight: float = 0.0
    mixed_precision: str = "no"
    checkpoint_every: int = 500
    preview_every: int = 0  # draw PREVIEW_SAMPLES pairs with the EMA weights every N steps (0: never)
    seed: int = 0
    diffusion: DiffusionConfig = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "diffusion", DiffusionConfig(self.schedule, self.prediction,  # type: ignore[arg-type]
                                                              mask_ce_weight=self.mask_ce_weight))
        checks = [(16 <= self.size <= 1024 and self.size % 4 == 0, f"--size {self.size}: a multiple of 4, 16 to 1024"),
                  (1 <= self.steps <= 10**8, f"--steps {self.steps}: use 1 to 100000000"),
                  (1 <= self.batch_size <= 1024, f"--batch-size {self.batch_size}: use 1 to 1024"),
                  (self.grad_accum >= 1, f"--grad-accum {self.grad_accum}: use at least 1"),
                  (0 <= self.ema_decay < 1, f"--ema-decay {self.ema_decay}: use 0 to below 1"),
                  (self.lr > 0, f"--lr {self.lr}: must be positive"),
                  (self.checkpoint_every >= 1, f"--checkpoint-every {self.checkpoint_every}: use at least 1"),
                  (self.preview_every >= 0, f"--preview-every {self.preview_every}: use 0 (never) or more")]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("diffusion")
        return data

    def unet_preset(self) -> Preset:
        return load_preset(self.preset).scaled(self.width, self.layers)


def _scale_short_side(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    scale = size / min(h, w)
    shape = (max(size, round(w * scale)), max(size, round(h * scale)))  # cv2: (width, height)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, shape, interpolation=interpolation), cv2.resize(mask, shape,
                                                                               interpolation=cv2.INTER_NEAREST_EXACT)


@dataclass
class FewShotPairs:
    """The training pairs of one object, scaled (short side = size) and kept in memory."""

    pairs: list[tuple[np.ndarray, np.ndarray]]
    classes: tuple[str, ...]
    ids: list[str]
    short_side: int  # the training images' median short side before scaling (their pixel scale)

    @classmethod
    def load(cls, config: GenConfig) -> FewShotPairs:
        folder = DSFolder.open(Path(config.data))
        classes = folder.classes(config.object)  # unknown object: one line listing the folder's
        samples = [s for s in folder.samples(object=config.object, split=config.split)
                   if config.include_good or not s.is_good]
        if not samples:
            which = "" if config.include_good else "defective "
            raise InputError(f"{config.data}: object {config.object!r} has no {which}samples in split "
                             f"{config.split!r}; split the data first (data split) or pick another --split")
        pairs, sides = [], []
        for sample in samples:
            mask = folder.load_checked_mask(sample)
            sides.append(min(mask.shape))
            pairs.append(_scale_short_side(folder.load_image(sample), mask, config.size))
        return cls(pairs, classes.names, [s.id for s in samples], int(np.median(sides)))

    def batch(self, config: GenConfig, step: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        """This process's share of step `step`'s batch, a pure function of (seed, step)."""
        rng = np.random.default_rng([config.seed, step])
        total = config.batch_size * world
        chosen = rng.integers(0, len(self.pairs), total)
        items = []
        for i in range(total):
            image, mask = self.pairs[int(chosen[i])]
            y = int(rng.integers(0, mask.shape[0] - config.size + 1))
            x = int(rng.integers(0, mask.shape[1] - config.size + 1))
            image, mask = image[y:y + config.size, x:x + config.size], mask[y:y + config.size, x:x + config.size]
            flips = rng.random(3)
            if config.hflip and flips[0] < 0.5:
                image, mask = image[:, ::-1], mask[:, ::-1]
            if config.vflip and flips[1] < 0.5:
                image, mask = image[::-1], mask[::-1]
            turns = int(rng.integers(0, 4))
            if config.rotate90 and turns:
                image, mask = np.rot90(image, turns), np.rot90(mask, turns)
            if i % world == rank:
                items.append(encode_pair(image, mask, len(self.classes)))
        return torch.stack(items)


def read_config(out: Path) -> GenConfig:
    """The settings of the run in `out` (its gen.json), for --resume."""
    from defectspectrum.io import read_json

    path = Path(out) / GEN_JSON
    if not path.is_file():
        raise InputError(f"{out}: no {GEN_JSON}; give a run folder written by `defectspectrum gen train`")
    saved = read_json(path)
    try:
        return GenConfig(**saved["config"])
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a generator run file ({exc}); start a new run") from None


def write_preview(model: Any, ema: Any, config: GenConfig, num_classes: int, out: Path, step: int) -> Path:
    """`previews/step_NNNNNNN.png`: PREVIEW_SAMPLES pairs drawn with the EMA weights (the model's own
    weights are put back after), from the same noise at every step, so previews show progress."""
    from defectspectrum.gen.gallery import pairs_sheet
    from defectspectrum.gen.sampler import two_stage_sample
    from defectspectrum.io import save_png_atomic

    parameters = list(model.parameters())
    ema.store(parameters)
    ema.copy_to(parameters)
    model.eval()
    try:
        generators = [torch.Generator().manual_seed(config.seed * 1000 + k) for k in range(PREVIEW_SAMPLES)]
        x = two_stage_sample(model, None, make_scheduler(config.diffusion, "ddim"),
                             (PREVIEW_SAMPLES, 3 + num_classes, config.size, config.size), 0, generator=generators,
                             steps=PREVIEW_STEPS, device=parameters[0].device)
    finally:
        ema.restore(parameters)
    path = out / PREVIEWS / f"step_{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png_atomic(pairs_sheet([decode_pair(sample) for sample in x.float()], num_classes), path)
    return path


def loss_rise(losses: list[float], window: int = 50, factor: float = 2.0) -> tuple[int, float, float] | None:
    """(step, lowest, last) where the mean loss of the last `window` steps is over `factor` x its lowest
    running mean (at `step`): the run has likely diverged. None where it has not (or is too short)."""
    if len(losses) < 2 * window:
        return None
    running = np.convolve(np.asarray(losses, dtype=np.float64), np.ones(window) / window, mode="valid")
    lowest = int(running.argmin())
    if running[-1] > factor * running[lowest]:
        return lowest + window, float(running[lowest]), float(running[-1])
    return None


@dataclass
class GenTrainResult:
    """What a run produced: its folder, the final model, its EMA weights and the last mean loss."""

    out: Path
    model: Any
    ema: Any
    losses: list[float]


def train_generator(config: GenConfig, out: Path, *, resume: bool = False, stop_after: int | None = None,
                    on_step: Callable[[int, float], None] | None = None) -> GenTrainResult:
    """Train into `out` (new, or an existing run with `resume`); `stop_after` ends early at that step,
    with a checkpoint to resume from."""
    from diffusers.training_utils import EMAModel

    out = Path(out)
    if resume:
        if read_config(out) != config:
            raise InputError(f"{out}: --resume takes the run's own settings; the given ones differ")
    elif out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: exists and is not an empty folder; choose a new --out (or --resume)")
    accelerator = make_accelerator(config.mixed_precision)
    data = FewShotPairs.load(config)
    preset = config.unet_preset()
    torch.manual_seed(config.seed)
    model = build_unet(preset, 3 + len(data.classes), config.size)
    ema = EMAModel(model.parameters(), decay=config.ema_decay, foreach=True)  # one fused update, not a loop
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = make_scheduler(config.diffusion)
    start = 0
    if resume:
        state = load_checkpoint(out / LAST, ["model", "ema", "optimizer", "step"], "start again in a new folder")
        restore_states(out / LAST, state, {"model": model, "ema": ema, "optimizer": optimizer},
                       "start again in a new folder")
        start = int(state["step"])
    model, optimizer = accelerator.prepare(model, optimizer)
    ema.to(accelerator.device)
    stop = min(config.steps, stop_after) if stop_after is not None else config.steps
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / GEN_JSON, {"format": FORMAT, "version": 1, "config": config.to_json(),
                                           "classes": list(data.classes), "train_ids": data.ids,
                                           "train_short_side": data.short_side,
                                           "preset": preset.model_dump(mode="json"), "channels": 3 + len(data.classes)})

    def checkpoint(step: int) -> None:
        if accelerator.is_main_process:
            save_checkpoint(out / LAST, {"model": accelerator.unwrap_model(model).state_dict(),
                                         "ema": ema.state_dict(), "optimizer": optimizer.state_dict(), "step": step})
        accelerator.wait_for_everyone()

    def preview(step: int) -> None:
        if accelerator.is_main_process:
            write_preview(accelerator.unwrap_model(model), ema, config, len(data.classes), out, step)
        model.train()

    losses: list[float] = []
    model.train()
    with progress(stop, f"gen train {config.preset}", completed=start) as update, \
            stop_requests(accelerator.num_processes == 1) as stop_requested:
        for step in range(start, stop):
            for micro in range(config.grad_accum):
                x0 = data.batch(config, step * config.grad_accum + micro, accelerator.process_index,
                                accelerator.num_processes).to(accelerator.device)
                seed = int(np.random.SeedSequence([config.seed, step, micro, accelerator.process_index])
                           .generate_state(1)[0])
                torch.manual_seed(seed)  # dropout, if the preset has it
                generator = torch.Generator().manual_seed(seed)
                with accelerator.autocast():
                    loss = diffusion_loss(model, x0, scheduler, config.diffusion, generator)
                accelerator.backward(loss / config.grad_accum)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(accelerator.unwrap_model(model).parameters())
            losses.append(float(loss.detach()))
            update(1, f"loss {np.mean(losses[-20:]):.4f}")
            if on_step is not None and accelerator.is_main_process:
                on_step(step + 1, losses[-1])
            if config.preview_every and (step + 1) % config.preview_every == 0:
                preview(step + 1)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == stop:
                checkpoint(step + 1)
            elif stop_requested():  # Ctrl-C: the step under way is done; save it and stop
                checkpoint(step + 1)
                raise TrainingStopped(out, step + 1, "gen train")
    return GenTrainResult(out, accelerator.unwrap_model(model), ema, losses)
