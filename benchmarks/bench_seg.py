"""Segmentation speed against baselines measured in the same run.

Prints:
  - our training step (TrainStep through Accelerate, poly LR) vs a bare PyTorch loop on the same
    smp model and tensors: time per step and the ratio (target <= 1.05);
  - onnxruntime vs torch eager CPU inference from a raw uint8 image to logits (target >= 1.5x);
  - tiled inference throughput (megapixels/s) on a large image, torch and onnxruntime;
  - the process's peak resident memory.

    python benchmarks/bench_seg.py                     # unet-small, 128 px crops, batch 4
    python benchmarks/bench_seg.py --model segformer-mit-b0 --size 256 --batch 8 --steps 10
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from defectspectrum.seg.infer import TorchPredictor
from defectspectrum.seg.labels import IGNORE_INDEX
from defectspectrum.seg.models import create_model
from defectspectrum.seg.onnx_export import OnnxPredictor, export_onnx
from defectspectrum.seg.preprocess import Preprocess
from defectspectrum.seg.train import TrainStep, make_accelerator, poly_schedule


def bare_steps(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, steps: int) -> list[float]:
    """The plain loop: forward, cross-entropy, backward, AdamW step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = F.cross_entropy(model(images), targets, ignore_index=IGNORE_INDEX)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def our_steps(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, steps: int) -> list[float]:
    """The trainer's step: TrainStep under Accelerate, with its autocast, backward and LR schedule."""
    accelerator = make_accelerator()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_schedule(10 * steps, 0, 0.9))
    step_module, optimizer = accelerator.prepare(TrainStep(model), optimizer)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with accelerator.autocast():
            loss, _ = step_module(images, targets)
        accelerator.backward(loss)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet-small")
    parser.add_argument("--size", type=int, default=128, help="training crop side")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round (3 rounds, interleaved)")
    parser.add_argument("--infer-size", type=int, default=256)
    parser.add_argument("--large", type=int, default=1536, help="side of the image for tiled inference")
    args = parser.parse_args()
    torch.manual_seed(0)
    classes = 4
    images = torch.randn(args.batch, 3, args.size, args.size)
    targets = torch.randint(0, classes, (args.batch, args.size, args.size))

    print(f"== training step: {args.model}, batch {args.batch} at {args.size} px, {torch.get_num_threads()} threads")
    bare_model, our_model = create_model(args.model, classes), create_model(args.model, classes)
    our_model.load_state_dict(bare_model.state_dict())
    bare_steps(bare_model, images, targets, 2)  # warm-up
    our_steps(our_model, images, targets, 2)
    bare: list[float] = []
    ours: list[float] = []
    for _ in range(3):  # interleaved rounds, so load changes hit both alike
        bare += bare_steps(bare_model, images, targets, args.steps)
        ours += our_steps(our_model, images, targets, args.steps)
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"bare PyTorch loop   {median_ms(bare):8.1f} ms/step")
    print(f"defectspectrum step {median_ms(ours):8.1f} ms/step   ratio {ratio:.3f} (target <= 1.05)")

    print(f"\n== inference: raw uint8 {args.infer_size} px image -> logits, batch 1")
    model = create_model(args.model, classes).eval()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (args.infer_size, args.infer_size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        exported = export_onnx(model, onnx_path, preprocess=Preprocess(), labels=[f"c{i}" for i in range(classes)],
                               size=args.infer_size, tile=args.infer_size)
        torch_predictor = TorchPredictor(model, Preprocess())
        onnx_predictor = OnnxPredictor(onnx_path)
        for predictor in (torch_predictor, onnx_predictor):
            predictor.logits(image)
        torch_times, onnx_times = [], []
        for _ in range(10):
            start = time.perf_counter()
            torch_predictor.logits(image)
            torch_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            onnx_predictor.logits(image)
            onnx_times.append(time.perf_counter() - start)
        speedup = statistics.median(torch_times) / statistics.median(onnx_times)
        print(f"torch eager   {median_ms(torch_times):8.1f} ms")
        print(f"onnxruntime   {median_ms(onnx_times):8.1f} ms   speed-up {speedup:.2f}x (target >= 1.5x); "
              f"export policy {exported.policy}, max |diff| {exported.max_abs_diff:.1e}")

        print(f"\n== tiled inference: {args.large} px square image, tiles of {args.infer_size} px, overlap 0.25")
        large = rng.integers(0, 256, (args.large, args.large, 3), dtype=np.uint8)
        megapixels = args.large * args.large / 1e6
        for name, predictor in (("torch", TorchPredictor(model, Preprocess(), tile=args.infer_size)),
                                ("onnxruntime", OnnxPredictor(onnx_path, tile=args.infer_size))):
            start = time.perf_counter()
            mask = predictor.predict(large)
            seconds = time.perf_counter() - start
            assert mask.shape == large.shape[:2]
            print(f"{name:12} {seconds:6.2f} s   {megapixels / seconds:6.2f} MP/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
