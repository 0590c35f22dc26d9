"""Defect-Gen's fidelity-diversity trade-off on procedural data (the paper's supplement Table 5).

Trains a large and a small generator on one procedural material at 64 px for a fixed budget, then
samples large-only, two-stage at several switch steps u, and small-only, and prints the weight-free
measures of `gen eval` for each: memorisation (nearest training image; near-copies), diversity (IC
protocol) and mask sanity (empty masks, classes present). The paper's trade-off: a larger u (more
steps for the small model) or a smaller receptive field gives more diversity and less fidelity.

    python benchmarks/gen_quality.py                          # metal, 64 px, 1500 steps per model
    python benchmarks/gen_quality.py --steps 4000 --width 64 --switches 0,50,200,500,1000 --num 32
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from defectspectrum.data.splits import assign_splits
from defectspectrum.data.synth import write_ds_folder
from defectspectrum.gen.metrics import evaluate
from defectspectrum.gen.sample import draw, load_generator
from defectspectrum.gen.train import GenConfig, train_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--material", default="metal")
    parser.add_argument("--per-type", type=int, default=5, help="training images per defect folder (paper: 5)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1500, help="training steps per model")
    parser.add_argument("--switches", default="0,50,200,500,1000", help="switch steps u (0: large only; 1000: small)")
    parser.add_argument("--num", type=int, default=16, help="samples per setting")
    parser.add_argument("--sample-steps", type=int, default=100, help="DDIM steps")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: temporary)")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="gen_quality-"))
    start = time.perf_counter()
    folder = write_ds_folder(work / "ds", materials=[args.material], n_defective_per_type=args.per_type, n_good=0,
                             size=(args.size, args.size), seed=0)
    assign_splits(folder, rule="first-k", k=args.per_type)  # every image trains: the few-shot set
    folder.save()
    runs = {}
    for preset in ("large", "small"):
        config = GenConfig(data=str(folder.root), object=args.material, preset=preset, width=args.width, layers=1,
                           size=args.size, steps=args.steps, batch_size=4, lr=2e-4, ema_decay=0.999,
                           checkpoint_every=args.steps, hflip=True)
        began = time.perf_counter()
        result = train_generator(config, work / preset)
        print(f"trained {preset}: loss {sum(result.losses[:50]) / 50:.4f} -> {sum(result.losses[-50:]) / 50:.4f}, "
              f"{time.perf_counter() - began:.0f} s", flush=True)
        runs[preset] = load_generator(work / preset)
    train = [(folder.load_image(s), folder.load_mask(s)) for s in folder.samples(split="train")]
    classes = folder.classes(args.material)
    print()
    print("| setting | nearest / train scale | near-copies % | diversity | empty masks % | classes present |")
    print("|---|---:|---:|---:|---:|---|")
    for u in (int(v) for v in args.switches.split(",")):
        large = runs["large"] if u < 1000 else None
        small = runs["small"] if u > 0 else None
        pairs = []
        for first in range(0, args.num, 8):
            pairs += draw(large, small, u, list(range(first, min(first + 8, args.num))), seed=0, sampler="ddim",
                          steps=args.sample_steps)
        data = evaluate(pairs, train, classes).to_json()
        memo, masks = data["memorisation"], data["masks"]["generated"]
        name = "large only" if u == 0 else "small only" if u >= 1000 else f"two-stage u={u}"
        present = ", ".join(f"{c} {100 * v['share']:.0f}%" for c, v in masks["classes"].items())
        diversity = "n/a" if data["diversity"] is None else f"{data['diversity']:.3f}"
        print(f"| {name} | {memo['nearest_over_scale']:.2f} | {100 * memo['near_copies']:.1f} | {diversity} | "
              f"{100 * masks['empty']:.1f} | {present} |", flush=True)
    print(f"\n{args.material}, {len(train)} training pairs at {args.size} px, width {args.width}, {args.steps} steps "
          f"per model, {args.num} samples per setting, DDIM {args.sample_steps} steps; total "
          f"{time.perf_counter() - start:.0f} s; work folder {work}")


if __name__ == "__main__":
    main()
