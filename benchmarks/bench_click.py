"""Defect-Click per-click latency on the CPU: the focus-crop path against recomputing the whole image.

For each image side (default 512 and 1024 px), a procedural surface with defects is clicked by the
simulated user (up to `--clicks` clicks per defect object) through `ClickSession`, and every click is
timed: the session's path (a coarse pass for the first click, then the target and focus crops at
256 px) and, on the same clicks, the baseline that runs the model on the whole image at full
resolution for every click. Prints median and p95 per click and the ratio baseline / focus path
(the issue's target: at least 3x at 1024 px), and writes them as JSON with `--json`.

    python benchmarks/bench_click.py                          # the shipped default model
    python benchmarks/bench_click.py --model runs/click --sizes 512,1024,2048 --threads 2 --json click.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectspectrum.click.clicks import Click
from defectspectrum.click.objects import instances
from defectspectrum.click.predictor import ClickPredictor, ImageFeatures, load_predictor
from defectspectrum.click.session import ClickSession
from defectspectrum.click.simulator import next_click
from defectspectrum.data.synth import MATERIALS, render_sample


class WholeImage(ClickPredictor):
    """The baseline: every click runs the model on the whole image at full resolution."""

    def step(self, features: ImageFeatures, clicks: Any, previous: np.ndarray) -> np.ndarray:
        probs = self.run(features.full, clicks, np.asarray(previous, np.float32))
        return probs >= self.threshold


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_clicks(predictor: ClickPredictor, image: np.ndarray, truth: np.ndarray, clicks: int) -> tuple[list[float],
                                                                                                     list[Click]]:
    """Seconds per click of a session clicked by the simulated user; the clicks made (to replay)."""
    session = ClickSession(predictor, image)
    seconds: list[float] = []
    for _ in range(clicks):
        click = next_click(truth, session.mask, session.clicks)
        if click is None:
            break
        begun = time.perf_counter()
        session.add_click(click.x, click.y, click.positive)
        seconds.append(time.perf_counter() - begun)
    return seconds, list(session.clicks)


def replay(predictor: ClickPredictor, image: np.ndarray, clicks: list[Click]) -> list[float]:
    """Seconds per click of `predictor` on the same clicks."""
    session = ClickSession(predictor, image)
    seconds = []
    for click in clicks:
        begun = time.perf_counter()
        session.add_click(click.x, click.y, click.positive)
        seconds.append(time.perf_counter() - begun)
    return seconds


def scene(side: int, index: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A procedural surface of `side` px and its defect objects (bool masks)."""
    materials = list(MATERIALS)
    material = materials[index % len(materials)]
    image, mask = render_sample(material, (side, side), np.random.default_rng([side, index]))
    classes = ["background", *MATERIALS[material]]
    return image, [item.mask() for item in instances(mask, classes) if item.area >= 20]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="default, a run folder, weights or .onnx file")
    parser.add_argument("--sizes", default="512,1024", help="image sides in px, comma-separated")
    parser.add_argument("--images", type=int, default=3, help="procedural images per size")
    parser.add_argument("--clicks", type=int, default=5, help="clicks per defect object")
    parser.add_argument("--objects", type=int, default=2, help="defect objects clicked per image")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    focus = load_predictor(args.model)
    whole = WholeImage(focus.model, focus.config)
    print(f"model {args.model}; CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          "torch threads")
    print(f"{'side':>6} {'clicks':>6} {'focus med':>10} {'focus p95':>10} {'whole med':>10} {'whole p95':>10} "
          f"{'ratio':>6}")
    rows = []
    for side in (int(s) for s in args.sizes.split(",")):
        ours: list[float] = []
        baseline: list[float] = []
        for index in range(args.images):
            image, objects = scene(side, index)
            for truth in objects[: args.objects]:
                seconds, clicks = time_clicks(focus, image, truth, args.clicks)
                ours += seconds
                baseline += replay(whole, image, clicks)
        row = {"side": side, "clicks": len(ours),
               "focus_median_ms": 1000 * statistics.median(ours), "focus_p95_ms": 1000 * percentile(ours, 95),
               "whole_median_ms": 1000 * statistics.median(baseline),
               "whole_p95_ms": 1000 * percentile(baseline, 95)}
        row["ratio"] = row["whole_median_ms"] / row["focus_median_ms"]
        rows.append(row)
        print(f"{side:>6} {row['clicks']:>6} {row['focus_median_ms']:>8.1f}ms {row['focus_p95_ms']:>8.1f}ms "
              f"{row['whole_median_ms']:>8.1f}ms {row['whole_p95_ms']:>8.1f}ms {row['ratio']:>5.1f}x")
    if args.json is not None:
        args.json.write_text(json.dumps({"model": args.model, "threads": torch.get_num_threads(), "rows": rows},
                                        indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
