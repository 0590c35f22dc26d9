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


def check_models(names: list[str] | None) -> list[str]:
    """The model names to evaluate (default every baseline, repeats dropped): baselines, and run folders or
    checkpoints of `click train` (checked to exist); one line for the shipped default (not there yet) or an
    unknown name."""
    chosen: list[str] = []
    for name in names or list(BASELINE_NAMES):
        if name in chosen:
            continue
        if name in BASELINE_NAMES:
            chosen.append(name)
            continue
        if name == "default":
            raise InputError("--model default: the shipped default Defect-Click model is not there yet; give a "
                             f"run folder of `click train`, or --model {' / --model '.join(BASELINE_NAMES)}")
        if is_model_path(name):
            path = Path(name)
            if not path.exists():
                raise InputError(f"--model {name}: not found; give a run folder of `click train` or its "
                                 f"checkpoints/last.pt, or --model {' / --model '.join(BASELINE_NAMES)}")
            chosen.append(name)
            continue
        raise InputError(f"--model {name!r}: unknown model; choose {', '.join(BASELINE_NAMES)} "
                         "or a run folder of `click train`")
    return chosen


def make_segmenter(name: str) -> Any:
    """A baseline by name, else the learned model of a run folder or checkpoint."""
    if name in BASELINE_NAMES:
        from defectspectrum.click.baselines import make_baseline

        return make_baseline(name)
    from defectspectrum.click.predictor import load_predictor

    return load_predictor(Path(name))


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _say_row(label: str, metrics: dict[str, Any]) -> None:
    cells = [_cell(metrics[key], 3 if key.startswith("IoU") else 2) for key in _COLUMNS]
    say(f"{label:22} " + " ".join(f"{cell:>7}" for cell in cells))


@click_app.command("eval")
@friendly
def eval_command(
    data: Path = typer.Argument(..., readable=False, help="The DS folder with ground-truth masks."),
    models: list[str] | None = typer.Option(None, "--model", "-m", help="grabcut, random-walker or a run folder "
                                            "of click train; repeat it for several (default both baselines)."),
    split: str | None = typer.Option(None, "--split", help="Only this split (e.g. val; default every sample)."),
    objects: str | None = typer.Option(None, "--object", help="Only these DS objects (products), comma-separated."),
    max_clicks: int = typer.Option(20, "--max-clicks", min=1, max=100, help="Clicks per defect before giving up."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N defect objects, evenly spaced through "
                                     "the selection (a folder sorted by defect type is sampled across its types)."),
    min_area: int = typer.Option(0, "--min-area", min=0, help="Skip defect regions of fewer pixels (specks)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the metrics, settings and every object's "
                                          "IoU curve as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="Write mean IoU against clicks, a line per model, as PNG."),
) -> None:
    """Evaluate click segmenters by the NoC protocol: a simulated user clicks each defect until it is segmented.

    Each 8-connected region of each defect class is one object; each click goes to the centre of the largest error.

    NoC85/NoC90: mean clicks to reach IoU 0.85/0.90 (max-clicks if never); NoF: objects that never reach it.

    IoU@k: mean IoU after k clicks. A thin row repeats them over objects at most 3 px wide (1-2 px scratches).

    Example: defectspectrum click eval ds_mvtec --model grabcut --model random-walker --split val --limit 100

    Example: defectspectrum click eval ds --object capsule --max-clicks 10 --json noc.json --plot noc.png

    Example: defectspectrum click eval ds --model runs/click --model grabcut --split val
    """
    from defectspectrum.click.clicks import CLICK_RADIUS
    from defectspectrum.click.noc import THRESHOLDS, evaluate
    from defectspectrum.click.objects import THIN_WIDTH, folder_instances, spread
    from defectspectrum.data.dsfolder import select_samples
    from defectspectrum.io import write_json_atomic
    from defectspectrum.progress import track

    names = check_models(models)
    folder = open_ds(data, what="the DS folder")
    check_report_outputs([json_path, plot], folder.root)
    chosen = parse_csv(objects)
    samples = select_samples(folder, split, chosen)
    found = folder_instances(folder, samples, min_area)
    if not found:
        bigger = f" of at least {min_area} px" if min_area else ""
        raise InputError(f"{folder.root}: the {len(samples)} selected sample(s) hold no defect regions{bigger}; "
                         "choose other samples with --split/--object")
    items = spread(found, limit)
    segmenters = {name: make_segmenter(name) for name in names}
    results = evaluate(segmenters, track(items, "clicking objects"),
                       lambda instance: folder.load_image(folder[str(instance.sample_id)]), max_clicks)
    thin_count = sum(instance.thin for instance in items)
    say(f"{len(items)} object(s) of {len(samples)} sample(s) ({thin_count} thin), up to {max_clicks} clicks each")
    say(f"{'model':22} " + " ".join(f"{column:>7}" for column in _COLUMNS))
    table = {name: result.to_json() for name, result in results.items()}
    for name, metrics in table.items():
        _say_row(name, metrics)
        if "thin" in metrics:
            _say_row(f"{name} thin", metrics["thin"])
    if json_path is not None:
        settings = {"data": str(data), "split": split, "object": chosen, "max_clicks": max_clicks, "limit": limit,
                    "min_area": min_area, "click_radius": CLICK_RADIUS, "thresholds": list(THRESHOLDS),
                    "thin_width": THIN_WIDTH, "objects_found": len(found)}
        per_object = [{"sample": instance.sample_id, "class": instance.class_name, "bbox": list(instance.bbox),
                       "area": instance.area, "width": round(instance.width, 3), "thin": instance.thin,
                       "ious": {name: [round(v, 4) for v in results[name].runs[i].ious] for name in results}}
                      for i, instance in enumerate(items)]
        write_json_atomic(json_path, {"settings": settings, "models": table, "instances": per_object})
        wrote(json_path)
    if plot is not None:
        from defectspectrum.click.plots import write_noc_png

        wrote(write_noc_png(plot, results, f"{folder.root.name}: {len(items)} objects"))


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
    lr: float = typer.Option(3e-4, "--lr", help="AdamW learning rate."),
    bce_weight: float = typer.Option(1.0, "--bce-weight", min=0.0, help="Weight of binary cross-entropy."),
    dice_weight: float = typer.Option(1.0, "--dice-weight", min=0.0, help="Weight of the dice loss."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the data, crops and clicks."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out with its own settings."),
) -> None:
    """Train the Defect-Click model on a DS folder: multi-level crops, clicks simulated from its own errors.

    Loss: BCE + dice (1:1 by default, the paper's mask:dice of 2:5:5); AdamW; Ctrl-C saves a checkpoint.

    Example: defectspectrum click train ds --out runs/click --steps 2000 --batch-size 8 --crop-size 256

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
        config = ClickTrainConfig(data=str(data), objects=tuple(chosen) if chosen else None, steps=steps,
                                  batch_size=batch_size, crop_size=crop_size, scale_range=(low, high),
                                  max_extra_clicks=max_extra_clicks, lr=lr, bce_weight=bce_weight,
                                  dice_weight=dice_weight, seed=seed, checkpoint_every=checkpoint_every,
                                  model=ClickModelConfig(encoder, width))
    run = train_click(config, out, resume=resume)
    results = run.info["results"]
    history = results.get("history") or [{"loss": float("nan")}]
    say(f"trained {results['last_step']} steps; last loss {history[-1]['loss']:.4f}; "
        f"{results['params']:,} parameters ({results['state_bytes'] / 1e6:.1f} MB)")
    wrote(out)


@click_app.command("predict")
@friendly
def predict_command(
    image: Path = typer.Argument(..., readable=False, help="The image to segment."),
    model: Path = typer.Option(..., "--model", help="A run folder of click train, or its checkpoint."),
    clicks: list[str] = typer.Option(..., "--click", help="x,y,+ or x,y,- (column, row from 0); repeat, in order."),
    out: Path = typer.Option(..., "--out", help="The mask PNG to write (0 background, 255 defect)."),
    start: Path | None = typer.Option(None, "--mask", help="Start from this mask (fix it with clicks)."),
) -> None:
    """Segment one defect of an image from clicks, without a GUI; writes a 0/255 mask PNG.

    Example: defectspectrum click predict part.png --model runs/click --click 120,80,+ --click 60,40,- --out m.png

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
    session = ClickSession(load_predictor(model), pixels, initial)
    for click in parsed:
        session.add_click(click.x, click.y, click.positive)
    mask = session.mask
    save_png_atomic(np.where(mask, 255, 0).astype(np.uint8), out)
    wrote(out, f" ({int(mask.sum())} defect pixels after {len(parsed)} click(s))")
