"""`defectspectrum seg ...`: train, evaluate, predict, benchmark and export segmentation models.

Thin typer commands; torch and the model libraries are imported inside the commands, so the
rest of the CLI starts fast and works without the `seg` extra.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import typer

from defectspectrum.cli_support import friendly, options_given, parse_csv, require_folder, say, wrote
from defectspectrum.errors import InputError

seg_app = typer.Typer(help="Segmentation benchmark: the paper's eight models, mmseg-exact mIoU, tiled prediction.",
                      no_args_is_help=True)

EXTRA_MODULES = ("torch", "torchvision", "segmentation_models_pytorch", "timm", "transformers", "accelerate")


def require_seg_extra(modules: tuple[str, ...] = EXTRA_MODULES) -> None:
    """One clear line when the `seg` extra is not installed."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"the segmentation stage needs {', '.join(missing)}; "
                         "install it with `pip install 'defectspectrum[seg]'`")


def _float_list(value: str | None, option: str) -> tuple[float, ...] | None:
    items = parse_csv(value)
    if items is None:
        return None
    try:
        return tuple(float(item) for item in items)
    except ValueError:
        raise InputError(f"{option} {value!r}: give comma-separated numbers, e.g. 1,5,5") from None


def _on_event(event: Any) -> None:
    """Progress lines for logs: one per validation (the bar shows the rest on a terminal)."""
    if event.scores is None:
        return
    say(f"step {event.step}/{event.steps}  loss {event.loss:.4f}  val mIoU {event.scores.mIoU:.2f}  "
        f"aAcc {event.scores.aAcc:.2f}  best {event.best_miou:.2f}")


@seg_app.command("models")
@friendly
def models_command() -> None:
    """List the model zoo (names for --model), in the paper's Table 2 order.

    Example: defectspectrum seg models
    """
    require_seg_extra(("torch",))
    from defectspectrum.seg.models.registry import model_info, model_names

    for name in model_names():
        info = model_info(name)
        say(f"{name:20} {info.paper:22} {info.summary}")


@seg_app.command("train")
@friendly
def train_command(
    ctx: typer.Context,
    ds: Path | None = typer.Argument(None, readable=False, help="The DS folder to train on (with train/val splits)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (`seg models` lists them)."),
    out: Path = typer.Option(..., "--out", "-o", help="The run folder to create (or to continue with --resume)."),
    objects: str | None = typer.Option(None, "--object", help="Object(s) to train on, comma-separated (default all)."),
    labels: str = typer.Option("object", "--labels",
                               help="object: the objects' shared class map; global: one class per (object, class)."),
    steps: int = typer.Option(2000, "--steps", help="Training iterations."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Images per step and process."),
    crop_size: int = typer.Option(256, "--crop-size", help="Square training crops; prediction tiles at this size."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (poly decay to 0)."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd (momentum 0.9)."),
    val_every: int = typer.Option(200, "--val-every", help="Validate (and checkpoint) every N steps."),
    dice_weight: float = typer.Option(0.0, "--dice-weight", help="Add dice loss with this weight to cross-entropy."),
    class_weights: str | None = typer.Option(None, "--class-weights",
                                             help="Cross-entropy weights: auto, or one number per class."),
    synthetic: str = typer.Option("include", "--synthetic",
                                  help="Synthetic samples of DS in training: include, exclude or only."),
    weights: Path | None = typer.Option(None, "--weights", help="A local checkpoint to start from, e.g. timm "
                                        "ImageNet encoder weights (nothing is downloaded)."),
    mixed_precision: str = typer.Option("no", "--mixed-precision", help="no, fp16 or bf16."),
    workers: int = typer.Option(2, "--workers", "-j", help="Data loader processes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights, the data order and the augmentation."),
    include_good: bool = typer.Option(True, "--good/--no-good",
                                      help="Train on defect-free images too (--no-good: defective images only)."),
    vflip: bool = typer.Option(False, "--vflip", help="Also flip vertically (textures, not oriented objects)."),
    rotate90: bool = typer.Option(False, "--rotate90", help="Also rotate by multiples of 90 degrees."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    from_run: Path | None = typer.Option(None, "--from-run",
                                         help="Repeat a run: every setting from its run.json (DS may be given to "
                                              "point at the data elsewhere)."),
) -> None:
    """Train one model; writes run.json (every setting, classes, split), best.pt and checkpoints.

    Runs on the GPU when there is one; on several GPUs or processes under `accelerate launch` or `torchrun`.

    Example: defectspectrum data split ds_mvtec --rule first-k --k 5

    Example: defectspectrum seg train ds_mvtec --object pill --model segformer-mit-b0 --out runs/pill_b0

    Example: defectspectrum seg train ds_all --labels global --model deeplabv3plus-r18 --out runs/all

    Example: defectspectrum seg train --out runs/pill_b0 --resume

    Example: defectspectrum seg train --from-run runs/pill_b0/run.json --out runs/pill_b0_again
    """
    require_seg_extra()
    from defectspectrum.seg.run import RunConfig, read_run
    from defectspectrum.seg.train import TrainingStopped, train

    previous = None
    if resume or from_run is not None:
        flag, allowed = ("--resume", {"out", "resume"}) if resume else ("--from-run", {"out", "from_run", "ds"})
        ignored = options_given(ctx, allowed)
        if ignored:
            raise InputError(f"{flag} takes every setting from run.json; drop {', '.join(ignored)} "
                             "(or start a new run with the settings you want)")
    if resume:
        config = read_run(out).config
    elif from_run is not None:
        previous = read_run(from_run)
        config = previous.config
        if ds is not None:
            config = config.replace(data=str(require_folder(ds).absolute()))
        elif not Path(config.data).is_dir():
            raise InputError(f"{from_run}: its data folder {config.data} is not there; give the DS folder as "
                             "the first argument to point at where it is now")
    else:
        if ds is None or model is None:
            raise InputError("give the DS folder and --model (or --resume / --from-run)")
        config = RunConfig(
            data=str(require_folder(ds).absolute()), model=model,
            objects=tuple(parse_csv(objects) or ()) or None, labels=labels, steps=steps, batch_size=batch_size,
            crop_size=crop_size, lr=lr, optimizer=optimizer, val_every=min(val_every, steps),
            dice_weight=dice_weight,
            class_weights="auto" if class_weights == "auto" else _float_list(class_weights, "--class-weights"),
            synthetic=synthetic, weights=str(weights.absolute()) if weights else None,
            mixed_precision=mixed_precision, num_workers=workers, seed=seed, vflip=vflip, rotate90=rotate90,
            include_good=include_good)
    from defectspectrum.seg.models.registry import model_info

    model_info(config.model)  # an unknown name is an error before any data is read
    try:
        info = train(config, out, resume=resume, on_event=_on_event).info
    except TrainingStopped as stopped:
        say(("stopped", "yellow"), f" {str(stopped).removeprefix('stopped ')}")
        raise typer.Exit(130) from None
    if previous is not None and previous.data.get("train_digest") != info.data.get("train_digest"):
        say(("warning:", "yellow"), f" the training split differs from the one of {from_run} (the data or its "
            "splits changed); the scores are not comparable")
    best = info.results.get("best") or {}
    if best.get("mIoU") is not None:
        say(f"best val mIoU {best['mIoU']:.2f} at step {best['step']}")
    wrote(out, ": run.json, best.pt, history.jsonl, checkpoints/")


@seg_app.command("eval")
@friendly
def eval_command(
    run: Path = typer.Argument(..., readable=False, help="A run folder written by `seg train`."),
    ds: Path = typer.Argument(..., readable=False, help="The DS folder to score on."),
    split: str = typer.Option("val", "--split", help="Split to score (all: every sample)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the scores as JSON here."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the confusion-matrix plot (PNG) here."),
    tile: int | None = typer.Option(None, "--tile", min=16,
                                    help="Tile size for large images (default: the training crop)."),
    weights: str = typer.Option("best", "--weights", help="best or last."),
) -> None:
    """Score a run with mmseg-exact mIoU: per-class IoU/Acc, aAcc, mAcc, confusion matrix.

    Example: defectspectrum seg eval runs/pill_b0 ds_mvtec --split val --json scores.json --plot cm.png
    """
    require_seg_extra()
    from defectspectrum.data.dsfolder import index_files
    from defectspectrum.io import write_json_atomic
    from defectspectrum.seg.evaluate import eval_dataset, load_run
    from defectspectrum.seg.plots import write_confusion_png
    from defectspectrum.seg.run import RUN_FILES
    from defectspectrum.staging import check_report_path

    if weights not in ("best", "last"):
        raise InputError(f"--weights {weights!r}: choose best or last")
    run_dir, data = require_folder(run, "the run folder"), require_folder(ds)
    for path in (json_path, plot):
        if path is not None:  # never over the data set's or the run's own files
            check_report_path(path, data, index_files(data))
            check_report_path(path, run_dir, RUN_FILES)
    loaded = load_run(run_dir, which=weights)
    result, matrix, dataset = eval_dataset(loaded, data, None if split == "all" else split,
                                           tile=-1 if tile is None else tile)
    trained_on = set(loaded.info.data.get("train_ids") or []) & {s.id for s in dataset.samples}
    if trained_on and loaded.info.config.data == str(data.absolute()):
        say(("warning:", "yellow"), f" {len(trained_on)} of the {len(dataset)} scored images were training images "
            "of this run (the splits changed since); the scores are optimistic")
    say(f"{len(dataset)} images, {loaded.info.labels.num_classes} classes: mIoU {result.mIoU:.2f}  "
        f"aAcc {result.aAcc:.2f}  mAcc {result.mAcc:.2f}")
    for entry in result.to_json()["classes"]:
        iou = "  n/a" if entry["IoU"] is None else f"{entry['IoU']:6.2f}"
        acc = "  n/a" if entry["Acc"] is None else f"{entry['Acc']:6.2f}"
        say(f"  {entry['name']:30} IoU {iou}  Acc {acc}")
    if json_path is not None:
        write_json_atomic(json_path, {**result.to_json(), "split": split,
                                      "images": len(dataset), "run": str(run), "data": str(ds)})
        wrote(json_path)
    if plot is not None:
        write_confusion_png(plot, matrix, list(loaded.info.labels.names))
        wrote(plot)


@seg_app.command("predict")
@friendly
def predict_command(
    run: Path = typer.Argument(..., readable=False, help="A run folder (with --runtime onnx: an .onnx file "
                               "written by `seg export`)."),
    source: Path = typer.Argument(..., readable=False, help="A DS folder or a folder of images."),
    out: Path = typer.Argument(..., help="The DS folder of predicted masks to create."),
    object_name: str | None = typer.Option(None, "--object", help="A folder of images: the object they show; a DS "
                                           "folder: predict only this object (default: every trained one)."),
    split: str | None = typer.Option(None, "--split", help="A DS folder: predict only this split (e.g. val)."),
    runtime: str = typer.Option("torch", "--runtime", help="torch or onnx (onnxruntime, CPU)."),
    tile: int | None = typer.Option(None, "--tile", min=16,
                                    help="Tile size for large images (default: the training crop)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it is a DS folder."),
    overlays: bool = typer.Option(True, "--overlays/--no-overlays", help="Also draw the predictions."),
) -> None:
    """Predict masks; writes a DS folder with the same ids and class maps (qc and data show read it).

    Images larger than the training crop are predicted in overlapping tiles (a 10 px pit in 4000 px stays).

    Example: defectspectrum seg predict runs/pill_b0 ds_mvtec pred_pill --split val

    Example: defectspectrum seg predict runs/pill_b0 new_shots/ pred_shots --object pill

    Example: defectspectrum seg predict pill.onnx new_shots/ pred_shots --runtime onnx --object pill
    """
    from defectspectrum.seg.predict import predict_to_ds

    if runtime == "onnx":
        require_seg_extra(("onnxruntime",))
        from defectspectrum.seg.onnx_export import OnnxPredictor, read_sidecar

        if run.is_dir():
            raise InputError(f"{run}: is a folder; with --runtime onnx give the .onnx file `seg export` wrote")
        onnx_path = run
        sidecar = read_sidecar(onnx_path)
        if sidecar.labels is None:
            raise InputError(f"{onnx_path}: its sidecar names classes but no objects; export it with `seg export`")
        predictor: Any = OnnxPredictor(onnx_path, tile=tile if tile is not None else sidecar.tile)
        labels = sidecar.labels
    elif runtime == "torch":
        require_seg_extra()
        from defectspectrum.seg.evaluate import load_run

        loaded = load_run(require_folder(run, "the run folder"))
        predictor, labels = loaded.predictor(-1 if tile is None else tile), loaded.info.labels
    else:
        raise InputError(f"--runtime {runtime!r}: choose torch or onnx")
    folder = predict_to_ds(predictor, labels, source, out, object_name=object_name, split=split, overwrite=overwrite,
                           overlays=overlays, info={"run": str(Path(run).absolute()), "runtime": runtime,
                                                    "tile": tile})
    wrote(out, f": {len(folder)} predicted masks")


@seg_app.command("export")
@friendly
def export_command(
    run: Path = typer.Argument(..., readable=False, help="A run folder written by `seg train`."),
    onnx: Path = typer.Option(..., "--onnx", help="The .onnx file to write (its preprocessing goes beside it)."),
    size: int | None = typer.Option(None, "--size", min=16, help="Example input side, and the input size of a "
                                    "model that exports at a fixed size only (default: the training crop)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Export the best weights to ONNX with a sidecar JSON of preprocessing and classes.

    Example: defectspectrum seg export runs/pill_b0 --onnx pill.onnx
    """
    require_seg_extra(("torch", "onnx", "onnxruntime"))
    from defectspectrum.seg.evaluate import load_run
    from defectspectrum.seg.onnx_export import export_onnx

    loaded = load_run(require_folder(run, "the run folder"), device="cpu")
    crop = loaded.info.config.crop_size
    written = export_onnx(loaded.model, onnx, preprocess=loaded.info.preprocess, labels=loaded.info.labels,
                          size=size or crop, tile=crop, overwrite=overwrite)
    shape = "any input size" if written.policy == "dynamic" else f"policy {written.policy}, size {written.size}"
    say(f"opset {written.opset}, {shape}; onnxruntime vs torch: max |logit difference| {written.max_abs_diff:.1e}")
    wrote(written.path)
    wrote(written.sidecar, ": preprocessing, classes, input size, checksum")


def _study_base(steps: int, batch_size: int, crop_size: int, lr: float, val_every: int | None, workers: int,
                seed: int, **extra: Any) -> Any:
    from defectspectrum.seg.run import RunConfig

    return RunConfig(data="", model="unet-small", steps=steps, batch_size=batch_size, crop_size=crop_size, lr=lr,
                     val_every=val_every or steps, num_workers=workers, seed=seed, **extra)


def _say_cell(cell: Any, number: int, total: int) -> None:
    what = f"{cell.row} synthetic pairs" if cell.column == "mIoU" else f"{cell.row} on {cell.column}"
    say(f"[{number}/{total}] {what}, seed {cell.seed}")


def _write_study_report(out: Path, study_json: Path, plot: Path | None, title: str) -> Path:
    from defectspectrum.data.dsfolder import DSFolder
    from defectspectrum.report.sections import ReportContext, build_report, get_sections
    from defectspectrum.seg.report_section import SEG_SECTION
    from defectspectrum.seg.study import read_study

    study = read_study(study_json)
    first = study["results"][0]
    from defectspectrum.seg.run import read_run

    folder = DSFolder.open(Path(read_run(Path(first["run"])).config.data))
    html = out / "report.html"
    context = ReportContext(folder, html=html, extra={"seg_study": study, "seg_study_plot": plot})
    report, _ = build_report(context, [*get_sections(["overview"]), SEG_SECTION], title)
    report.write(html)
    return html


@seg_app.command("benchmark")
@friendly
def benchmark_command(
    ds: list[Path] = typer.Argument(..., readable=False, help="One or more DS folders (with train/val splits)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the runs, the tables and the report."),
    models: str = typer.Option("all", "--models", help="Comma-separated model names, or all."),
    seeds: int = typer.Option(3, "--seeds", help="Runs per cell (seeds 0..N-1 added to --seed)."),
    scope: str = typer.Option("object", "--scope", help="object: one model per object (columns = objects); "
                              "global: one model per data set over all its objects (columns = data sets)."),
    objects: str | None = typer.Option(None, "--object", help="Only these objects, comma-separated."),
    steps: int = typer.Option(2000, "--steps", help="Training iterations per run."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Images per step."),
    crop_size: int = typer.Option(256, "--crop-size", help="Square training crops."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate."),
    val_every: int | None = typer.Option(None, "--val-every", help="Validate every N steps (default: at the end)."),
    pick: str = typer.Option("last", "--pick", help="Score of the last validation (last) or the best one (best)."),
    workers: int = typer.Option(2, "--workers", "-j", help="Data loader processes."),
    seed: int = typer.Option(0, "--seed", help="First seed."),
    resume: bool = typer.Option(False, "--resume", help="Keep finished runs in OUT and continue the others."),
) -> None:
    """Train a grid of models and write a Table-2-style table (mean ± std over seeds).

    Writes OUT/benchmark.json, OUT/table.md, OUT/table.csv, OUT/report.html and OUT/runs/<model>/<column>/seed<k>/.

    Example: defectspectrum seg benchmark ds_sd900 --models all --seeds 3 --steps 1000 --out bench_sd900

    Example: defectspectrum seg benchmark ds_mvtec --object pill,zipper --models unet-small,bisenetv2 --out bench

    Example: defectspectrum seg benchmark ds_sd900 ds_mt --scope global --models all --seeds 1 --out bench_real
    """
    require_seg_extra()
    from defectspectrum.seg.models.registry import model_info, model_names
    from defectspectrum.seg.study import benchmark_cells, build_table, run_grid, write_study

    names = model_names() if models == "all" else parse_csv(models) or []
    for name in names:
        model_info(name)
    base = _study_base(steps, batch_size, crop_size, lr, val_every, workers, seed)
    cells = benchmark_cells([require_folder(path) for path in ds], names, seeds, base, scope, parse_csv(objects))
    results = run_grid(cells, out, resume=resume, pick=pick, on_cell=_say_cell, on_event=_on_event)
    table = build_table(results, "model")
    paths = write_study(out, "benchmark", results, table,
                        {"steps": steps, "batch_size": batch_size, "crop_size": crop_size, "lr": lr, "seeds": seeds,
                         "scope": scope, "pick": pick, "data": [str(p) for p in ds]})
    for line in table.markdown().splitlines():
        say(line)
    for path in paths.values():
        wrote(path)
    wrote(_write_study_report(out, paths["json"], None, "Segmentation benchmark"))


@seg_app.command("aug-study")
@friendly
def aug_study_command(
    ds: Path = typer.Argument(..., readable=False, help="The real DS folder (train/val splits)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="A DS folder of synthetic pairs, same objects/classes."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the runs, the table, the plot and the report."),
    ratios: str = typer.Option("0,20,50,100,200,300", "--ratios",
                               help="Synthetic pairs added, in percent of the real training pairs."),
    model: str = typer.Option("deeplabv3plus-r18", "--model", "-m", help="Model name."),
    objects: str | None = typer.Option(None, "--object", help="Objects to train on (default all)."),
    labels: str = typer.Option("object", "--labels", help="object or global (see `seg train`)."),
    seeds: int = typer.Option(1, "--seeds", help="Runs per ratio."),
    steps: int = typer.Option(2000, "--steps", help="Training iterations per run: the same budget for every ratio."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Images per step."),
    crop_size: int = typer.Option(256, "--crop-size", help="Square training crops."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate."),
    pick: str = typer.Option("last", "--pick", help="last or best validation score."),
    workers: int = typer.Option(2, "--workers", "-j", help="Data loader processes."),
    seed: int = typer.Option(0, "--seed", help="First seed."),
    resume: bool = typer.Option(False, "--resume", help="Keep finished runs in OUT and continue the others."),
) -> None:
    """The synthetic-data study (paper Table 3 / Fig. 9): real only vs real + p% synthetic pairs.

    Synthetic samples inside DS itself are left out of every run; only --synthetic adds pairs.

    Example: defectspectrum seg aug-study ds_mvtec --object pill --synthetic gen_pill --ratios 0,20,100,300 --out aug
    """
    require_seg_extra()
    from defectspectrum.seg.models.registry import model_info
    from defectspectrum.seg.plots import write_study_png
    from defectspectrum.seg.study import aug_study_cells, build_table, parse_ratios, run_grid, write_study

    model_info(model)
    chosen = tuple(parse_csv(objects) or ()) or None
    base = _study_base(steps, batch_size, crop_size, lr, None, workers, seed, synthetic="exclude").replace(
        model=model, objects=chosen, labels=labels)
    cells = aug_study_cells(require_folder(ds), require_folder(synthetic, "the synthetic DS folder"),
                            parse_ratios(ratios), seeds, base)
    results = run_grid(cells, out, resume=resume, pick=pick, on_cell=_say_cell, on_event=_on_event)
    table = build_table(results, "synthetic")
    paths = write_study(out, "aug-study", results, table,
                        {"steps": steps, "batch_size": batch_size, "model": model, "seeds": seeds, "pick": pick,
                         "data": str(ds), "synthetic": str(synthetic)})
    plot = out / "mIoU_vs_ratio.png"
    write_study_png(plot, results)
    for line in table.markdown().splitlines():
        say(line)
    for path in [*paths.values(), plot]:
        wrote(path)
    wrote(_write_study_report(out, paths["json"], plot, "Synthetic-data study"))
