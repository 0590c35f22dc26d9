"""Training ClickNet on a DS folder's train split (RITM / FocalClick style), through Accelerate.

Per step, with a generator seeded by (seed, step, process), so a resumed run draws what the
uninterrupted one would (2N steps equal N + resume + N):

- Objects: `batch_size` instances drawn uniformly from every object of the train split
  (`objects.instances`: each 8-connected region of each defect class).
- Multi-level crops (the paper's "rescale to 512..3072, then crop 512"): the image is rescaled so its
  long side is `crop_size` x s, s log-uniform in `scale_range` (default 1..6), and a `crop_size`
  square is cut that holds the whole object where it fits (at a random place), else a part of it
  around a random object pixel; outside the image is black. At s = 1 the crop sees the whole image,
  as the coarse pass does; at s = 6 a small defect fills it, as in a focus crop, so small and thin
  defects are seen at many scales. (Done as one affine warp of the window, not a full rescale.)
- Clicks from the model's own errors: the first click from the simulator on an empty mask
  (`simulator.next_click`: the centre of the object), or, for the share `flawed_starts` (0.25) of the
  objects, on a flawed mask of the object (too much or too little of it, IoU 0.5..0.9, `degrade`), so
  the model learns to edit a given mask rather than redraw it; then 0..`max_extra_clicks` (drawn per step)
  iterations without gradients in eval mode where the model predicts, the simulator adds a click at
  its largest error, and the prediction becomes the previous-mask channel. The last state is trained.
- Appearance (`augment`, on by default): each crop is flipped and turned by a multiple of 90 degrees,
  made grey with probability 0.3 (much inspection imagery is grey) and its contrast and brightness
  jittered (x0.6..1.4, +-25 grey levels), so a model trained on one set of surfaces meets others.
- Loss: `bce_weight` x binary cross-entropy + `dice_weight` x soft dice (per image); default 1:1, as the
  mask:dice = 5:5 of the paper's Mask2Former losses (cls:mask:dice = 2:5:5; no class term here: one
  binary mask per object). AdamW; the learning rate warms up linearly over `warmup_steps`, then falls as
  (1 - step/steps)^0.9 (mmseg's poly schedule, shared with `seg train`).

Fine-tuning: `init` names the weights to start from (`default`: the shipped model; a run folder; a
weights file); the model config is then theirs.

Files: `click.json` (the settings, model config, data and results) and `checkpoints/last.pt` (model,
optimiser, step, model config), written every `checkpoint_every` steps, at the end and on Ctrl-C.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from defectspectrum.click.clicks import Click, click_maps
from defectspectrum.click.model import ClickModelConfig, build_click_model, click_input, state_size
from defectspectrum.click.objects import Instance, folder_instances
from defectspectrum.click.simulator import next_click
from defectspectrum.data.dsfolder import DSFolder, select_samples
from defectspectrum.errors import InputError
from defectspectrum.io import read_json, write_json_atomic
from defectspectrum.progress import progress
from defectspectrum.seg.checkpoint import load_checkpoint, restore_states, save_checkpoint
from defectspectrum.seg.preprocess import Preprocess
from defectspectrum.seg.train import TrainingStopped, ignore_interrupts, make_accelerator, poly_schedule, stop_requests

RUN_JSON = "click.json"
LAST = Path("checkpoints") / "last.pt"


@dataclass(frozen=True)
class ClickTrainConfig:
    """A training run's settings (saved in click.json; `--resume` takes them from there)."""

    data: str
    objects: tuple[str, ...] | None = None
    steps: int = 2000
    batch_size: int = 8
    crop_size: int = 256
    scale_range: tuple[float, float] = (1.0, 6.0)
    max_extra_clicks: int = 3
    lr: float = 3e-4
    warmup_steps: int = 100
    augment: bool = True
    weight_decay: float = 1e-4
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    model: ClickModelConfig = field(default_factory=ClickModelConfig)
    init: str | None = None  # start from these weights (`default`, a run, a weights file): fine-tuning
    flawed_starts: float = 0.25  # share of objects whose clicking starts from a flawed mask

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["objects"] = list(self.objects) if self.objects is not None else None
        data["scale_range"] = list(self.scale_range)
        return data

    def check(self) -> None:
        """InputError for settings that cannot train."""
        low, high = self.scale_range
        if not 0 < low <= high:
            raise InputError(f"--scale-range {low},{high}: give 0 < low <= high (e.g. 1,6)")
        if self.crop_size < 32 or self.crop_size % 32:
            raise InputError(f"--crop-size {self.crop_size}: give a multiple of 32, at least 32")
        if min(self.steps, self.batch_size, self.checkpoint_every) < 1 or self.max_extra_clicks < 0:
            raise InputError("--steps, --batch-size and the checkpoint interval must be at least 1")
        if not 0 <= self.flawed_starts <= 1:
            raise InputError(f"--flawed-starts {self.flawed_starts}: give a share between 0 and 1")
        if self.warmup_steps < 0:
            raise InputError(f"--warmup-steps {self.warmup_steps}: give 0 or more")


@dataclass
class ClickRun:
    """A finished or stopped run: what click.json holds and the model as trained."""

    info: dict[str, Any]
    model: nn.Module


# -- data --------------------------------------------------------------------------------------------


def crop_window(shape: tuple[int, int], bbox: tuple[int, int, int, int], pixels: np.ndarray, crop: int,
                scale_range: tuple[float, float], rng: np.random.Generator) -> tuple[float, float, float]:
    """(y0, x0, side) in image pixels of the module's multi-level crop for an object with `bbox` (x, y, w, h)."""
    low, high = scale_range
    s = math.exp(rng.uniform(math.log(low), math.log(high))) if high > low else low
    side = max(shape) / s  # the window that becomes crop x crop after the rescale
    x, y, w, h = bbox
    if w <= side and h <= side:
        y0 = rng.uniform(y + h - side, y)
        x0 = rng.uniform(x + w - side, x)
    else:
        rows, cols = np.nonzero(pixels)
        pick = int(rng.integers(len(rows)))
        cy, cx = y + rows[pick] + 0.5, x + cols[pick] + 0.5
        y0 = cy - side / 2 + rng.uniform(-side / 4, side / 4)
        x0 = cx - side / 2 + rng.uniform(-side / 4, side / 4)
    return y0, x0, side


def warp(array: np.ndarray, y0: float, x0: float, side: float, crop: int, nearest: bool) -> np.ndarray:
    """The window (y0, x0, side) of `array` resized to crop x crop (black / 0 outside the image)."""
    scale = crop / side
    matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(array, matrix, (crop, crop), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def jitter_appearance(image: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """The module's appearance augmentation of a square uint8 RGB crop and its mask (same flips and turns)."""
    turns = int(rng.integers(4))
    image, truth = np.rot90(image, turns), np.rot90(truth, turns)
    if rng.random() < 0.5:
        image, truth = image[:, ::-1], truth[:, ::-1]
    pixels = image.astype(np.float32)
    if rng.random() < 0.3:
        pixels = np.repeat(pixels @ np.array([[0.299], [0.587], [0.114]], np.float32), 3, axis=2)
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.6, 1.4) + mean + rng.uniform(-25, 25)
    return np.clip(pixels, 0, 255).astype(np.uint8), np.ascontiguousarray(truth)


class ObjectCrops:
    """Multi-level crops of a DS folder's instances (images read once, kept in memory up to `cache` of them)."""

    def __init__(self, folder: DSFolder, items: list[Instance], config: ClickTrainConfig, cache: int = 256) -> None:
        self.folder, self.items, self.config = folder, items, config
        self.preprocess = Preprocess()
        self._images: dict[str, np.ndarray] = {}
        self._cache = cache

    def image(self, sample_id: str) -> np.ndarray:
        if sample_id not in self._images:
            if len(self._images) >= self._cache:
                self._images.pop(next(iter(self._images)))
            self._images[sample_id] = self.folder.load_image(self.folder[sample_id])
        return self._images[sample_id]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One (3, crop, crop) float32 normalised image and its (crop, crop) bool object mask."""
        crop = self.config.crop_size
        for _ in range(20):
            item = self.items[int(rng.integers(len(self.items)))]
            y0, x0, side = crop_window(item.shape, item.bbox, item.pixels, crop, self.config.scale_range, rng)
            truth = warp(item.mask().astype(np.uint8), y0, x0, side, crop, nearest=True) > 0
            if not truth.any():  # a thin object shrunk between the sample points
                truth = warp(item.mask().astype(np.float32), y0, x0, side, crop, nearest=False) > 0.25
            if truth.any():
                image = warp(self.image(str(item.sample_id)), y0, x0, side, crop, nearest=False)
                if self.config.augment:
                    image, truth = jitter_appearance(image, truth, rng)
                return self.preprocess(image), truth
        raise InputError(f"{self.folder.root}: no object could be cropped at --crop-size {crop}; try a larger one")


def flawed_start(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A flawed mask of the object to start clicking from (the module's `flawed_starts`): too much or too
    little of it (`degrade`), at an IoU drawn in 0.5..0.9."""
    from defectspectrum.click.degrade import too_little, too_much

    target = rng.uniform(0.5, 0.9)
    if np.count_nonzero(truth) < 4:
        return np.zeros_like(truth)
    return too_much(truth, rng, target) if rng.random() < 0.5 else too_little(truth, rng, target)


class StepBatches(Dataset):
    """Item `step`: that step's crops, images (N, 3, S, S) float32 and truths (N, S, S) bool, and its number of
    extra clicks, all drawn from a generator seeded by (seed, step, process): the same in any worker."""

    def __init__(self, crops: ObjectCrops, process: int) -> None:
        self.crops, self.process = crops, process

    def __len__(self) -> int:
        return self.crops.config.steps

    def __getitem__(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        config = self.crops.config
        rng = np.random.default_rng([config.seed, step, self.process])
        pairs = [self.crops.sample(rng) for _ in range(config.batch_size)]
        extra = int(rng.integers(config.max_extra_clicks + 1))
        truths = np.stack([p[1] for p in pairs])
        starts = np.stack([flawed_start(truth, rng) if rng.random() < config.flawed_starts else np.zeros_like(truth)
                           for truth in truths])
        return np.stack([p[0] for p in pairs]), truths, starts, extra


def training_instances(folder: DSFolder, objects: tuple[str, ...] | None) -> list[Instance]:
    """Every defect object of the train split (of `objects`); InputError where there is none."""
    samples = select_samples(folder, "train", objects)
    items = folder_instances(folder, samples)
    if not items:
        raise InputError(f"{folder.root}: the {len(samples)} train sample(s) hold no defect regions; "
                         "add defective samples or choose other --object")
    return items


# -- loss and clicks ---------------------------------------------------------------------------------


def click_loss(logits: torch.Tensor, truth: torch.Tensor, bce_weight: float, dice_weight: float) -> torch.Tensor:
    """`bce_weight` x BCE + `dice_weight` x (1 - mean soft dice per image); logits (N, 1, H, W), truth (N, H, W)."""
    logits = logits[:, 0].float()
    loss = bce_weight * F.binary_cross_entropy_with_logits(logits, truth)
    if dice_weight > 0:
        probs = torch.sigmoid(logits)
        inter = (probs * truth).sum((1, 2))
        dice = (2 * inter + 1.0) / (probs.sum((1, 2)) + truth.sum((1, 2)) + 1.0)
        loss = loss + dice_weight * (1.0 - dice).mean()
    return loss


def batch_maps(clicks: list[list[Click]], size: int, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    maps = [click_maps((size, size), c, radius) for c in clicks]
    return (torch.from_numpy(np.stack([m[0] for m in maps])), torch.from_numpy(np.stack([m[1] for m in maps])))


def simulate_clicks(model: nn.Module, images: torch.Tensor, truths: np.ndarray, extra: int,
                    radius: int, starts: np.ndarray | None = None) -> tuple[list[list[Click]], torch.Tensor]:
    """The module's iterative click sampling from empty masks or `starts`: (clicks per image, previous masks
    (N, H, W) float)."""
    size = truths.shape[-1]
    previous = np.zeros(truths.shape, bool) if starts is None else np.asarray(starts, bool)
    clicks = [[next_click(t, p)] for t, p in zip(truths, previous)]
    clicks_ok: list[list[Click]] = [[c for c in cs if c is not None] for cs in clicks]
    if extra:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for _ in range(extra):
                pos, neg = batch_maps(clicks_ok, size, radius)
                prev_t = torch.from_numpy(previous.astype(np.float32))
                logits = model(click_input(images, pos.to(images.device), neg.to(images.device),
                                           prev_t.to(images.device)))
                previous = (torch.sigmoid(logits[:, 0]) > 0.5).cpu().numpy()
                for i, truth in enumerate(truths):
                    click = next_click(truth, previous[i], clicks_ok[i])
                    if click is not None:
                        clicks_ok[i].append(click)
        model.train(was_training)
    return clicks_ok, torch.from_numpy(previous.astype(np.float32))


# -- the run -----------------------------------------------------------------------------------------


def _check_out(out: Path, resume: bool) -> None:
    if resume:
        if not (out / LAST).is_file():
            raise InputError(f"{out}: no checkpoint to resume ({LAST} is missing); start it again without --resume")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty folder; use --resume to continue a run or choose "
                         "a new --out")


def read_click_run(out: Path) -> dict[str, Any]:
    """click.json of a run folder; InputError naming it where it is missing or not ours."""
    data = read_json(out / RUN_JSON)
    if not isinstance(data, dict) or "config" not in data:
        raise InputError(f"{out / RUN_JSON}: not a Defect-Click run file; choose a run folder of `click train`")
    return data


def train_click(config: ClickTrainConfig, out: Path, *, resume: bool = False, stop_after: int | None = None,
                workers: int = 0) -> ClickRun:
    """Train ClickNet by the module's rules into `out` (new, or an existing run with `resume`);
    `stop_after` ends early at that step, leaving a checkpoint to resume. `workers` processes cut the crops
    (0: the main process); the crops do not depend on it."""
    config.check()
    out = Path(out)
    _check_out(out, resume)
    if resume and read_click_run(out)["config"] != config.to_json():
        raise InputError(f"{out}: --resume takes the run's own settings; the given ones differ")
    folder = DSFolder.open(Path(config.data))
    items = training_instances(folder, config.objects)
    crops = ObjectCrops(folder, items, config)
    accelerator = make_accelerator("no")
    torch.manual_seed(config.seed)
    model = build_click_model(config.model)
    if config.init is not None and not resume:
        from defectspectrum.click.model_files import load_click_model

        start_model, start_config = load_click_model(config.init)
        if start_config != config.model:
            raise InputError(f"--init {config.init}: its model ({start_config.encoder}, width {start_config.width}) "
                             f"differs from the one asked for ({config.model.encoder}, width {config.model.width})")
        model.load_state_dict(start_model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_schedule(config.steps, config.warmup_steps, 0.9))
    core = accelerator.unwrap_model(model)
    params, size = state_size(core)
    info: dict[str, Any] = {"config": config.to_json(), "model_config": config.model.to_json(),
                            "data": {"name": folder.name, "train_objects": len(items)},
                            "results": {"params": params, "state_bytes": size, "last_step": 0, "history": []}}
    start = 0
    if resume:
        state = load_checkpoint(out / LAST, ["model", "optimizer", "schedule", "step", "model_config"],
                                "start a new run")
        restore_states(out / LAST, state, {"model": core, "optimizer": optimizer, "schedule": schedule},
                       "start a new run")
        start = int(state["step"])
        info["results"] = read_click_run(out).get("results", info["results"])
        info["results"]["history"] = [h for h in info["results"].get("history", []) if h["step"] <= start]
    stop = min(config.steps, stop_after) if stop_after is not None else config.steps
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / RUN_JSON, info)

    def checkpoint(step: int) -> None:
        if accelerator.is_main_process:
            save_checkpoint(out / LAST, {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                                         "schedule": schedule.state_dict(), "step": step,
                                         "model_config": config.model.to_json()})
            info["results"]["last_step"] = step
            write_json_atomic(out / RUN_JSON, info)

    device = accelerator.device
    radius = config.model.click_radius
    if workers < 0:
        raise InputError(f"--workers {workers}: give 0 or more")
    loader = DataLoader(StepBatches(crops, accelerator.process_index), sampler=range(start, stop), batch_size=None,
                        num_workers=workers, worker_init_fn=ignore_interrupts if workers else None,
                        pin_memory=device.type == "cuda")
    running: list[float] = []
    begun = time.perf_counter()
    model.train()
    with progress(stop, "train click", completed=start) as update, \
            stop_requests(accelerator.num_processes == 1) as stop_requested:
        for step, (batch_images, batch_truths, batch_starts, extra) in zip(range(start, stop), loader):
            images = batch_images.to(device)
            truths = batch_truths.numpy()
            clicks, previous = simulate_clicks(model, images, truths, extra, radius, batch_starts.numpy())
            pos, neg = batch_maps(clicks, config.crop_size, radius)
            logits = model(click_input(images, pos.to(device), neg.to(device), previous.to(device)))
            loss = click_loss(logits, torch.from_numpy(truths.astype(np.float32)).to(device),
                              config.bce_weight, config.dice_weight)
            if not torch.isfinite(loss.detach()):
                raise InputError(f"the loss became {float(loss.detach())} at step {step + 1}: training diverged; "
                                 "lower --lr or resume from the last checkpoint")
            accelerator.backward(loss)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            running.append(float(loss.detach()))
            done = step + 1
            update(1, f"loss {np.mean(running[-20:]):.3f}")
            if done % 10 == 0 or done == stop:
                info["results"]["history"].append({"step": done, "loss": round(float(np.mean(running)), 6),
                                                   "seconds": round(time.perf_counter() - begun, 2)})
                running.clear()
            if stop_requested() and done < stop:
                checkpoint(done)
                raise TrainingStopped(out, done, command="click train")
            if done % config.checkpoint_every == 0 or done == stop:
                checkpoint(done)
    return ClickRun(info, core)
