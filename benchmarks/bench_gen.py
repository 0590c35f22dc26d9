"""Defect-Gen speed against baselines measured in the same run.

Prints:
  - two-stage sampling (large model for t >= u, small after) vs large-only: samples/s and the
    ratio (two-stage must not be slower: the small model is cheaper per step);
  - our sampler vs diffusers' DDPMPipeline with the same UNet, scheduler and steps (target <= 1.05);
  - our training step (`diffusion_loss` through Accelerate, EMA update) vs a bare diffusers training
    loop on the same UNet and batch (target <= 1.05; our step also updates the EMA weights);
  - the process's peak resident memory.

    python benchmarks/bench_gen.py                       # 64 px, width 32, 50 sampling steps
    python benchmarks/bench_gen.py --size 128 --width 64 --steps 100 --switch 50
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from defectspectrum.gen.diffusion import DiffusionConfig, diffusion_loss, make_scheduler
from defectspectrum.gen.presets import load_preset
from defectspectrum.gen.sampler import two_stage_sample
from defectspectrum.gen.unet import build_unet
from defectspectrum.seg.train import make_accelerator


def timed(works: list, repeats: int) -> list[float]:
    """Median seconds of each of `works` over `repeats` rounds after one warm-up each; the works run
    interleaved (A B C A B C ...), so a slow spell of a shared machine hits them alike."""
    for work in works:
        work()
    times: list[list[float]] = [[] for _ in works]
    for _ in range(repeats):
        for i, work in enumerate(works):
            start = time.perf_counter()
            work()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def bench_sampling(args: argparse.Namespace, channels: int) -> None:
    large = build_unet(load_preset("large").scaled(args.width, 1), channels, args.size).eval()
    small = build_unet(load_preset("small").scaled(args.width, 1), channels, args.size).eval()
    config = DiffusionConfig(train_steps=1000)
    shape = (args.batch, channels, args.size, args.size)
    total = args.steps
    switch = args.switch

    def ours_large() -> None:
        two_stage_sample(large, None, make_scheduler(config), shape, 0, torch.Generator().manual_seed(0), total)

    def ours_two_stage() -> None:
        two_stage_sample(large, small, make_scheduler(config), shape, switch, torch.Generator().manual_seed(0), total)

    from diffusers import DDPMPipeline

    pipe = DDPMPipeline(unet=large, scheduler=make_scheduler(config))
    pipe.set_progress_bar_config(disable=True)

    def pipeline() -> None:
        pipe(batch_size=args.batch, generator=torch.Generator().manual_seed(0), num_inference_steps=total,
             output_type="np")

    t_large, t_two, t_pipe = timed([ours_large, ours_two_stage, pipeline], args.repeats)
    n = args.batch
    print(f"sampling {n} x {args.size} px, {total} steps, switch u={switch}:")
    print(f"  large only      {n / t_large:8.2f} samples/s")
    print(f"  two-stage       {n / t_two:8.2f} samples/s   ratio vs large only {t_large / t_two:.2f}x (target >= 1)")
    print(f"  DDPMPipeline    {n / t_pipe:8.2f} samples/s   our large-only time / pipeline time "
          f"{t_large / t_pipe:.3f} (target <= 1.05)")


def bench_training(args: argparse.Namespace, channels: int) -> None:
    from diffusers.training_utils import EMAModel

    config = DiffusionConfig()
    x0 = torch.rand(args.batch, channels, args.size, args.size) * 2 - 1

    def bare_loop(model: torch.nn.Module, steps: int) -> list[float]:
        scheduler = make_scheduler(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            noise = torch.randn_like(x0)
            t = torch.randint(0, 1000, (x0.shape[0],))
            loss = F.mse_loss(model(scheduler.add_noise(x0, noise, t), t).sample, x0)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        return times

    def our_loop(model: torch.nn.Module, steps: int) -> list[float]:
        accelerator = make_accelerator()
        scheduler = make_scheduler(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        ema = EMAModel(model.parameters(), decay=0.9999, foreach=True)
        model, optimizer = accelerator.prepare(model, optimizer)
        times = []
        for step in range(steps):
            start = time.perf_counter()
            generator = torch.Generator().manual_seed(step)
            with accelerator.autocast():
                loss = diffusion_loss(model, x0, scheduler, config, generator)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(accelerator.unwrap_model(model).parameters())
            times.append(time.perf_counter() - start)
        return times

    torch.manual_seed(0)
    bare = bare_loop(build_unet(load_preset("small").scaled(args.width, 1), channels, args.size), args.train_steps)
    torch.manual_seed(0)
    ours = our_loop(build_unet(load_preset("small").scaled(args.width, 1), channels, args.size), args.train_steps)
    b, o = statistics.median(bare[2:]), statistics.median(ours[2:])
    print(f"training step (small preset, width {args.width}, batch {args.batch}, {args.size} px):")
    print(f"  bare diffusers loop {b * 1000:8.1f} ms   ours {o * 1000:8.1f} ms   ratio {o / b:.3f} (target <= 1.05)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=4, help="mask channels (background included)")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps")
    parser.add_argument("--switch", type=int, default=50, help="switch timestep u (of 1000; the paper: 50)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=12)
    args = parser.parse_args()
    channels = 3 + args.classes
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_sampling(args, channels)
    bench_training(args, channels)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
