"""`defectspectrum click ...`: Defect-Click, interactive segmentation from clicks, and its NoC evaluation.

Thin typer commands over `click.objects`, `click.noc`, `click.baselines`, `click.train` and
`click.predictor`; torch is imported only by the commands that run a model. Every input is checked
before any object is clicked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from defectspectrum.cli_support import check_report_outputs, friendly, parse_csv, say, wrote
from defectspectrum.data.cli import open_ds
from defectspectrum.errors import InputError

click_app = typer.Typer(help="Defect-Click: segment defects from clicks; evaluate click segmenters by the NoC "
                             "protocol.", no_args_is_help=True)

BASELINE_NAMES = ("grabcut", "random-walker")
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".onnx")
_COLUMNS = ("NoC85", "NoC90", "NoF85", "NoF90", "IoU@1", "IoU@3", "IoU@5", "objects")


def is_model_path(name: str) -> bool:
    """True where `--model` names a run folder or checkpoint file rather than a baseline."""
    return "/" in name or "\\" in name or name.lower().endswith(_CHECKPOINT_SUFFIXES) or Path(name).exists()


def check_models(names: list[str] | None, option: str = "--model", allow_refined: bool = True) -> list[str]:
    """The model names to evaluate (default: the shipped model and both baselines; repeats dropped): baselines,
    `default`, and run folders, checkpoints, weights files or .onnx files (checked to exist), each of the
    learned ones with an optional `+grabcut` refinement where `allow_refined`. Errors name `option`, the
    command-line option the names came from."""
    from defectspectrum.click.baselines import split_refined

    chosen: list[str] = []
    for name in names or ["default", *BASELINE_NAMES]:
        if name in chosen:
            continue
        base, refine = split_refined(name)
        if refine is not None:
            if not allow_refined:
                raise InputError(f"{option} {name}: a refinement (+{refine}) is applied when masks are predicted "
                                 f"and has no weights of its own; give {base}")
            if base in BASELINE_NAMES:
                raise InputError(f"{option} {name}: only a learned model's masks are refined; give default+{refine} "
                                 f"or a run folder with +{refine}")
            chosen.append(check_models([base], option)[0] + f"+{refine}")
            continue
        if name in BASELINE_NAMES or name == "default":
            chosen.append(name)
            continue
        if is_model_path(name):
            if not Path(name).exists():
                raise InputError(f"{option} {name}: not found; give a run folder of `click train`, its "
                                 "checkpoints/last.pt, a .safetensors or .onnx file of `click export`, or default")
            chosen.append(name)
            continue
        raise InputError(f"{option} {name!r}: unknown model; choose default, {', '.join(BASELINE_NAMES)} "
                         "or a run folder of `click train`")
    return chosen


def make_segmenter(name: str) -> Any:
    """A baseline by name, else the learned model of a run folder or checkpoint."""
    if name in BASELINE_NAMES:
        from defectspectrum.click.baselines import make_baseline

        return make_baseline(name)
    from defectspectrum.click.predictor import load_predictor

    return load_predictor(name)


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def model_label(name: str) -> str:
    """A short table label for `--model`: a run folder's name, a file's stem (a run's checkpoint: its run's name),
    with its refinement (`+grabcut`) kept."""
    from defectspectrum.click.baselines import split_refined

    base, refine = split_refined(name)
    if refine is not None:
        return f"{model_label(base)}+{refine}"
    if not is_model_path(name) or name == "default":
        return name
    path = Path(name)
    if path.parent.name == "checkpoints":
        return path.parent.parent.name or path.stem
    label = path.name if path.is_dir() else path.stem
    return label if len(label) <= 20 else label[:19] + "~"


def _say_row(label: str, metrics: dict[str, Any]) -> None:
    cells = [_cell(metrics[key], 3 if key.startswith("IoU") else 2) for key in _COLUMNS]
    say(f"{label:26} " + " ".join(f"{cell:>7}" for cell in cells))


@click_app.command("eval")
@friendly
def eval_command(
    data: Path = typer.Argument(..., readable=False, help="The DS folder with ground-truth masks."),
    models: list[str] | None = typer.Option(None, "--model", "-m", help="default (the shipped model), grabcut, "
                                            "random-walker, a run folder of click train, or a .safetensors/.onnx "
                                            "file; a learned model + grabcut (default+grabcut) has its masks "
                                            "refined by GrabCut; repeat it for several (default: the first three "
                                            "named)."),
    split: str | None = typer.Option(None, "--split", help="Only this split (e.g. val; default every sample)."),
    objects: str | None = typer.Option(None, "--object", help="Only these DS objects (products), comma-separated."),
    max_clicks: int = typer.Option(20, "--max-clicks", min=1, max=100, help="Clicks per defect before giving up."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N defect objects, evenly spaced through "
                                     "the selection (a folder sorted by defect type is sampled across its types)."),
    min_area: int = typer.Option(0, "--min-area", min=0, help="Skip defect regions of fewer pixels (specks)."),
    from_degraded: bool = typer.Option(False, "--from-degraded", help="Also start each object from a flawed mask "
                                       "(IoU 0.7: too much or too little) and count the clicks that fix it."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the metrics, settings and every object's "
                                          "IoU curve as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="Write mean IoU against clicks, a line per model, as PNG."),
    report: Path | None = typer.Option(None, "--report", help="Write an HTML report: the table, the plot and "
                                       "objects being clicked."),
) -> None:
    """Evaluate click segmenters by the NoC protocol: a simulated user clicks each defect until it is segmented.

    Each 8-connected region of each defect class is one object; each click goes to the centre of the largest error.

    NoC85/NoC90: mean clicks to reach IoU 0.85/0.90 (max-clicks if never); NoF: objects that never reach it.

    IoU@k: mean IoU after k clicks. A thin row repeats them over objects at most 3 px wide (1-2 px scratches).

    With --from-degraded a fix row starts each object from a flawed mask of IoU 0.7 instead of an empty one.

    Example: defectspectrum click eval ds_mvtec --model grabcut --model random-walker --split val --limit 100

    Example: defectspectrum click eval ds --object capsule --max-clicks 10 --json noc.json --report noc.html

    Example: defectspectrum click eval ds --model runs/click --model grabcut --split val --from-degraded

    Example: defectspectrum click eval ds --model default --model default+grabcut --model grabcut --split val
    """
    from defectspectrum.click.clicks import CLICK_RADIUS
    from defectspectrum.click.noc import THRESHOLDS
    from defectspectrum.click.objects import THIN_WIDTH, folder_instances, spread
    from defectspectrum.click.report_section import ClickEvaluation
    from defectspectrum.data.dsfolder import select_samples
    from defectspectrum.io import write_json_atomic
    from defectspectrum.progress import track

    names = check_models(models)
    folder = open_ds(data, what="the DS folder")
    check_report_outputs([json_path, plot, report], folder.root)
    chosen = parse_csv(objects)
    samples = select_samples(folder, split, chosen)
    found = folder_instances(folder, samples, min_area)
    if not found:
        bigger = f" of at least {min_area} px" if min_area else ""
        raise InputError(f"{folder.root}: the {len(samples)} selected sample(s) hold no defect regions{bigger}; "
                         "choose other samples with --split/--object")
    items = spread(found, limit)
    segmenters = {name: make_segmenter(name) for name in names}
    evaluation = ClickEvaluation.run(f"{folder.root.name}: {len(items)} objects", folder, items, segmenters,
                                     max_clicks, from_degraded, lambda objects: track(objects, "clicking objects"))
    results = evaluation.results
    thin_count = sum(instance.thin for instance in items)
    say(f"{len(items)} object(s) of {len(samples)} sample(s) ({thin_count} thin), up to {max_clicks} clicks each")
    say(f"{'model':26} " + " ".join(f"{column:>7}" for column in _COLUMNS))
    table = {name: result.to_json() for name, result in results.items()}
    labels = {name: model_label(name) for name in table}
    if len(set(labels.values())) < len(labels):  # two runs of the same name: the full paths tell them apart
        labels = {name: name for name in table}
    for name, metrics in table.items():
        label = labels[name]
        _say_row(label, metrics)
        if "thin" in metrics:
            _say_row(f"{label} thin", metrics["thin"])
        if "degraded" in metrics:
            _say_row(f"{label} fix", metrics["degraded"])
    if json_path is not None:
        settings = {"data": str(data), "split": split, "object": chosen, "max_clicks": max_clicks, "limit": limit,
                    "min_area": min_area, "click_radius": CLICK_RADIUS, "thresholds": list(THRESHOLDS),
                    "thin_width": THIN_WIDTH, "objects_found": len(found),
                    "from_degraded": from_degraded}
        per_object = [{"sample": instance.sample_id, "class": instance.class_name, "bbox": list(instance.bbox),
                       "area": instance.area, "width": round(instance.width, 3), "thin": instance.thin,
                       "ious": {name: [round(v, 4) for v in results[name].runs[i].ious] for name in results}}
                      for i, instance in enumerate(items)]
        write_json_atomic(json_path, {"settings": settings, "models": table, "instances": per_object})
        wrote(json_path)
    if plot is not None:
        from defectspectrum.click.plots import write_noc_png

        labelled = {labels[name]: result for name, result in results.items()}
        wrote(write_noc_png(plot, labelled, f"{folder.root.name}: {len(items)} objects"))
    if report is not None:
        from defectspectrum.click.report_section import CLICK_SECTION
        from defectspectrum.report.sections import ReportContext, build_report

        evaluation.labels = labels
        page, _ = build_report(ReportContext(folder, html=report, extra={"click": evaluation}), [CLICK_SECTION],
                               "Defect-Click evaluation", subtitle=str(folder.root))
        page.write(report)
        wrote(report)


@click_app.command("train")
@friendly
def train_command(
    data: Path = typer.Argument(..., readable=False, help="The DS folder; its train split is used."),
    out: Path = typer.Option(..., "--out", help="The run folder (new, or an existing run with --resume)."),
    objects: str | None = typer.Option(None, "--object", help="Only these DS objects, comma-separated."),
    steps: int = typer.Option(2000, "--steps", min=1, help="Training steps."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Objects per step."),
    crop_size: int = typer.Option(256, "--crop-size", min=32, help="Training crop side in pixels (multiple of 32)."),
    scale_range: str = typer.Option("1,6", "--scale-range", help="Multi-level crops: the image's long side is "
                                    "rescaled to crop-size times a factor drawn in this range."),
    max_extra_clicks: int = typer.Option(3, "--max-extra-clicks", min=0, help="Up to this many clicks simulated "
                                         "from the model's own errors before each training step."),
    encoder: str = typer.Option("mobilenet_v2", "--encoder", help="The smp encoder (built from scratch)."),
    width: float = typer.Option(1.0, "--width", help="Decoder width factor (1: 128..16 channels)."),
    lr: float = typer.Option(3e-4, "--lr", help="AdamW peak learning rate (poly decay after the warm-up)."),
    warmup_steps: int = typer.Option(100, "--warmup-steps", min=0, help="Steps of linear learning-rate warm-up."),
    flawed_starts: float = typer.Option(0.25, "--flawed-starts", min=0.0, max=1.0, help="Share of objects clicked "
                                        "from a flawed mask (too much or too little) rather than an empty one."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Flip, turn, grey and contrast-jitter crops."),
    bce_weight: float = typer.Option(1.0, "--bce-weight", min=0.0, help="Weight of binary cross-entropy."),
    dice_weight: float = typer.Option(1.0, "--dice-weight", min=0.0, help="Weight of the dice loss."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the data, crops and clicks."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    init: str | None = typer.Option(None, "--init", help="Fine-tune: start from these weights (default: the shipped "
                                    "model, a run folder or a .safetensors file); their encoder and width are used."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out with its own settings."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes that cut training crops (e.g. 8 beside a "
                                "GPU); results do not depend on it."),
) -> None:
    """Train the Defect-Click model on a DS folder: multi-level crops, clicks simulated from its own errors.

    Loss: BCE + dice (1:1 by default, the paper's mask:dice of 2:5:5); AdamW; Ctrl-C saves a checkpoint.

    Example: defectspectrum click train ds --out runs/click --steps 2000 --batch-size 8 --crop-size 256

    Example: defectspectrum click train my_ds --out runs/click_mine --init default --steps 500 --lr 1e-4

    Example: defectspectrum click train ds --out runs/click --resume
    """
    from defectspectrum.click.model import ClickModelConfig
    from defectspectrum.click.train import ClickTrainConfig, read_click_run, train_click

    if resume:
        saved = read_click_run(out)["config"]
        try:
            config = ClickTrainConfig(**{**saved, "objects": tuple(saved["objects"]) if saved["objects"] else None,
                                         "scale_range": tuple(saved["scale_range"]),
                                         "model": ClickModelConfig.from_json(saved["model"], str(out))})
        except (TypeError, KeyError) as exc:
            raise InputError(f"{out}: click.json holds unknown settings ({exc}); start a new run") from None
    else:
        low_high = parse_csv(scale_range) or []
        try:
            low, high = (float(v) for v in low_high)
        except ValueError:
            raise InputError(f"--scale-range {scale_range!r}: give two numbers, e.g. 1,6") from None
        chosen = parse_csv(objects)
        model_config = ClickModelConfig(encoder, width)
        if init is not None:
            from defectspectrum.click.model_files import load_click_model

            init = check_models([init], "--init", allow_refined=False)[0]
            if init in BASELINE_NAMES:
                raise InputError(f"--init {init}: a classical baseline has no weights; give default or a run folder")
            model_config = load_click_model(init)[1]
        config = ClickTrainConfig(data=str(data), objects=tuple(chosen) if chosen else None, steps=steps,
                                  batch_size=batch_size, crop_size=crop_size, scale_range=(low, high),
                                  max_extra_clicks=max_extra_clicks, lr=lr, warmup_steps=warmup_steps,
                                  augment=augment, flawed_starts=flawed_starts, bce_weight=bce_weight,
                                  dice_weight=dice_weight, seed=seed, checkpoint_every=checkpoint_every,
                                  model=model_config, init=init)
    run = train_click(config, out, resume=resume, workers=workers)
    results = run.info["results"]
    history = results.get("history") or [{"loss": float("nan")}]
    say(f"trained {results['last_step']} steps; last loss {history[-1]['loss']:.4f}; "
        f"{results['params']:,} parameters ({results['state_bytes'] / 1e6:.1f} MB)")
    wrote(out)


@click_app.command("predict")
@friendly
def predict_command(
    image: Path = typer.Argument(..., readable=False, help="The image to segment."),
    model: str = typer.Option("default", "--model", help="default (shipped), a run folder of click train, or a "
                              ".safetensors/.onnx file of click export; add +grabcut to refine the mask by GrabCut."),
    clicks: list[str] = typer.Option(..., "--click", help="x,y,+ or x,y,- (column, row from 0); repeat, in order."),
    out: Path = typer.Option(..., "--out", help="The mask PNG to write (0 background, 255 defect)."),
    start: Path | None = typer.Option(None, "--mask", help="Start from this mask (fix it with clicks)."),
) -> None:
    """Segment one defect of an image from clicks, without a GUI; writes a 0/255 mask PNG.

    Example: defectspectrum click predict part.png --click 120,80,+ --click 60,40,- --out m.png

    Example: defectspectrum click predict part.png --model runs/click --mask old.png --click 30,30,- --out m.png
    """
    import numpy as np

    from defectspectrum.click.clicks import parse_clicks
    from defectspectrum.click.predictor import load_predictor
    from defectspectrum.click.session import ClickSession
    from defectspectrum.io import read_binary_mask, read_rgb, save_png_atomic

    if out.suffix.lower() != ".png":
        raise InputError(f"--out {out}: the mask is written as PNG; give a name ending in .png")
    pixels = read_rgb(image)
    shape = (int(pixels.shape[0]), int(pixels.shape[1]))
    parsed = parse_clicks(clicks, shape)
    initial = None
    if start is not None:
        initial = read_binary_mask(start)
        if initial.shape != shape:
            raise InputError(f"{start}: mask is {initial.shape[1]}x{initial.shape[0]} but {image} is "
                             f"{shape[1]}x{shape[0]}; give a mask of the image's size")
    session = ClickSession(load_predictor(check_models([model])[0]), pixels, initial)
    for click in parsed:
        session.add_click(click.x, click.y, click.positive)
    mask = session.mask
    save_png_atomic(np.where(mask, 255, 0).astype(np.uint8), out)
    wrote(out, f" ({int(mask.sum())} defect pixels after {len(parsed)} click(s))")


@click_app.command("export")
@friendly
def export_command(
    model: str = typer.Argument(..., help="default, a run folder of click train, its checkpoint or a weights file."),
    weights: Path | None = typer.Option(None, "--weights", help="Write compact float16 weights (.safetensors)."),
    onnx: Path | None = typer.Option(None, "--onnx", help="Write an ONNX model for onnxruntime (and its .json)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files that exist."),
) -> None:
    """Export a Defect-Click model: compact weights to share or ship, or ONNX for onnxruntime.

    The ONNX file takes any image size and is checked against torch in onnxruntime before it is written.

    Example: defectspectrum click export runs/click --weights click.safetensors --onnx click.onnx

    Example: defectspectrum click predict part.png --model click.onnx --click 120,80,+ --out m.png
    """
    from defectspectrum.click.model_files import load_click_model, model_source, save_weights

    if weights is None and onnx is None:
        raise InputError("nothing to write: give --weights FILE.safetensors and/or --onnx FILE.onnx")
    if model.lower().endswith(".onnx"):
        raise InputError(f"{model}: is an ONNX file already; export from a run folder, checkpoint or weights file")
    chosen = check_models([model], "export", allow_refined=False)[0]
    if chosen in BASELINE_NAMES:
        raise InputError(f"{model}: a classical baseline has no weights to export; give default or a run folder")
    net, config = load_click_model(chosen)
    if weights is not None:
        source = model_source(chosen)
        info: dict[str, Any] = {"source": str(source)}
        run_json = source.parent.parent / "click.json"
        if source.suffix == ".pt" and run_json.is_file():
            from defectspectrum.click.train import read_click_run

            run = read_click_run(run_json.parent)
            info = {"config": run.get("config"), "data": run.get("data"),
                    "last_step": run.get("results", {}).get("last_step")}
        wrote(save_weights(net, config, weights, info, overwrite))
    if onnx is not None:
        from defectspectrum.click.onnx_export import export_click_onnx

        result = export_click_onnx(net, config, onnx, overwrite=overwrite)
        wrote(result.path, f" (opset {result.opset}; onnxruntime matches torch to {result.max_abs_diff:.1e})")
