"""The paper's Table 5 on procedural data: QC verdicts of a model trained on original vs refined masks.

Defect Spectrum (Table 5) trains one segmentation model on the original coarse MVTec annotations and
the same model on the refined multi-class Defect Spectrum annotations, judges both models' predicted
masks with factory quality-control rules, and compares image-level recall TP/(TP+FN) and false
positive rate FP/(FP+TN), defective being positive (paper: original 85.33 / 49.60, Defect Spectrum
96.07 / 16.50). Here, all on the CPU and without downloads:

1. refined truth: `write_ds_folder` renders one material (images with exact multi-class masks: one
   folder per class, `combined` images with 2-3 classes, good images with empty masks), split at
   random, stratified by defect type (`assign_splits`);
2. original-style labels: a second DS folder with the same sample ids, image files (copied byte for
   byte), splits and class map, whose masks are derived from the refined ones per image, in this order:
   - one class per image: the image's dominant class (most refined pixels) is noted, as the original
     MVTec labels give one defect type per image folder;
   - misses: each 8-connected region of the binary defect mask smaller than `--miss-below` px is
     dropped with probability `--miss-prob` (a generator seeded by --seed and the sample id);
   - coarse shapes: what remains is dilated with an elliptical kernel of `--dilate` px, and every
     pixel of it takes the dominant class; good images keep their empty masks;
3. the same model, settings and seed trained on each folder's train split (`seg.train.train`), then
   both predict the val split of the refined truth (`seg.predict.predict_to_ds`);
4. one rules file judges truth and predictions (`qc.simulate`): holes and cracks are forbidden, scratches
   have a largest-region limit, spots and stains a total-area limit (as fractions of the image area, so
   that many truly defective images hold only minor defects and are benign), specks are ignored;
   `--rules` gives a file of one's own instead;
5. a Markdown table of recall, FPR, precision and the counts per model (plus the original labels
   themselves judged as if they were a prediction, and the paper's numbers), and whether the refined
   annotations win on both recall and FPR.

Defaults (240 images of 128 px, half of them val; dilate 5 px, regions under 38 px missed with
p = 0.5) take about 8.5 minutes with OMP_NUM_THREADS=1, nearly all of it the two trainings; the
work folder is temporary unless --keep or --out is given.

    python benchmarks/qc_table5.py                          # metal, 128 px, unet-small, 400 steps
    python benchmarks/qc_table5.py --material wood --steps 800 --model deeplabv3plus-r18
    python benchmarks/qc_table5.py --dilate 9 --miss-prob 0.8 --keep --out /tmp/table5
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.splits import assign_splits
from defectspectrum.data.synth import MATERIALS, write_ds_folder
from defectspectrum.qc.rates import Counts, percent
from defectspectrum.qc.rules import load_rules
from defectspectrum.qc.simulate import measure_pairs, simulate

PAPER = {"original": (85.33, 49.60), "Defect Spectrum": (96.07, 16.50)}  # Table 5: recall %, FPR %
FORBIDDEN = ("hole", "crack")
LIMITS = {  # class -> (limit, fraction of the image area); the rules of every material are drawn from these
    "scratch": ("max_area", 0.009),
    "spot": ("max_total_area", 0.004),
    "stain": ("max_total_area", 0.05),
}
SPECK = 0.0004  # regions under this fraction of the image area are ignored (about 7 px at 128 px)


@dataclass(frozen=True)
class Outcome:
    """One row of the table: QC counts on the val split and, for a model, its val mIoU."""

    name: str
    counts: Counts
    miou: float | None = None


# --------------------------------------------------------------------------- data


def make_refined(root: Path, args: argparse.Namespace) -> DSFolder:
    """The refined truth: procedural images of one material with exact masks, split at random."""
    folder = write_ds_folder(root, materials=[args.material], n_defective_per_type=args.per_type, n_good=args.good,
                             size=(args.size, args.size), seed=args.seed)
    assign_splits(folder, rule="random", val_fraction=args.val_fraction, seed=args.seed)
    folder.save()
    return folder


def coarsen(mask: np.ndarray, dilate: int, miss_below: float, miss_prob: float,
            rng: np.random.Generator) -> np.ndarray:
    """An original-style mask from a refined one: small regions missed, shapes dilated, one class."""
    defect = mask > 0
    if not defect.any():
        return np.zeros_like(mask)
    dominant = int(np.argmax(np.bincount(mask[defect])))
    count, regions, stats, _ = cv2.connectedComponentsWithStats(defect.astype(np.uint8), connectivity=8)
    draws = rng.random(count)
    missed = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] < miss_below and draws[k] < miss_prob]
    kept = (defect & ~np.isin(regions, missed)).astype(np.uint8)
    if dilate > 1:
        kept = np.asarray(cv2.dilate(kept, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (dilate, dilate))), np.uint8)
    return np.where(kept > 0, dominant, 0).astype(np.uint8)


def make_original(truth: DSFolder, root: Path, args: argparse.Namespace) -> DSFolder:
    """The original-style DS folder: the truth's samples, images and splits with coarsened masks."""
    folder = DSFolder.create(root, "original", {name: truth.classes(name) for name in truth.objects})
    for sample in truth:
        rng = np.random.default_rng([args.seed, zlib.crc32(sample.id.encode())])
        mask = coarsen(truth.load_mask(sample), args.dilate, args.miss_below, args.miss_prob, rng)
        folder.add_sample(sample.object, sample.name, truth.image_path(sample), mask, split=sample.split,
                          defect_type=sample.defect_type, source=f"coarsened:{sample.id}")
    folder.save()
    return folder


def val_subset(folder: DSFolder) -> DSFolder:
    """The val samples of `folder` as a DS folder in memory (same root), for prediction."""
    return DSFolder(folder.root, folder.name, {name: folder.classes(name) for name in folder.objects},
                    folder.samples(split="val"))


# --------------------------------------------------------------------------- rules


def rules_data(material: str, size: int) -> dict[str, Any]:
    """The generated rules for `material` on `size` x `size` images, as the YAML mapping."""
    classes, area = MATERIALS[material], size * size
    policy: dict[str, Any] = {"forbidden": [c for c in classes if c in FORBIDDEN],
                              "limits": {c: {LIMITS[c][0]: round(LIMITS[c][1] * area)} for c in classes if c in LIMITS},
                              "other_classes": "reject"}
    return {"version": 1, "min_region_area": max(1, round(SPECK * area)), "objects": {material: policy}}


def rules_summary(data: dict[str, Any]) -> str:
    """The generated rules in one line."""
    (policy,) = data["objects"].values()
    limits = [f"{name} {key} {value} px" for name, limit in policy["limits"].items() for key, value in limit.items()]
    return (f"{', '.join(policy['forbidden']) or 'nothing'} forbidden; {'; '.join(limits)}; "
            f"regions < {data['min_region_area']} px ignored")


def write_rules(path: Path, material: str, size: int) -> Path:
    """Write the generated rules file for `material` to `path`."""
    path.write_text(yaml.safe_dump(rules_data(material, size), sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- models


def train_and_predict(data: DSFolder, truth: DSFolder, out: Path, args: argparse.Namespace) -> tuple[DSFolder, float]:
    """Train the model on `data`'s train split, predict the truth's val split; returns the prediction and seconds."""
    from defectspectrum.seg.evaluate import load_run
    from defectspectrum.seg.predict import predict_to_ds
    from defectspectrum.seg.run import RunConfig
    from defectspectrum.seg.train import train

    start = time.perf_counter()
    config = RunConfig(data=str(data.root.absolute()), model=args.model, objects=(args.material,), steps=args.steps,
                       val_split=None, val_every=args.steps, batch_size=args.batch, crop_size=args.crop, lr=args.lr,
                       num_workers=0, seed=args.seed)
    train(config, out / "run")
    loaded = load_run(out / "run", device="cpu")
    pred = predict_to_ds(loaded.predictor(), loaded.info.labels, val_subset(truth), out / "pred", overlays=False)
    return pred, time.perf_counter() - start


def val_miou(truth: DSFolder, pred: DSFolder) -> float:
    """mIoU (percent) of the predicted masks against the truth's val masks."""
    from defectspectrum.seg.metrics import ConfusionMatrix, scores

    names = list(truth.classes(next(iter(truth.objects))).names)
    matrix = ConfusionMatrix(len(names))
    for sample in truth.samples(split="val"):
        matrix.update(pred.load_mask(pred[sample.id]), truth.load_mask(sample))
    return float(scores(matrix.matrix, names).mIoU)


def judge(truth: DSFolder, pred: DSFolder, rules_path: Path) -> Counts:
    """QC counts on the val split: truth and prediction judged by the same rules."""
    policies = load_rules(rules_path).policies(truth.objects)
    return simulate(measure_pairs(truth, pred, split="val"), policies).counts()


# --------------------------------------------------------------------------- output


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(outcomes: list[Outcome]) -> str:
    """The Markdown table of every outcome and the paper's numbers."""
    lines = [row(["annotations", "recall %", "FPR %", "precision %", "TP", "FN", "FP", "TN", "val mIoU %"]),
             row(["---"] + ["---:"] * 8)]
    for item in outcomes:
        c = item.counts
        miou = "–" if item.miou is None else f"{item.miou:.2f}"
        lines.append(row([item.name, percent(c.recall), percent(c.fpr), percent(c.precision),
                          str(c.tp), str(c.fn), str(c.fp), str(c.tn), miou]))
    for name, (recall, fpr) in PAPER.items():
        lines.append(row([f"paper: {name}", f"{recall:.2f}", f"{fpr:.2f}"] + ["–"] * 6))
    return "\n".join(lines)


def _versus(refined: float, original: float, higher_is_better: bool) -> str:
    """`better`, `equal` or `worse` for the refined model's rate against the original's."""
    if refined == original:
        return "equal"
    return "better" if (refined > original) == higher_is_better else "worse"


def compare(original: Counts, refined: Counts) -> str:
    """The verdict line: whether the refined annotations win on both recall and FPR."""
    if original.recall is None or refined.recall is None or original.fpr is None or refined.fpr is None:
        return "Result: undefined (no defective or no benign val image); use more images."
    recall = _versus(refined.recall, original.recall, higher_is_better=True)
    fpr = _versus(refined.fpr, original.fpr, higher_is_better=False)
    if recall == fpr == "better":
        return "Result: refined wins (higher recall and lower FPR than the original annotations)."
    return (f"Result: refined does NOT win on both: recall {percent(refined.recall)} vs {percent(original.recall)} "
            f"({recall}), FPR {percent(refined.fpr)} vs {percent(original.fpr)} ({fpr}).")


def settings_text(args: argparse.Namespace, truth: DSFolder, seconds: float) -> str:
    """The settings of the run, for the lines under the table."""
    train, val = len(truth.samples(split="train")), len(truth.samples(split="val"))
    rules = str(args.rules) if args.rules else rules_summary(rules_data(args.material, args.size))
    return (f"material {args.material} ({', '.join(MATERIALS[args.material])}), {len(truth)} images "
            f"({train} train, {val} val; {args.per_type} per defect folder, {args.good} good), {args.size} px, "
            f"seed {args.seed}\nmodel {args.model}, {args.steps} steps, batch {args.batch}, crop {args.crop}, "
            f"lr {args.lr:g}; original labels: dilate {args.dilate} px, regions < {args.miss_below:g} px missed with "
            f"p = {args.miss_prob:g}\nrules: {rules}\ntotal {seconds:.0f} s")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--material", default="metal", choices=sorted(MATERIALS))
    parser.add_argument("--per-type", type=int, default=40, help="images per defect folder (each class, combined)")
    parser.add_argument("--good", type=int, default=40, help="defect-free images")
    parser.add_argument("--size", type=int, default=128, help="image side, px")
    parser.add_argument("--val-fraction", type=float, default=0.5, help="share of each defect type that validates")
    parser.add_argument("--steps", type=int, default=400, help="training steps of each model")
    parser.add_argument("--model", default="unet-small")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128, help="training crop side, px")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0, help="data, split, label derivation and training seed")
    parser.add_argument("--dilate", type=int, default=None,
                        help="elliptical dilation of the original labels, px (default: 7 px at 256 px, scaled)")
    parser.add_argument("--miss-below", type=float, default=None,
                        help="regions smaller than this may be missed, px (default: 150 px at 256 px, scaled by area)")
    parser.add_argument("--miss-prob", type=float, default=0.5, help="chance that such a small region is missed")
    parser.add_argument("--rules", type=Path, default=None, help="a QC rules YAML of one's own (default: generated)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = parser.parse_args(argv)
    if min(args.per_type, args.steps, args.size) < 1 or args.good < 0 or not 0 <= args.miss_prob <= 1:
        parser.error("--per-type, --steps and --size must be at least 1, --good at least 0, --miss-prob in 0..1")
    scale = args.size / 256
    if args.dilate is None:
        args.dilate = max(1, round(7 * scale))
        args.dilate += 1 - args.dilate % 2  # odd: the kernel is centred
    if args.miss_below is None:
        args.miss_below = round(150 * scale * scale)
    return args


@contextmanager
def work_folder(args: argparse.Namespace) -> Iterator[Path]:
    """`--out` (kept), or a temporary folder removed at the end unless `--keep`."""
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        yield args.out
        return
    path = Path(tempfile.mkdtemp(prefix="qc_table5-"))
    try:
        yield path
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def timed(label: str, work: Callable[[], Any]) -> Any:
    """Run `work`, printing how long it took."""
    start = time.perf_counter()
    result = work()
    print(f"{label}: {time.perf_counter() - start:.0f} s", flush=True)
    return result


def run(args: argparse.Namespace, work: Path) -> None:
    """The whole experiment in `work`; prints the table."""
    start = time.perf_counter()
    truth = timed("refined truth", lambda: make_refined(work / "refined", args))
    original = timed("original labels", lambda: make_original(truth, work / "original", args))
    rules_path = args.rules or write_rules(work / "rules.yaml", args.material, args.size)
    outcomes = [Outcome("original labels as masks (no model)", judge(truth, original, rules_path))]
    for key, name, data in (("original", "original (coarse) model", original),
                            ("refined", "Defect Spectrum (refined) model", truth)):
        pred, seconds = train_and_predict(data, truth, work / "runs" / key, args)
        print(f"train + predict {name}: {seconds:.0f} s", flush=True)
        outcomes.append(Outcome(name, judge(truth, pred, rules_path), val_miou(truth, pred)))
    print()
    print(table(outcomes))
    print()
    print(settings_text(args, truth, time.perf_counter() - start))
    print(compare(outcomes[1].counts, outcomes[2].counts))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with work_folder(args) as work:
        run(args, work)


if __name__ == "__main__":
    main()
