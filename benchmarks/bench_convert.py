"""Conversion speed and memory against a plain PIL read-and-save loop over the same files.

Prints, for one real data set (default: Magnetic-tile from ../shared/data):
  - samples/s of `convert` (1 worker, then --workers N) and of a PIL loop that opens, decodes and
    saves every image and mask file of the data set (same formats); the ratio convert/PIL (target >= 0.8 single process)
    and workers-N/1 (target > 1);
  - the peak RSS of a conversion process over growing subsets (target: flat as the set grows,
    < 500 MB for 1344 images).

    python benchmarks/bench_convert.py                      # magnetic-tile
    python benchmarks/bench_convert.py --dataset mvtec_ad_subset --format mvtec --workers 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEFECTSPECTRUM_SHARED_DATA", REPO.parent / "shared" / "data"))
DATASETS = {"magnetic_tile": "magnetic-tile", "mvtec_ad_subset": "mvtec", "sd_saliency_900": "sd900"}


def source_files(fmt: str, root: Path) -> tuple[int, list[Path]]:
    """The number of samples the reader finds, and every image and mask file of the data set."""
    from defectspectrum.data.formats import open_reader
    from defectspectrum.io import is_image_file

    count = sum(1 for _ in open_reader(fmt, root).samples())
    return count, sorted(p for p in root.rglob("*") if is_image_file(p))


def pil_loop(files: list[Path], out: Path) -> float:
    """Seconds to open, decode and save every file into `out` with PIL in its own format (PNG at
    the fast compression level the converter uses for masks, so the baseline is not slowed by zlib)."""
    start = time.perf_counter()
    for index, path in enumerate(files):
        with Image.open(path) as image:
            image.load()
            suffix = path.suffix.lower()
            options = {"compress_level": 1} if suffix == ".png" else {}
            image.save(out / f"{index}{suffix}", **options)
    return time.perf_counter() - start


def run_child(code: str) -> tuple[float, float]:
    """Run `code` in a fresh interpreter; returns (the float it prints, its peak RSS in MB)."""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "DEFECTSPECTRUM_NO_PROGRESS": "1"})
    output = process.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed: {code}")
    return float(output.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def convert_in_child(fmt: str, root: Path, dst: Path, workers: int) -> tuple[float, float]:
    code = (
        "import time; from defectspectrum.data.convert import convert; t=time.perf_counter(); "
        f"convert({str(root)!r}, {str(dst)!r}, {fmt!r}, workers={workers}); print(time.perf_counter()-t)"
    )
    return run_child(code)


def subset_tree(fmt: str, root: Path, fraction: float, out: Path) -> Path:
    """A tree of symbolic links to the first `fraction` of each folder's files (same layout)."""
    for folder in sorted({p.parent for p in root.rglob("*") if p.is_file()}):
        files = sorted(p for p in folder.iterdir() if p.is_file())
        stems = sorted({p.stem.removesuffix("_mask") for p in files})
        keep = set(stems[: max(1, round(len(stems) * fraction))])
        for path in files:
            if path.stem.removesuffix("_mask") in keep:
                link = out / path.relative_to(root)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="magnetic_tile", choices=sorted(DATASETS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best counts")
    args = parser.parse_args()
    root = SHARED / args.dataset
    if not root.is_dir():
        raise SystemExit(f"real data not found at {root}; set DEFECTSPECTRUM_SHARED_DATA")
    fmt = DATASETS[args.dataset]
    count, files = source_files(fmt, root)
    pil_times, one_times, many_times, one_rss = [], [], [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        pil_loop(files[:20], Path(tempfile.mkdtemp(dir=tmp)))  # warm the file cache
        for repeat in range(args.repeats):  # interleaved, best of N: the disk's write-back is noisy
            os.sync()
            pil_times.append(pil_loop(files, Path(tempfile.mkdtemp(dir=tmp))))
            os.sync()
            seconds, one_rss = convert_in_child(fmt, root, tmp_path / f"w1-{repeat}", 1)
            one_times.append(seconds)
            os.sync()
            many_times.append(convert_in_child(fmt, root, tmp_path / f"wn-{repeat}", args.workers)[0])
        rss = {1.0: one_rss}
        for fraction in (0.25, 0.5):
            sub = subset_tree(fmt, root, fraction, tmp_path / f"sub{fraction}")
            rss[fraction] = convert_in_child(fmt, sub, tmp_path / f"ds{fraction}", 1)[1]
    pil_s, one_s, many_s = min(pil_times), min(one_times), min(many_times)
    print(f"data set: {root} ({count} samples, {len(files)} files, format {fmt}; best of {args.repeats})")
    print(f"PIL read-and-save loop : {count / pil_s:8.1f} samples/s")
    print(f"convert, 1 worker      : {count / one_s:8.1f} samples/s   "
          f"ratio vs PIL {pil_s / one_s:5.2f} (target >= 0.8)")
    print(f"convert, {args.workers} workers     : {count / many_s:8.1f} samples/s   "
          f"speed-up vs 1 worker {one_s / many_s:5.2f} (target > 1)")
    for fraction, mb in sorted(rss.items()):
        print(f"peak RSS, {fraction:4.0%} of the set : {mb:7.1f} MB")
    print(f"peak RSS growth 25% -> 100%: {rss[1.0] / rss[0.25]:5.2f}x (target: flat, < 500 MB at 100%)")


if __name__ == "__main__":
    main()
