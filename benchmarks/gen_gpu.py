"""Defect-Gen at the paper's setting (256 px, batch 2) on one real object, for a GPU.

Prints and writes (JSON) two things, in one run:
  1. per preset (large, medium, small) and precision (fp32, bf16): time per training iteration
     (median after warm-up, our full step: loss, backward, AdamW, EMA) and peak GPU memory, the
     numbers behind "training at 256 px must fit 12 GB";
  2. a fixed-time training of the large and the medium model (the paper's chosen pair, u = 50) on
     the object's train split, then two-stage and large-only samples (DDIM), each written as a DS
     folder and packed as .tar beside the JSON, to evaluate and look at afterwards (`gen eval`).

    python benchmarks/gen_gpu.py ds_pill --object pill --out gpu_run --train-seconds 120
    python benchmarks/gen_gpu.py ds_pill --object pill --out cpu_try --size 64 --width 16 \
        --timing-steps 4 --train-seconds 5 --num 2 --sampling-steps 10   # a smoke run on a CPU
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from defectspectrum.gen.sample import load_generator, write_samples
from defectspectrum.gen.train import GenConfig, train_generator

PRESETS = ("large", "medium", "small")
PRECISIONS = {"fp32": "no", "bf16": "bf16"}


def config(args: argparse.Namespace, preset: str, precision: str, steps: int) -> GenConfig:
    return GenConfig(data=str(args.data), object=args.object, preset=preset, width=args.width, size=args.size,
                     steps=steps, batch_size=args.batch_size, mixed_precision=precision,
                     checkpoint_every=10**8, seed=0)


def train_timed(cfg: GenConfig, out: Path) -> tuple[float, float | None]:
    """(median seconds per iteration after 3 warm-up steps, peak GPU memory in GiB or None on CPU)."""
    stamps: list[float] = []
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    train_generator(cfg, out, on_step=lambda step, loss: stamps.append(time.perf_counter()))  # loss read = sync
    deltas = [b - a for a, b in itertools.pairwise(stamps)]
    steps = deltas[3:] or deltas
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return statistics.median(steps), peak


def preset_costs(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    rows = []
    for preset in PRESETS:
        for name, precision in PRECISIONS.items():
            seconds, peak = train_timed(config(args, preset, precision, args.timing_steps), work / f"{preset}_{name}")
            rows.append({"preset": preset, "precision": name, "s_per_iter": seconds, "peak_gib": peak})
            print(f"{preset:6} {name}: {1000 * seconds:7.1f} ms/iter, peak "
                  f"{'n/a' if peak is None else f'{peak:.2f} GiB'}", flush=True)
    return rows


def sample_set(args: argparse.Namespace, large: Any, small: Any, switch: int, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    folder, dropped = write_samples(large, small, switch, args.num, out, seed=0, sampler="ddim",
                                    steps=args.sampling_steps, batch=args.num, min_area=args.min_area)
    seconds = time.perf_counter() - start
    with tarfile.open(args.out / f"{out.name}.tar", "w") as tar:
        tar.add(out, arcname=out.name)
    print(f"{out.name}: {len(folder)} kept, {len(dropped)} dropped, {seconds:.1f} s", flush=True)
    return {"name": out.name, "switch": switch, "kept": len(folder), "dropped": len(dropped), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="a DS folder with a train split")
    parser.add_argument("--object", required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON and the sample tars")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--width", type=int, default=None, help="base channels (default: each preset's)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--timing-steps", type=int, default=15)
    parser.add_argument("--train-seconds", type=float, default=120.0, help="per model, at bf16")
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--sampling-steps", type=int, default=250)
    parser.add_argument("--min-area", type=int, default=16)
    parser.add_argument("--timing-only", action="store_true", help="stop after the per-preset costs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result: dict[str, Any] = {"device": device, "size": args.size, "batch_size": args.batch_size,
                              "torch": torch.__version__}
    report = args.out / "gen_gpu.json"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result["presets"] = preset_costs(args, work / "timing")
        report.write_text(json.dumps(result, indent=2))
        if args.timing_only:
            print(f"wrote {report}")
            return
        per_iter = {(r["preset"], r["precision"]): r["s_per_iter"] for r in result["presets"]}
        runs = {}
        for preset in ("large", "medium"):
            steps = max(10, int(args.train_seconds / per_iter[(preset, "bf16")]))
            start = time.perf_counter()
            trained = train_generator(config(args, preset, "bf16", steps), work / preset)
            seconds = time.perf_counter() - start
            runs[preset] = {"steps": steps, "seconds": seconds, "loss_first": statistics.mean(trained.losses[:50]),
                            "loss_last": statistics.mean(trained.losses[-50:])}
            print(f"trained {preset}: {steps} steps in {seconds:.0f} s, loss {runs[preset]['loss_first']:.4f} -> "
                  f"{runs[preset]['loss_last']:.4f}", flush=True)
        result["training"] = runs
        report.write_text(json.dumps(result, indent=2))
        where = "cuda" if torch.cuda.is_available() else "cpu"
        large, medium = load_generator(work / "large", device=where), load_generator(work / "medium", device=where)
        result["sampling"] = [sample_set(args, large, medium, 50, work / "two_stage_u50"),
                              sample_set(args, large, None, 0, work / "large_only")]
        report.write_text(json.dumps(result, indent=2))
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
