"""Sampling trained generators into a DS folder of synthetic image-mask pairs.

```python
large, small = load_generator(Path("runs/pill_large")), load_generator(Path("runs/pill_small"))
folder = write_samples(large, small, switch=50, num=100, out=Path("gen_pill"), seed=0)
```

Sample i starts from its own generator, seeded by (seed, i), so it is the same whatever batch or
process draws it, and `regenerate` draws it again. Masks are the argmax over the mask channels;
regions under `min_area` px are removed (to background); a sample left without any defect is
dropped unless `keep_empty`. Each sample is marked `synthetic`, captioned by the data layer's
captioner, and its `source` holds the two runs, the switch step, the sampler and the seed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from defectspectrum.data.captions import template_caption
from defectspectrum.data.classes import ClassMap
from defectspectrum.data.dsfolder import DSFolder, check_output_folder, staged_ds_folder
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError
from defectspectrum.gen.diffusion import DiffusionConfig, decode_pair, make_scheduler
from defectspectrum.gen.presets import Preset
from defectspectrum.gen.sampler import two_stage_sample
from defectspectrum.gen.train import GEN_JSON, LAST
from defectspectrum.gen.unet import build_unet
from defectspectrum.paths import output_path
from defectspectrum.progress import track
from defectspectrum.seg.checkpoint import load_checkpoint

if TYPE_CHECKING:
    from defectspectrum.gen.filters import SampleFilter
    from defectspectrum.gen.onto import Placements

MAX_SAMPLES, MAX_BATCH = 1_000_000, 1024  # --num and --batch bounds: beyond them a typo, not a plan


@dataclass
class LoadedGenerator:
    """A trained generator: its model (EMA weights unless asked otherwise) and what it was trained on."""

    run: Path
    model: Any
    object: str
    classes: tuple[str, ...]
    size: int
    diffusion: DiffusionConfig
    weights: str
    config: dict[str, Any]  # the run's training settings (gen.json)
    short_side: int | None = None  # the training images' short side before scaling, where recorded
    train_ids: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return 3 + len(self.classes)

    def training_samples(self, needed_for: str) -> tuple[DSFolder, list[Sample]]:
        """The DS folder the generator learnt from and its training pairs (InputError saying what
        `needed_for` them where the folder is gone)."""
        try:
            folder = DSFolder.open(Path(self.config["data"]))
        except InputError as exc:
            raise InputError(f"{needed_for} reads the generator's training data, which cannot be read ({exc})") \
                from None
        ids = set(self.train_ids)
        samples = [s for s in folder.samples(object=self.object, split=self.config.get("split", "train"))
                   if not s.is_good and (not ids or s.id in ids)]
        return folder, samples


def load_generator(run: Path, weights: str = "ema", device: str | torch.device = "cpu") -> LoadedGenerator:
    """The run in `run` (written by `gen train`) with its `ema` (default) or `raw` weights."""
    run = Path(run)
    if weights not in ("ema", "raw"):
        raise InputError(f"--weights {weights!r}: choose ema or raw")
    info_path = run / GEN_JSON
    if not info_path.is_file():
        raise InputError(f"{run}: no {GEN_JSON}; give a run folder written by `defectspectrum gen train`")
    from defectspectrum.io import read_json

    info = read_json(info_path)
    try:
        config, classes = info["config"], tuple(info["classes"])
        preset = Preset.model_validate(info["preset"])
        diffusion = DiffusionConfig(config["schedule"], config["prediction"], mask_ce_weight=config["mask_ce_weight"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{info_path}: not a generator run file ({exc}); train again") from None
    model = build_unet(preset, 3 + len(classes), config["size"])
    state = load_checkpoint(run / LAST, ["model", "ema"], "train the generator again")
    model.load_state_dict(state["model"])
    if weights == "ema":
        shadow = state["ema"].get("shadow_params") if isinstance(state["ema"], dict) else None
        params = list(model.parameters())
        if not isinstance(shadow, list) or len(shadow) != len(params):
            raise InputError(f"{run / LAST}: its EMA weights do not fit the model; use --weights raw or train again")
        with torch.no_grad():
            for param, value in zip(params, shadow):
                param.copy_(value)
    model.to(device).eval()
    side, ids = info.get("train_short_side"), info.get("train_ids")
    return LoadedGenerator(run, model, config["object"], classes, int(config["size"]), diffusion, weights, config,
                           side if isinstance(side, int) and side > 0 else None,
                           tuple(str(i) for i in ids) if isinstance(ids, list) else ())


def check_pair(large: LoadedGenerator | None, small: LoadedGenerator | None) -> LoadedGenerator:
    given = [g for g in (large, small) if g is not None]
    if not given:
        raise InputError("give a large and/or a small generator run")
    first = given[0]
    for other in given[1:]:
        if (other.classes, other.size, other.object) != (first.classes, first.size, first.object):
            raise InputError(f"{other.run} and {first.run} were trained on different objects, classes or sizes; "
                             "pair runs of the same object")
        if other.diffusion.schedule != first.diffusion.schedule or \
                other.diffusion.prediction != first.diffusion.prediction:
            raise InputError(f"{other.run} and {first.run} use different schedules or predictions; pair runs "
                             "trained with the same diffusion settings")
    return first


def remove_specks(mask: np.ndarray, min_area: int) -> np.ndarray:
    """`mask` with every 8-connected region of a class smaller than `min_area` px set to background."""
    if min_area <= 1:
        return mask
    out = mask.copy()
    for index in np.unique(mask):
        if index == 0:
            continue
        count, labels, stats, _ = cv2.connectedComponentsWithStats((mask == index).astype(np.uint8), connectivity=8)
        small = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] < min_area]
        if small:
            out[np.isin(labels, small)] = 0
    return out


def sample_generator(seed: int, index: int) -> torch.Generator:
    """The generator of sample `index`: the same in any batch, process or later call."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))


def draw(large: LoadedGenerator | None, small: LoadedGenerator | None, switch: int, indices: list[int], seed: int,
         sampler: str = "ddpm", steps: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Samples `indices` (one batch) as (image, raw argmax mask) pairs."""
    first = check_pair(large, small)
    scheduler = make_scheduler(first.diffusion, sampler)
    generators = [sample_generator(seed, i) for i in indices]
    x = two_stage_sample(large.model if large else None, small.model if small else None, scheduler,
                         (len(indices), first.channels, first.size, first.size), switch, generator=generators,
                         steps=steps, device=next(first.model.parameters()).device)
    return [decode_pair(sample) for sample in x.float()]


@dataclass(frozen=True)
class Drawn:
    """One drawn sample and what became of it."""

    index: int
    image: np.ndarray
    mask: np.ndarray
    kept: bool
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # more of its recipe (where it was generated onto)


def generate(large: LoadedGenerator | None, small: LoadedGenerator | None, switch: int, num: int, *, seed: int = 0,
             sampler: str = "ddpm", steps: int | None = None, batch: int = 4, min_area: int = 0,
             keep_empty: bool = False, rank: int = 0, world: int = 1) -> Iterator[Drawn]:
    """Draw samples 0..num-1 (this process's share: index % world == rank) in batches."""
    if not 1 <= num <= MAX_SAMPLES or not 1 <= batch <= MAX_BATCH:
        raise InputError(f"--num {num} / --batch {batch}: use 1 to {MAX_SAMPLES} samples in batches of 1 to "
                         f"{MAX_BATCH}")
    if min_area < 0:
        raise InputError(f"--min-area {min_area}: use 0 or more pixels")
    mine = [i for i in range(num) if i % world == rank]
    chunks = [mine[k:k + batch] for k in range(0, len(mine), batch)]
    for chunk in track(chunks, "gen sample"):
        for index, (image, raw) in zip(chunk, draw(large, small, switch, chunk, seed, sampler, steps)):
            mask = remove_specks(raw, min_area)
            kept = keep_empty or bool(mask.any())
            yield Drawn(index, image, mask, kept, "" if kept else "no defect left after speck removal")


def filtered(items: Iterator[Drawn], sample_filter: SampleFilter | None) -> Iterator[Drawn]:
    """`items` with the filter's measures in each kept pair's recipe, and pairs it rejects dropped."""
    for item in items:
        if sample_filter is None or not item.kept:
            yield item
            continue
        measures = sample_filter.measure(item.image, item.mask)
        reason = sample_filter.reason(measures)
        found = {name: round(value, 4) for name, value in measures.items() if value is not None}
        yield dataclasses.replace(item, kept=not reason, reason=reason, extra={**item.extra, **found})


def sample_name(index: int) -> str:
    return f"gen_{index:06d}"


def write_samples(large: LoadedGenerator | None, small: LoadedGenerator | None, switch: int, num: int, out: Path, *,
                  seed: int = 0, sampler: str = "ddpm", steps: int | None = None, batch: int = 4, min_area: int = 0,
                  keep_empty: bool = False, overwrite: bool = False, placements: Placements | None = None,
                  blend: int | None = None, sample_filter: SampleFilter | None = None) -> tuple[DSFolder, list[Drawn]]:
    """Draw `num` samples into a new DS folder `out` (appears complete or not at all); returns it and
    the dropped samples (with why). Under `torchrun` / `accelerate launch` every process draws its
    share (sample i on process i % world) into a shard folder beside `out`, and the first process
    writes the DS folder from all shards: one folder, no name clashes. With `placements` each sample is
    generated onto a good image instead (`onto.generate_onto`); with `sample_filter` pairs whose mask
    does not match their defect are dropped, with why."""
    from accelerate import PartialState

    from defectspectrum.seg.train import cpu_launch

    first = check_pair(large, small)
    state = PartialState(cpu=cpu_launch())
    rank, world = state.process_index, state.num_processes
    recipe = {"large": str(large.run.absolute()) if large else None,
              "small": str(small.run.absolute()) if small else None,
              "weights": first.weights, "switch": switch, "sampler": sampler, "steps": steps, "seed": seed}
    if placements is not None:
        recipe["onto"] = True

    def draw_share(rank: int = 0, world: int = 1) -> Iterator[Drawn]:
        if placements is None:
            drawn = generate(large, small, switch, num, seed=seed, sampler=sampler, steps=steps, batch=batch,
                             min_area=min_area, keep_empty=keep_empty, rank=rank, world=world)
        else:
            from defectspectrum.gen.onto import generate_onto

            drawn = generate_onto(large, small, switch, placements, num, seed=seed, sampler=sampler, steps=steps,
                                  batch=batch, blend=blend, rank=rank, world=world)
        return filtered(drawn, sample_filter)

    if world == 1:
        check_output_folder(Path(out), overwrite)  # refuse before drawing anything
        drawn = list(draw_share())
        return _write_folder(first, drawn, recipe, num, Path(out), overwrite, min_area, keep_empty)
    shards = Path(out).parent / f".{Path(out).name}.gen-shards"
    if state.is_main_process:
        check_output_folder(Path(out), overwrite)  # refuse before any process draws
        shutil.rmtree(shards, ignore_errors=True)
    state.wait_for_everyone()
    mine = output_path(shards, f"rank{rank}")
    mine.mkdir(parents=True, exist_ok=True)
    for item in draw_share(rank=rank, world=world):
        np.savez(mine / f"{item.index:06d}.npz", image=item.image, mask=item.mask, kept=item.kept, reason=item.reason,
                 extra=json.dumps(item.extra))
    state.wait_for_everyone()
    try:
        if state.is_main_process:
            drawn = []
            for path in sorted(shards.glob("rank*/*.npz"), key=lambda p: p.name):
                with np.load(path) as data:
                    drawn.append(Drawn(int(path.stem), data["image"], data["mask"], bool(data["kept"]),
                                       str(data["reason"]), json.loads(str(data["extra"]))))
            result = _write_folder(first, drawn, recipe, num, Path(out), overwrite, min_area, keep_empty)
    finally:
        state.wait_for_everyone()
        if state.is_main_process:
            shutil.rmtree(shards, ignore_errors=True)
    if not state.is_main_process:
        folder = DSFolder.open(Path(out))
        return folder, [Drawn(d["index"], np.zeros(0), np.zeros(0), False, d["reason"])
                        for d in folder.meta.get("generator", {}).get("dropped", [])]
    return result


def _write_folder(first: LoadedGenerator, drawn: list[Drawn], recipe: dict[str, Any], num: int, out: Path,
                  overwrite: bool, min_area: int, keep_empty: bool) -> tuple[DSFolder, list[Drawn]]:
    classes = ClassMap(first.classes)
    dropped = [d for d in drawn if not d.kept]
    with staged_ds_folder(out, overwrite=overwrite) as staging:
        folder = DSFolder.create(staging, out.name, {first.object: classes})
        for item in sorted(drawn, key=lambda d: d.index):
            if item.kept:
                folder.add_sample(first.object, sample_name(item.index), item.image, item.mask, synthetic=True,
                                  caption=template_caption(first.object, classes, item.mask),
                                  source=json.dumps({"generator": recipe, "index": item.index, **item.extra},
                                                  sort_keys=True))
        folder.meta["generator"] = {**recipe, "num": num, "min_area": min_area, "keep_empty": keep_empty,
                                    "dropped": [{"index": d.index, "reason": d.reason} for d in dropped]}
        folder.save()
    folder.root = out
    return folder, dropped


def regenerate(source: str, weights_root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one written sample again from its `source` field: (image, raw argmax mask)."""
    try:
        recipe = json.loads(source)
        generator, index = recipe["generator"], int(recipe["index"])
    except (ValueError, KeyError, TypeError):
        raise InputError("this sample's source is not a generator recipe (not written by gen sample)") from None
    if "onto" in recipe:
        raise InputError(f"this sample was generated onto {recipe['onto']} (gen sample --onto); draw it again with "
                         "the same --onto, --masks and --seed")
    large = load_generator(Path(generator["large"]), generator["weights"]) if generator["large"] else None
    small = load_generator(Path(generator["small"]), generator["weights"]) if generator["small"] else None
    ((image, mask),) = draw(large, small, int(generator["switch"]), [index], int(generator["seed"]),
                            generator["sampler"], generator["steps"])
    return image, mask
