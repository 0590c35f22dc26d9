"""`defectspectrum click ...`: Defect-Click, interactive segmentation from clicks, and its NoC evaluation.

Thin typer commands over `click.objects`, `click.noc` and `click.baselines`; no torch anywhere (the
learned model comes next). Every input is checked before any object is clicked.
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


def check_models(names: list[str] | None) -> list[str]:
    """The model names to evaluate (default every baseline, repeats dropped); one line for a name that is
    not a baseline, the learned model's name or a checkpoint saying plainly that it is not built yet."""
    chosen: list[str] = []
    for name in names or list(BASELINE_NAMES):
        if name in BASELINE_NAMES:
            if name not in chosen:
                chosen.append(name)
            continue
        if name == "default" or "/" in name or "\\" in name or name.lower().endswith(_CHECKPOINT_SUFFIXES) \
                or Path(name).exists():
            raise InputError(f"--model {name}: the learned Defect-Click model is not built yet; evaluate the "
                             f"baselines with --model {' / --model '.join(BASELINE_NAMES)}")
        raise InputError(f"--model {name!r}: unknown model; choose {', '.join(BASELINE_NAMES)} "
                         f"(the learned model is not built yet)")
    return chosen


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
    models: list[str] | None = typer.Option(None, "--model", "-m", help="grabcut or random-walker; repeat it for "
                                            "several (default both). The learned model comes next."),
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
    """
    from defectspectrum.click.baselines import make_baseline
    from defectspectrum.click.clicks import CLICK_RADIUS
    from defectspectrum.click.noc import THRESHOLDS, evaluate
    from defectspectrum.click.objects import THIN_WIDTH, folder_instances, select_samples, spread
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
    segmenters = {name: make_baseline(name) for name in names}
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
