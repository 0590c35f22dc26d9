"""The data layer at factory scale, in two parts.

Part `commands`: generates MVTec-layout sets of 1k, 5k and 20k images (256 px, four products, two
defect types and defect-free images) and runs `data convert` (into a DS folder), `data validate`,
`data stats`, `data export --to coco` and `--to mmseg` on each, every command in its own process.
Printed: seconds, milliseconds per image, peak RSS, and the slopes between sizes (time and memory each
added image costs). `--code DIR` runs another checkout's `src` (e.g. a worktree of an older commit),
for figures before and after a change.

Part `index`: writes a samples.jsonl of 100k and 1M lines (four products, relative paths and an
absolute source path like `data convert` writes) and opens it as a DSFolder: seconds, and the bytes
a sample the open folder holds (tracemalloc), with the peak while opening.

Part `near-duplicates`: `data validate`'s near-duplicate search alone,
on generated hash sets with the pair densities of real lines, against numpy brute force in the same run.

A hash set models a production line: images fall into look-alike clusters (a product, a camera view);
each image is its cluster's hash with random bits flipped, sized so that
  - the share of pairs within 4 coarse bits is the line's (Magnetic-tile: 0.15%, MVTec capsule: 48%,
    both measured on ../shared/data with the toolkit's hashes), and
  - the fine (256-bit) distance of such pairs has the line's median (Magnetic-tile: 30 bits, capsule: 42);
and 0.5% of the images are re-shots of another (1 coarse bit and 6 fine bits apart): the near duplicates.

Printed per line and size: seconds (plan + search, untraced) and peak memory of the search (tracemalloc,
in a run of its own: the plan and the first key's pass, the arrays it holds), bytes per image, the
candidate pairs its plan estimates, the groups found;
brute force's seconds (all pairs, blockwise, coarse first) where it runs within --baseline-seconds
(estimated from its first 2,000 rows otherwise, marked ~), the speed-up, and whether `data validate`'s
default (`--near-duplicates auto`) runs the search or skips it; where it skips, so does this, and the
search's seconds are the estimate validate's message gives (marked ~). Where both run, their pairs
are compared.

    python benchmarks/bench_scale.py commands                              # 1k, 5k and 20k images
    python benchmarks/bench_scale.py commands --sizes 1000,5000 --code ../old/src
    python benchmarks/bench_scale.py index                                 # 100k and 1M lines
    python benchmarks/bench_scale.py near-duplicates                       # 100k and 1M
    python benchmarks/bench_scale.py near-duplicates --sizes 20000,100000 --lines magnetic-tile
    python benchmarks/bench_scale.py near-duplicates -j 2                  # the search in 2 processes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from scipy.optimize import brentq
from scipy.stats import binom

from defectspectrum.data.near_duplicates import NearDuplicateSearch, popcount
from defectspectrum.data.validate import NEAR_DUPLICATE_BUDGET, SECONDS_PER_CANDIDATE

DISTANCE = 4
T = TypeVar("T")


@dataclass(frozen=True)
class Line:
    """A line's measured statistics: share of pairs within DISTANCE coarse bits, and the fine median
    distance of those pairs; `clusters` look-alike groups carry them."""

    name: str
    coarse_density: float
    fine_median: float
    clusters: int


LINES = {
    "magnetic-tile": Line("magnetic-tile", 0.0015, 30, 200),
    "capsule": Line("capsule", 0.48, 42, 1),
}


def flip(rng: np.random.Generator, words: np.ndarray, rate: float) -> np.ndarray:
    """`words` (uint64) with each bit flipped with probability `rate`."""
    out = words.copy()
    flat = out.reshape(-1)
    for bit in range(64):
        flat[rng.random(flat.size) < rate] ^= np.uint64(1 << bit)
    return out


def per_image_rate(pair_rate: float) -> float:
    """The flip rate per image that makes two images of a cluster differ in `pair_rate` of their bits."""
    return (1 - np.sqrt(1 - 2 * pair_rate)) / 2


def hash_set(line: Line, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(coarse (n,), fine (n, 4)) uint64 hashes of `n` images of `line`; see the module."""
    rng = np.random.default_rng(seed)
    within = min(line.coarse_density * line.clusters, 0.95)  # P(coarse pair <= DISTANCE) inside a cluster
    coarse_pair = brentq(lambda r: binom.cdf(DISTANCE, 64, r) - within, 1e-6, 0.5)
    fine_pair = line.fine_median / 256
    labels = rng.integers(0, line.clusters, n)
    coarse = flip(rng, rng.integers(0, 2**64, line.clusters, dtype=np.uint64)[labels],
                  per_image_rate(coarse_pair))
    fine = flip(rng, rng.integers(0, 2**64, (line.clusters, 4), dtype=np.uint64)[labels], per_image_rate(fine_pair))
    shots = rng.choice(n, n // 200, replace=False)
    originals = rng.integers(0, n, len(shots))
    coarse[shots] = flip(rng, coarse[originals], 1 / 64)
    fine[shots] = flip(rng, fine[originals], 6 / 256)
    return coarse, fine


def brute_force_pairs(coarse: np.ndarray, fine: np.ndarray, rows: int | None = None) -> np.ndarray:
    """(k, 2) every near pair (i < j) by comparing all pairs blockwise (coarse first, then fine on the
    survivors); only the first `rows` rows against all later ones when `rows` is given (for an estimate)."""
    n = len(coarse)
    block = max(1, (1 << 24) // n)
    found = []
    for start in range(0, n if rows is None else rows, block):
        stop = min(n, start + block)
        i, j = np.nonzero(popcount(coarse[start:stop, None] ^ coarse[None, :]) <= DISTANCE)
        i += start
        keep = j > i
        i, j = i[keep], j[keep]
        keep = popcount(fine[i] ^ fine[j]).sum(axis=1) <= 4 * DISTANCE
        found.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), np.int64)


def traced_peak(task: Callable[[], T]) -> tuple[T, int]:
    """(result, peak traced bytes) of `task`, timed apart: tracing slows numpy's allocations."""
    tracemalloc.start()
    result = task()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, peak


def timed(task: Callable[[], T]) -> tuple[T, float]:
    """(result, seconds) of `task`."""
    start = time.perf_counter()
    result = task()
    return result, time.perf_counter() - start


def search_pairs(search: NearDuplicateSearch) -> np.ndarray:
    """(k, 2) the search's pairs, sorted, for the comparison with brute force."""
    blocks = [np.stack(block, axis=1) for block in search.pair_blocks()]
    pairs = np.concatenate(blocks) if blocks else np.zeros((0, 2), np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def near_duplicate_case(line: Line, n: int, baseline_seconds: float, workers: int) -> str:
    """One table row: the search (planned, then run where `data validate`'s default would run it; its
    estimate otherwise, marked ~) and brute force on `n` hashes of `line`."""
    coarse, fine = hash_set(line, n)
    search, peak = traced_peak(lambda: NearDuplicateSearch(coarse, fine, DISTANCE))
    runs = search.estimated_candidates <= NEAR_DUPLICATE_BUDGET * workers
    if runs:
        peak = max(peak, traced_peak(lambda: list(search.key_pair_blocks(search.keys[0])))[1])
    start = time.perf_counter()
    search = NearDuplicateSearch(coarse, fine, DISTANCE)
    if runs:
        groups = search.groups(workers=workers)
        seconds = time.perf_counter() - start
        search_text, group_text = f"{seconds:9.1f}", f"{len(groups):7d}"
    else:
        seconds = time.perf_counter() - start + search.estimated_candidates * SECONDS_PER_CANDIDATE / workers
        search_text, group_text = f"~{seconds:8.0f}", f"{'-':>7}"
    rows = min(n, 2000)
    _, sample_seconds = timed(lambda: brute_force_pairs(coarse, fine, rows))
    estimate = sample_seconds * (n * (n - 1) / 2) / (rows * (n - (rows + 1) / 2))
    if estimate <= baseline_seconds and runs:
        truth, brute = timed(lambda: brute_force_pairs(coarse, fine))
        if not np.array_equal(search_pairs(search), truth[np.lexsort((truth[:, 1], truth[:, 0]))]):
            raise SystemExit(f"{line.name} {n}: the search and brute force differ")
        brute_text = f"{brute:10.1f}"
    else:
        brute, brute_text = estimate, f"~{estimate:9.0f}"
    return (f"{line.name:14} {n:9d} {search_text} {peak / 2**20:7.0f} {peak / n:8.0f} "
            f"{search.estimated_candidates:12.2e} {group_text} {brute_text} {brute / seconds:8.1f}x "
            f"{'runs' if runs else 'skips':>5}")


def near_duplicate_part(sizes: list[int], lines: list[str], baseline_seconds: float, workers: int) -> None:
    print(f"{'line':14} {'images':>9} {'search s':>9} {'MB':>7} {'B/image':>8} {'candidates':>12} {'groups':>7} "
          f"{'brute s':>10} {'speed-up':>9} {'auto':>5}")
    for name in lines:
        for n in sizes:
            print(near_duplicate_case(LINES[name], n, baseline_seconds, workers), flush=True)


PRODUCTS = ("bracket", "disc", "plate", "sleeve")
DEFECTS = ("scratch", "spot")


def write_mvtec_set(root: Path, count: int, seed: int = 0) -> None:
    """`count` distinct 256 px images in the MVTec AD layout (a third defect-free), fast: smooth random
    textures with a dark line (scratch) or blob (spot) and its mask, PNG at compression level 1."""
    rng = np.random.default_rng(seed)
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for index in range(count):
        product, kind = PRODUCTS[index % len(PRODUCTS)], ("good", *DEFECTS)[index // len(PRODUCTS) % 3]
        coarse = rng.integers(40, 215, (8, 8, 3), dtype=np.uint8)
        image = cv2.resize(coarse, (256, 256), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        folder = root / product / "test" / kind
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{index:07d}"
        if kind != "good":
            mask = np.zeros((256, 256), np.uint8)
            y, x = (int(v) for v in rng.integers(20, 236, 2))
            if kind == "scratch":
                cv2.line(mask, (x, y), (int(rng.integers(0, 256)), int(rng.integers(0, 256))), 255, 3)
            else:
                cv2.ellipse(mask, (x, y), (int(rng.integers(4, 20)), int(rng.integers(4, 20))), 0, 0, 360, 255, -1)
            image[mask > 0] //= 3
            truth = root / product / "ground_truth" / kind
            truth.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(truth / f"{name}_mask.png"), mask, png)
        cv2.imwrite(str(folder / f"{name}.png"), image, png)


_CHILD = """
import atexit, runpy, sys
def peak():
    try:
        with open("/proc/self/status") as status:  # VmHWM: this process's own peak, not its parent's
            line = next(line for line in status if line.startswith("VmHWM:"))
        sys.stderr.write("PEAK_KB " + line.split()[1] + "\\n")
    except OSError:
        pass
atexit.register(peak)
sys.argv = ["defectspectrum", *sys.argv[1:]]
runpy.run_module("defectspectrum", run_name="__main__")
"""


def run_command(args: list[str], code: Path | None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `defectspectrum ARGS` in a fresh process (exit codes 0 and 1 pass:
    validate exits 1 on errors). The peak is the child's own VmHWM (Linux): `wait4`'s ru_maxrss would
    count the RSS the child had as a fork of this process."""
    env = {**os.environ, "DEFECTSPECTRUM_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    start = time.perf_counter()
    process = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - start
    error = process.stderr.decode(errors="replace")
    if process.returncode not in (0, 1):
        raise SystemExit(f"defectspectrum {' '.join(args)} failed:\n{error[-2000:]}")
    peaks = [line.split()[1] for line in error.splitlines() if line.startswith("PEAK_KB ")]
    return seconds, int(peaks[-1]) / 1024 if peaks else float("nan")


def commands_part(sizes: list[int], code: Path | None, work: Path) -> None:
    results: dict[str, list[tuple[int, float, float]]] = {}
    for n in sizes:
        source, ds = work / f"mvtec_{n}", work / f"ds_{n}"
        if not source.is_dir():
            write_mvtec_set(source, n)
        shutil.rmtree(ds, ignore_errors=True)
        runs = {
            "convert": ["data", "convert", str(source), str(ds), "--from", "mvtec"],
            "validate": ["data", "validate", str(ds), "--json", str(work / f"validate_{n}.json")],
            "stats": ["data", "stats", str(ds), "--json", str(work / f"stats_{n}.json")],
            "export coco": ["data", "export", str(ds), str(work / f"coco_{n}"), "--to", "coco"],
            "export mmseg": ["data", "export", str(ds), str(work / f"mmseg_{n}"), "--to", "mmseg"],
        }
        for name, args in runs.items():
            for target in (work / f"coco_{n}", work / f"mmseg_{n}"):
                shutil.rmtree(target, ignore_errors=True)
            seconds, peak = run_command(args, code)
            results.setdefault(name, []).append((n, seconds, peak))
            print(f"{name:13} {n:7d} images {seconds:8.1f} s {1000 * seconds / n:7.2f} ms/image "
                  f"{peak:8.0f} MB peak", flush=True)
    print("\nslopes between the smallest and the largest size (what one more image costs):")
    for name, rows in results.items():
        (n0, t0, m0), (n1, t1, m1) = rows[0], rows[-1]
        if n1 > n0:
            time_slope, memory_slope = 1000 * (t1 - t0) / (n1 - n0), 1024 * (m1 - m0) / (n1 - n0)
            print(f"{name:13} {time_slope:7.2f} ms/image {memory_slope:8.2f} KiB/image")


def write_index(folder: Path, count: int) -> None:
    """A DS folder index of `count` samples (files absent: opening reads the index only)."""
    folder.mkdir(parents=True, exist_ok=True)
    objects = {name: {"classes": ["background", *DEFECTS]} for name in PRODUCTS}
    (folder / "dataset.json").write_text(json.dumps({"format": "defectspectrum", "version": 1, "name": folder.name,
                                                     "objects": objects}))
    with (folder / "samples.jsonl").open("w") as out:
        for index in range(count):
            product, kind = PRODUCTS[index % len(PRODUCTS)], ("good", *DEFECTS)[index // len(PRODUCTS) % 3]
            name = f"{kind}_{index:07d}"
            out.write(json.dumps({
                "id": f"{product}/{name}", "object": product, "image": f"{product}/images/{name}.png",
                "mask": f"{product}/masks/{name}.png", "split": "val" if index % 5 == 0 else "train",
                "caption": None, "synthetic": False, "source": f"/data/line/{product}/test/{kind}/{index:07d}.png",
                "defect_type": kind}) + "\n")


def index_part(sizes: list[int], work: Path) -> None:
    from defectspectrum.data.dsfolder import DSFolder

    print(f"{'lines':>9} {'open s':>8} {'held B/sample':>14} {'peak B/sample':>14}")
    for n in sizes:
        folder = work / f"index_{n}"
        write_index(folder, n)
        start = time.perf_counter()
        opened = DSFolder.open(folder)
        seconds = time.perf_counter() - start  # tracemalloc slows Python code: timed without it
        del opened
        tracemalloc.start()
        held_folder = DSFolder.open(folder)
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(held_folder) == n
        print(f"{n:9d} {seconds:8.1f} {held / n:14.0f} {peak / n:14.0f}", flush=True)
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["commands", "index", "near-duplicates"])
    parser.add_argument("--sizes", help="Sizes, comma-separated (default: 1000,5000,20000 images for commands, "
                                        "100000,1000000 hashes for near-duplicates).")
    parser.add_argument("--code", type=Path, help="commands: run the package from this src folder instead.")
    parser.add_argument("--work", type=Path, help="commands: keep the generated sets here (default: a temporary "
                                                  "folder, removed after)")
    parser.add_argument("--lines", default="magnetic-tile,capsule", help=f"Lines among {', '.join(LINES)}.")
    parser.add_argument("-j", "--workers", type=int, default=1,
                        help="near-duplicates: processes for the search, as `data validate -j N` (default 1).")
    parser.add_argument("--baseline-seconds", type=float, default=120.0,
                        help="Run brute force where it is estimated to take at most this; estimate it otherwise.")
    args = parser.parse_args()
    if args.part == "index":
        with tempfile.TemporaryDirectory() as work:
            index_part([int(v) for v in (args.sizes or "100000,1000000").split(",")], Path(work))
        return
    if args.part == "near-duplicates":
        sizes = [int(v) for v in (args.sizes or "100000,1000000").split(",")]
        near_duplicate_part(sizes, args.lines.split(","), args.baseline_seconds, args.workers)
        return
    sizes = [int(v) for v in (args.sizes or "1000,5000,20000").split(",")]
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        commands_part(sizes, args.code, args.work)
        return
    with tempfile.TemporaryDirectory() as work:
        commands_part(sizes, args.code, Path(work))


if __name__ == "__main__":
    main()
