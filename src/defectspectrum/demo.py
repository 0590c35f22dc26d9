"""The end-to-end demo on embedded procedural data (no downloads): `python -m defectspectrum.demo --out demo_output`.

Steps: synthesise a source tree in the Defect Spectrum release layout (multi-class index masks),
convert it into a DS folder, assign the paper's first-k splits, caption every sample, validate,
compute statistics, draw overlays and a contact sheet, train a small segmentation model on one
material and score and draw it on the val split (with the `seg` extra), judge its predicted masks
against the truth with quality-control rules (`qc simulate`), train a tiny two-stage Defect-Gen
pair on the same material and measure the pairs it draws (with the `gen` extra), click val defects
with the shipped Defect-Click model and GrabCut by the NoC protocol (with the `seg` extra), and
compose the report sections (as
`defectspectrum report` does) with the demo's own steps and files into `<out>/report.html`. A
previous `<out>` is replaced only if it holds the `.defectspectrum-demo` marker this demo writes;
anything else is refused, never deleted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectspectrum.errors import DefectSpectrumError, InputError

MARKER = ".defectspectrum-demo"


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, and how long each step took (seconds)."""

    out: Path
    source: Path
    ds: Path
    show: Path
    report: Path
    timings: dict[str, float] = field(default_factory=dict)


def prepare_out(out: Path) -> None:
    """Make `out` an empty demo folder: new, empty, or a previous demo output (marker file) that is removed."""
    if out.is_symlink():
        raise InputError(f"{out}: is a symbolic link; choose a plain folder for the demo output")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder; choose another --out")
        if any(out.iterdir()):
            if not (out / MARKER).is_file():
                raise InputError(f"{out}: exists, is not empty and is not a demo output (no {MARKER} file); "
                                 "choose another --out or empty it yourself")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("Written by `python -m defectspectrum.demo`; the next demo run may delete this "
                              "folder.\n", encoding="utf-8")


SEG_MODEL = "deeplabv3plus-r18"
SEG_OBJECT = "metal"
QC_RULES = f"""\
# Quality-control rules of the demo's procedural `{SEG_OBJECT}` parts (256 px images): a hole is never
# acceptable; small scratches, a few spots and a light stain are. Limits are inclusive, in pixels.
version: 1
objects:
  {SEG_OBJECT}:
    forbidden: [hole]
    limits:
      scratch: {{max_area: 400}}
      spot: {{max_total_area: 200}}
      stain: {{max_total_area: 3500}}
"""


GEN_SIZE, GEN_WIDTH, GEN_SWITCH, GEN_SAMPLES = 64, 16, 100, 8  # the demo's tiny generators and their pairs
CLICK_OBJECTS, CLICK_MAX_CLICKS = 12, 10  # the click step: val defects clicked, clicks each


def gen_available() -> bool:
    """True where the `gen` extra (the `seg` extra and diffusers) is installed."""
    import importlib.util

    return seg_available() and importlib.util.find_spec("diffusers") is not None


def seg_available() -> bool:
    """True where the `seg` extra (torch and the model libraries) is installed."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None
               for name in ("torch", "segmentation_models_pytorch", "timm", "accelerate"))


def run_demo(out: Path, *, size: int = 256, per_type: int = 8, seed: int = 0, k: int = 5,
             seg_steps: int = 200, seg_model: str = SEG_MODEL, gen_steps: int = 300, click_objects: int = CLICK_OBJECTS,
             log: Callable[[str], None] = print) -> DemoResult:
    """Run every step into `out` and return where things are; `log` receives one line per step.
    `seg_steps` 0 (or no `seg` extra installed) leaves the segmentation step out, `gen_steps` 0 (or
    no `gen` extra) the generator step, `click_objects` 0 (or no `seg` extra) the Defect-Click step."""
    from defectspectrum.data.captions import caption_folder
    from defectspectrum.data.convert import convert_counted
    from defectspectrum.data.show import write_overlays
    from defectspectrum.data.splits import assign_splits
    from defectspectrum.data.stats import compute_stats
    from defectspectrum.data.synth import DEFAULT_MATERIALS, MATERIALS, write_release_layout
    from defectspectrum.data.validate import validate
    from defectspectrum.io import write_json_atomic

    if size < 32:
        raise InputError(f"--size {size}: use at least 32 pixels")
    if per_type < 1:
        raise InputError(f"--per-type {per_type}: use at least 1 image per defect type")
    out = Path(out).absolute()
    prepare_out(out)
    timings: dict[str, float] = {}
    steps = 12
    clock = [time.perf_counter()]

    def done(number: int, name: str, message: str) -> None:
        now = time.perf_counter()
        timings[name] = now - clock[0]
        clock[0] = now
        log(f"[{number}/{steps}] {name:9} {message} ({timings[name]:.1f} s)")

    good = max(1, per_type // 2)
    source = write_release_layout(out / "source", n_defective_per_type=per_type, n_good=2 * good,
                                  size=(size, size), seed=seed)
    n_types = sum(len(MATERIALS[m]) + 1 for m in DEFAULT_MATERIALS)  # + "combined"
    done(1, "synth", f"{len(DEFAULT_MATERIALS)} materials, {n_types} defect folders, {size}x{size} px "
                     f"-> {_rel(source, out)}")

    converted = convert_counted(source, out / "ds", "auto", name="demo")
    folder = converted.open()
    done(2, "convert", f"{converted.summary()} -> {_rel(folder.root, out)}")

    split_counts = assign_splits(folder, rule="first-k", k=k)
    folder.save()
    done(3, "split", f"first-{k} per defect type: " + ", ".join(f"{n} {s}" for s, n in split_counts.items()))

    captioned = caption_folder(folder)
    folder.save()
    done(4, "caption", f"{captioned} template captions")

    report = validate(folder)
    write_json_atomic(out / "validation.json", report.to_json())
    verdict = "OK" if report.ok else "FAILED"
    done(5, "validate", f"{verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")

    stats = compute_stats(folder)
    stats_json = stats.to_json()
    write_json_atomic(out / "stats.json", stats_json)
    classes = [c for o in stats_json["objects"].values() for c in o["classes"]]
    done(6, "stats", f"{len(classes)} classes, {sum(c['regions'] for c in classes)} defect regions")

    shown = write_overlays(folder, out / "show", limit=max(24, n_types))
    done(7, "show", f"{len(shown.overlays)} overlays and {_rel(shown.contact_sheet, out)}")

    seg_result = None
    has_val = any(s.object == SEG_OBJECT and s.split == "val" for s in folder)
    if seg_steps > 0 and seg_available() and has_val:
        seg_result = _seg_step(folder, out / "seg", seg_model, seg_steps, seed)
        done(8, "seg", f"{seg_model} on {SEG_OBJECT}, {seg_steps} steps: val mIoU {seg_result.scores['mIoU']:.1f} "
                       f"-> {_rel(out / 'seg', out)}")
    else:
        why = ("--seg-steps 0" if seg_steps <= 0 else "install defectspectrum[seg] for it" if not seg_available()
               else f"no {SEG_OBJECT} image in the val split; lower --k")
        done(8, "seg", f"skipped ({why})")

    qc_result = None
    if seg_result is not None and seg_result.predictions is not None:
        qc_result = _qc_step(folder, seg_result.predictions, out / "qc")
        counts = qc_result.simulation.counts()
        done(9, "qc", f"rules on {SEG_OBJECT} val: recall {_percent(counts.recall)}, FPR {_percent(counts.fpr)} "
                      f"({counts.fn} escapes, {counts.fp} false rejects) -> {_rel(out / 'qc', out)}")
    else:
        done(9, "qc", "skipped (it judges the seg step's predictions)")

    gen_result = None
    if gen_steps > 0 and gen_available():
        seg_run = out / "seg" / "run" if seg_result is not None else None
        gen_result = _gen_step(folder, out / "gen", gen_steps, seed, seg_run)
        measures = gen_result.measures
        agreement = (measures["consistency"].get("agreement") or {}).get("mean")
        done(10, "gen", f"large + small on {SEG_OBJECT}, {gen_steps} steps each at {GEN_SIZE} px: "
                        f"{gen_result.metrics.samples} two-stage pairs (u={GEN_SWITCH}), nearest/spacing "
                        f"{measures['memorisation']['nearest_over_scale']:.2f}"
                        + (f", seg agreement {agreement:.2f}" if agreement is not None else "")
                        + f" -> {_rel(out / 'gen', out)}")
    else:
        done(10, "gen", "skipped (" + ("--gen-steps 0" if gen_steps <= 0 else "install defectspectrum[gen] for it")
             + ")")

    click_result = None
    if click_objects > 0 and seg_available():
        click_result = _click_step(folder, out / "click", click_objects)
        rows = {name: result.summary() for name, result in click_result.results.items()}
        done(11, "click", f"shipped model and GrabCut on {len(click_result.items)} val defects: NoC85 "
                          + ", ".join(f"{name} {summary.noc85:.1f}" for name, summary in rows.items())
                          + f" (of {CLICK_MAX_CLICKS}) -> {_rel(out / 'click', out)}")
    else:
        done(11, "click", "skipped (" + ("--click-objects 0" if click_objects <= 0
                                         else "install defectspectrum[seg] for it") + ")")

    report_path = out / "report.html"
    _write_report(report_path, folder, report, stats_json, shown, timings,
                  {"size": size, "per_type": per_type, "good": good, "seed": seed, "k": k}, seg_result, qc_result,
                  gen_result, click_result)
    done(12, "report", _rel(report_path, out))
    return DemoResult(out=out, source=source, ds=folder.root, show=out / "show", report=report_path, timings=timings)


def _rel(path: Path, base: Path) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return str(path)


def _seg_step(folder: Any, out: Path, model: str, steps: int, seed: int) -> Any:
    """Train a small model on one material's train split, then score and draw it on its val split."""
    from defectspectrum.seg.evaluate import load_run
    from defectspectrum.seg.run import RunConfig
    from defectspectrum.seg.showcase import showcase_run
    from defectspectrum.seg.train import train

    config = RunConfig(data=str(folder.root), model=model, objects=(SEG_OBJECT,), steps=steps, val_split=None,
                       val_every=steps, batch_size=4, crop_size=128, lr=2e-3, num_workers=0, seed=seed)
    train(config, out / "run")
    return showcase_run(load_run(out / "run", device="cpu"), folder, out)


def _gen_step(folder: Any, out: Path, steps: int, seed: int, seg_run: Path | None) -> Any:
    """Train a tiny large and small generator on one material's train split, draw two-stage pairs and
    measure them (with the seg step's model as the agreement judge, where it ran)."""
    from defectspectrum.data.classes import ClassMap
    from defectspectrum.gen.evaluation import evaluate_folders
    from defectspectrum.gen.filters import segmenter
    from defectspectrum.gen.sample import load_generator, write_samples
    from defectspectrum.gen.train import PREVIEWS, GenConfig, train_generator
    from defectspectrum.io import write_json_atomic

    common: dict[str, Any] = {
        "data": str(folder.root), "object": SEG_OBJECT, "width": GEN_WIDTH, "layers": 1, "size": GEN_SIZE,
        "steps": steps, "batch_size": 4, "lr": 2e-3, "ema_decay": 0.99, "checkpoint_every": steps,
        "preview_every": max(1, steps // 3), "vflip": True, "rotate90": True, "seed": seed}
    for preset in ("large", "small"):
        train_generator(GenConfig(preset=preset, **common), out / preset)
    large, small = load_generator(out / "large"), load_generator(out / "small")
    generated, _ = write_samples(large, small, GEN_SWITCH, GEN_SAMPLES, out / "pairs", seed=seed, sampler="ddim",
                                 steps=50, min_area=4, keep_empty=True)
    segment = segmenter(seg_run, SEG_OBJECT, ClassMap(large.classes)) if seg_run is not None else None
    result = evaluate_folders(generated, folder, "train", segment=segment)
    result.previews = sorted((out / "large" / PREVIEWS).glob("*.png"))
    write_json_atomic(out / "eval.json", result.to_json())
    return result


def _click_step(folder: Any, out: Path, objects: int) -> Any:
    """The shipped Defect-Click model and GrabCut on `objects` defects spread over the val split (NoC protocol)."""
    from defectspectrum.click.baselines import make_baseline
    from defectspectrum.click.noc import Segmenter
    from defectspectrum.click.objects import folder_instances, spread
    from defectspectrum.click.predictor import load_predictor
    from defectspectrum.click.report_section import ClickEvaluation
    from defectspectrum.data.dsfolder import select_samples
    from defectspectrum.io import write_json_atomic

    items = spread(folder_instances(folder, select_samples(folder, "val", None)), objects)
    segmenters: dict[str, Segmenter] = {"default": load_predictor("default"), "grabcut": make_baseline("grabcut")}
    evaluation = ClickEvaluation.run(f"{len(items)} val defects of the demo data", folder, items, segmenters,
                                     CLICK_MAX_CLICKS)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "noc.json", {"models": {name: r.to_json() for name, r in evaluation.results.items()},
                                         "max_clicks": CLICK_MAX_CLICKS, "objects": len(items)})
    return evaluation


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _qc_step(folder: Any, predictions: Path, out: Path) -> Any:
    """Judge the seg step's val predictions against the truth with the demo's rules (written to `out`)."""
    from defectspectrum.data.dsfolder import DSFolder
    from defectspectrum.io import write_json_atomic, write_text_atomic
    from defectspectrum.qc.report_section import QCResult
    from defectspectrum.qc.rules import load_rules
    from defectspectrum.qc.simulate import measure_pairs, simulate

    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "rules.yaml", QC_RULES)
    rules = load_rules(out / "rules.yaml")
    pred = DSFolder.open(predictions)
    policies = rules.policies(folder.objects, str(folder.root), [SEG_OBJECT])
    result = simulate(measure_pairs(folder, pred, "val", [SEG_OBJECT]), policies)
    write_json_atomic(out / "qc.json", result.to_json())
    result.write_csv(out / "qc.csv")
    return QCResult(result, folder, pred, policies, out / "rules.yaml", "val")


def _write_report(path: Path, folder: Any, validation: Any, stats: dict[str, Any], shown: Any,
                  timings: dict[str, float], settings: dict[str, int], seg_result: Any = None,
                  qc_result: Any = None, gen_result: Any = None, click_result: Any = None) -> None:
    """The registered report sections on the demo's results, with the demo's steps and files around them."""
    from defectspectrum.report.sections import ReportContext, Section, build_report, get_sections

    extra: dict[str, Any] = {}
    if seg_result is not None:
        extra["seg_eval"] = seg_result
    if qc_result is not None:
        extra["qc"] = qc_result
    if gen_result is not None:
        extra["gen"] = gen_result
    if click_result is not None:
        extra["click"] = click_result
    context = ReportContext(folder, html=path, validation=validation, stats=stats, overlays=shown, extra=extra)
    overview, *rest = get_sections()
    if seg_result is not None:
        from defectspectrum.seg.report_section import SEG_SECTION

        rest.append(SEG_SECTION)  # after the data sections, as SECTION_ORDER has it
    if qc_result is not None:
        from defectspectrum.qc.report_section import QC_SECTION

        rest.append(QC_SECTION)
    if gen_result is not None:
        from defectspectrum.gen.report_section import GEN_SECTION

        rest.append(GEN_SECTION)
    if click_result is not None:
        from defectspectrum.click.report_section import CLICK_SECTION

        rest.append(CLICK_SECTION)
    sections: list[Section] = [overview, DemoSteps(timings, settings), *rest, DemoFiles(path.parent, folder.root)]
    report, problems = build_report(
        context, sections, "defectspectrum demo",
        subtitle=f"Procedural inspection images, {settings['size']}×{settings['size']} px, seed {settings['seed']}: "
                 "from a source tree to a checked, split and captioned DS folder.")
    if problems:  # generated data draws every section; a failure here is a bug, not bad input
        raise DefectSpectrumError(f"report section {problems[0].name}: {problems[0].message}")
    report.write(path)


@dataclass(frozen=True)
class DemoSteps:
    """Report section: how the demo data was made, what each step did, where it wrote, and how long it took."""

    timings: dict[str, float]
    settings: dict[str, int]
    name: str = "demo-steps"
    title: str = "Steps"

    def render(self, context: Any, report: Any) -> None:
        settings = self.settings
        report.add_text(
            "Every image was rendered on the spot (textured metal, wood, fabric, tile and plastic with painted "
            f"defects; {settings['per_type']} images per defect folder and {2 * settings['good']} defect-free "
            "images per material), written in the Defect Spectrum release layout (class-index masks, one folder "
            "per defect type, `combined` images holding 2-3 classes at once), and then carried through the "
            "toolkit's data stages.\n\n"
            f"Splits follow the paper's rule: in each (object, defect type) group, in natural name order, the first "
            f"{settings['k']} images train and the rest validate; defect-free images form one group per object.")
        steps = [
            ("synth", "write a tree in the Defect Spectrum release layout", "source/"),
            ("convert", "read it with --from auto (detected: ds-release) into a DS folder", "ds/"),
            ("split", f"first-{settings['k']} rule of the paper per (object, defect type)", "ds/samples.jsonl"),
            ("caption", "template captions from the masks", "ds/samples.jsonl"),
            ("validate", "files, sizes, class indices, empty masks, duplicates across splits", "validation.json"),
            ("stats", "images, regions and region areas per class", "stats.json"),
            ("show", "mask overlays and a contact sheet", "show/"),
            ("seg", "train a segmentation model on one material, score and predict its val split", "seg/"),
            ("qc", "judge truth and prediction with quality-control rules: recall, FPR, misjudged images", "qc/"),
            ("gen", "train a tiny large + small generator on one material, draw two-stage pairs, measure them",
             "gen/"),
            ("click", "click val defects with the shipped Defect-Click model and GrabCut (NoC protocol)", "click/"),
        ]
        rows: list[tuple[str, str, str | None, float]] = [
            (name, what, where, round(self.timings.get(name, 0.0), 2)) for name, what, where in steps]
        rows.append(("total", "", None, round(sum(self.timings.get(name, 0.0) for name, *_ in steps), 2)))
        report.add_table(rows, header=["step", "what", "output", "seconds"])


@dataclass(frozen=True)
class DemoFiles:
    """Report section: the files the demo wrote, relative to its output folder."""

    out: Path
    ds: Path
    name: str = "demo-files"
    title: str = "Files"

    def render(self, context: Any, report: Any) -> None:
        out = self.out
        report.add_table([(_rel(p, out) + ("/" if p.is_dir() else ""), what) for p, what in [
            (out / "source", "the generated source tree (Defect Spectrum release layout)"),
            (self.ds, "the DS folder: dataset.json, samples.jsonl, <object>/images, <object>/masks"),
            (out / "validation.json", "every validation issue"),
            (out / "stats.json", "the statistics above, as JSON"),
            (out / "show", "overlay PNGs (image | overlay) and contact_sheet.png"),
            (out / "seg", "the segmentation run (run.json, best.pt), predicted DS folder pred/, compare/ pictures"),
            (out / "qc", "the QC rules (rules.yaml) and every image's verdicts (qc.json, qc.csv)"),
            (out / "gen", "the generator runs (large/, small/, with previews/), the drawn pairs/ and eval.json"),
            (out / "click", "the NoC evaluation of the click step (noc.json)"),
        ] if p.exists()], header=["path", "contents"])


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on a toolkit error)."""
    parser = argparse.ArgumentParser(prog="python -m defectspectrum.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"),
                        help="Output folder (new, empty, or a previous demo output).")
    parser.add_argument("--size", type=int, default=256, help="Image side in pixels (default 256).")
    parser.add_argument("--per-type", type=int, default=8, help="Defective images per defect folder (default 8).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the generated data (default 0).")
    parser.add_argument("--k", type=int, default=5, help="first-k split: training images per defect type (default 5).")
    parser.add_argument("--seg-steps", type=int, default=200,
                        help="Training steps of the segmentation step (default 200; 0 leaves it out).")
    parser.add_argument("--gen-steps", type=int, default=300,
                        help="Training steps of each demo generator (default 300; 0 leaves the step out).")
    parser.add_argument("--click-objects", type=int, default=CLICK_OBJECTS,
                        help=f"Val defects clicked in the Defect-Click step (default {CLICK_OBJECTS}; 0: left out).")
    args = parser.parse_args(argv)
    from defectspectrum.cli_support import error_message, printable

    started = time.perf_counter()
    try:
        result = run_demo(args.out, size=args.size, per_type=args.per_type, seed=args.seed, k=args.k,
                          seg_steps=args.seg_steps, gen_steps=args.gen_steps, click_objects=args.click_objects)
    except Exception as exc:  # the same one-line errors as the CLI; anything else is a bug and keeps its traceback
        message = error_message(exc)
        if message is None:
            raise
        print(f"error: {printable(message)}", file=sys.stderr)
        return 2
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    print(f"Report: {result.report.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
