"""`defectspectrum qc ...`: quality-control rules turn masks into accept/reject verdicts.

Thin typer commands over `qc.rules`, `qc.simulate` and `qc.sweep`; no torch anywhere. Every input
is checked (rules against the data's class maps, truth against prediction) before anything is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from defectspectrum.cli_support import check_report_outputs, friendly, parse_csv, say, wrote
from defectspectrum.data.cli import open_ds
from defectspectrum.errors import InputError

qc_app = typer.Typer(help="Quality-control simulation: factory rules turn defect masks into accept/reject verdicts.",
                     no_args_is_help=True)

MAX_SWEEP_VALUES = 10_000

RULES_HELP = "The rules file (YAML; see configs/qc/ and `qc rules --help`)."


def _rules_option() -> Any:
    return typer.Option(..., "--rules", "-r", readable=False, help=RULES_HELP)


def _truth_option(help: str = "The DS folder with ground-truth masks.") -> Any:
    return typer.Option(..., "--truth", "-t", readable=False, help=help)


def _pred_option(help: str = "The DS folder of predicted masks (as `seg predict` writes it).") -> Any:
    return typer.Option(..., "--pred", "-p", readable=False, help=help)


def _split_option() -> Any:
    return typer.Option(None, "--split", help="Only this split (e.g. val; default every sample).")


def _object_option() -> Any:
    return typer.Option(None, "--object", help="Only these objects, comma-separated.")


def _open_pair(truth: Path, pred: Path) -> tuple[Any, Any]:
    """The truth and the prediction DS folders (a missing one is one line naming which)."""
    return open_ds(truth, what="the truth DS folder"), open_ds(pred, what="the prediction DS folder")


def _policies(rules_path: Path, folder: Any, objects: list[str] | None) -> dict[str, Any]:
    """The rules file's policies for `objects` (None: all) of `folder`, every name checked against it."""
    from defectspectrum.qc.rules import load_rules

    return load_rules(rules_path).policies(folder.objects, str(folder.root), objects)


def _say_rates(name: str, counts: Any) -> None:
    from defectspectrum.qc.rates import percent

    say(f"{name:20} recall {percent(counts.recall):>6}  FPR {percent(counts.fpr):>6}  precision "
        f"{percent(counts.precision):>6}  TP {counts.tp} FN {counts.fn} FP {counts.fp} TN {counts.tn}")


@qc_app.command("rules")
@friendly
def rules_command(
    rules_path: Path = typer.Argument(..., readable=False, help="The rules file to check."),
    ds: Path | None = typer.Argument(None, readable=False, help="A DS folder to check the class names against."),
) -> None:
    """Check a rules file (and its class names against a DS folder) and print it in words.

    Per object: forbidden classes, limits for minor ones (max_area, max_total_area, max_count), accept.

    Also other_classes (reject or accept) and min_region_area (smaller regions are specks, ignored).

    Areas are px, or "N mm2" with pixel_size_mm. Limits are inclusive: max_area 4799 rejects 4800 px.

    configs/qc/example_product.yaml documents every option.

    Example: defectspectrum qc rules configs/qc/pill.yaml ds_mvtec
    """
    from defectspectrum.qc.report_section import policy_lines
    from defectspectrum.qc.rules import load_rules

    rules = load_rules(rules_path)
    if ds is None:
        for name in rules.objects:
            say(f"{name}: {', '.join(rules.objects[name].named_classes) or 'no classes named'}")
        if rules.default is not None:
            say(f"other objects: other classes {rules.default.other_classes}")
        say(f"{rules_path}: valid; pass a DS folder to check its class names")
        return
    folder = open_ds(ds, what="the DS folder")
    covered = None if rules.default is not None else [name for name in folder.objects if name in rules.objects]
    policies = rules.policies(folder.objects, str(folder.root), covered)
    for name, policy in policies.items():
        say((name, "bold"))
        for line in policy_lines(policy):
            say(f"  {line}")
    say(f"{rules_path}: valid for {folder.root} ({len(policies)} object(s))")


@qc_app.command("simulate")
@friendly
def simulate_command(
    rules_path: Path = _rules_option(),
    truth: Path = _truth_option(),
    pred: Path = _pred_option(),
    split: str | None = _split_option(),
    objects: str | None = _object_option(),
    json_path: Path | None = typer.Option(None, "--json", help="Write rates, counts and every verdict as JSON."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write one row per image as CSV."),
    report: Path | None = typer.Option(None, "--report", help="Write an HTML report with the misjudged images."),
) -> None:
    """Judge every image from its true and its predicted mask; print recall, FPR and precision.

    Defective is positive: recall = rejected defective / all defective, FPR = rejected benign / all benign.

    A rate with nothing to divide by is n/a (null in JSON), never 0 or 100.

    Example: defectspectrum qc simulate --rules configs/qc/pill.yaml --truth ds_mvtec --pred pred_pill --split val

    Example: defectspectrum qc simulate -r rules.yaml -t ds -p pred --json qc.json --csv qc.csv --report qc.html
    """
    from defectspectrum.io import write_json_atomic
    from defectspectrum.qc.simulate import measure_pairs, simulate

    truth_folder, pred_folder = _open_pair(truth, pred)
    chosen = parse_csv(objects)
    check_report_outputs([json_path, csv_path, report], truth_folder.root, pred_folder.root)
    policies = _policies(rules_path, truth_folder, chosen)
    measured = measure_pairs(truth_folder, pred_folder, split, chosen)
    result = simulate(measured, policies)
    for name in result.objects:
        _say_rates(name, result.counts(name))
    if len(result.objects) > 1:
        _say_rates("all", result.counts())
    if json_path is not None:
        write_json_atomic(json_path, {"rules": str(rules_path), "truth": str(truth), "pred": str(pred),
                                      "split": split, **result.to_json()})
        wrote(json_path)
    if csv_path is not None:
        result.write_csv(csv_path)
        wrote(csv_path)
    if report is not None:
        from defectspectrum.qc.report_section import QC_SECTION, QCResult
        from defectspectrum.report.sections import ReportContext, build_report

        context = ReportContext(truth_folder, html=report, extra={"qc": QCResult(
            result, truth_folder, pred_folder, policies, rules_path, split)})
        page, _ = build_report(context, [QC_SECTION], "Quality-control simulation",
                               subtitle=f"{truth} against {pred}")
        page.write(report)
        wrote(report)


@qc_app.command("compare")
@friendly
def compare_command(
    preds: list[Path] = typer.Argument(..., readable=False, help="Two or more DS folders of predicted masks."),
    rules_path: Path = _rules_option(),
    truth: Path = _truth_option(),
    names: str | None = typer.Option(None, "--names", help="A name per prediction, comma-separated (default: "
                                     "the folder names)."),
    split: str | None = _split_option(),
    objects: str | None = _object_option(),
    json_path: Path | None = typer.Option(None, "--json", help="Write the table as JSON."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write the table as CSV."),
) -> None:
    """Several predictions against one truth in one table (the paper's Table 5).

    Example: defectspectrum qc compare pred_coarse pred_refined --names original,refined -r rules.yaml -t ds --split val
    """
    from defectspectrum.io import write_csv_atomic, write_json_atomic
    from defectspectrum.paths import unique_name
    from defectspectrum.qc.rates import RATE_COLUMNS
    from defectspectrum.qc.simulate import measure_pairs, simulate

    labels = parse_csv(names) or []
    if labels and len(labels) != len(preds):
        raise InputError(f"--names gives {len(labels)} name(s) for {len(preds)} prediction folder(s); give one each")
    if not labels:
        taken: set[str] = set()
        for path in preds:
            labels.append(unique_name(Path(path).absolute().name or "pred", taken))
            taken.add(labels[-1])
    truth_folder = open_ds(truth, what="the truth DS folder")
    folders = [open_ds(path, what="the prediction DS folder") for path in preds]
    check_report_outputs([json_path, csv_path], truth_folder.root, *(folder.root for folder in folders))
    chosen = parse_csv(objects)
    policies = _policies(rules_path, truth_folder, chosen)
    measured = [measure_pairs(truth_folder, folder, split, chosen) for folder in folders]  # all checked first
    table = {label: simulate(items, policies).counts() for label, items in zip(labels, measured)}
    for label, counts in table.items():
        _say_rates(label, counts)
    if json_path is not None:
        write_json_atomic(json_path, {"rules": str(rules_path), "truth": str(truth), "split": split,
                                      "predictions": {label: counts.rates_json() for label, counts in table.items()}})
        wrote(json_path)
    if csv_path is not None:
        write_csv_atomic(csv_path, ["name", *RATE_COLUMNS],
                         [[label, *counts.cells()] for label, counts in table.items()])
        wrote(csv_path)


def parse_values(text: str | None, option: str = "--values") -> list[float] | None:
    """`0,100,250` or `start:stop:step` (stop included where a step lands on it) as numbers; None for none."""
    if not text:
        return None
    example = "e.g. 0,100,250 or 0:5000:250"
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if not all(math.isfinite(v) for v in (start, stop, step)) or step <= 0 or stop < start:
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count > MAX_SWEEP_VALUES:
                raise InputError(f"{option} {text!r}: {count} values; at most {MAX_SWEEP_VALUES}, take a larger step")
            values = [start + i * step for i in range(count)]
        else:
            values = [float(part) for part in parse_csv(text) or []]
            if not values or not all(math.isfinite(v) for v in values) or len(values) > MAX_SWEEP_VALUES:
                raise ValueError
    except ValueError:
        raise InputError(f"{option} {text!r}: give numbers, {example}") from None
    if min(values) < 0:
        raise InputError(f"{option} {text!r}: limits are at least 0")
    return values


def _sweep_setup(rules_path: Path, truth: Path, pred: Path, limit: str, class_name: str | None,
                 objects: str | None, split: str | None, outputs: list[Path | None]) -> tuple[Any, Any, Any]:
    from defectspectrum.qc.simulate import measure_pairs
    from defectspectrum.qc.sweep import Knob

    chosen = parse_csv(objects)
    knob = Knob(limit, class_name, tuple(chosen) if chosen else None)
    truth_folder, pred_folder = _open_pair(truth, pred)
    check_report_outputs(outputs, truth_folder.root, pred_folder.root)
    policies = _policies(rules_path, truth_folder, chosen)
    knob.targets(policies)  # an unknown class is an error before the masks are read
    return knob, policies, measure_pairs(truth_folder, pred_folder, split, chosen)


LIMIT_HELP = "The limit to vary: max_area, max_total_area, max_count or min_region_area."


@qc_app.command("sweep")
@friendly
def sweep_command(
    rules_path: Path = _rules_option(),
    truth: Path = _truth_option(),
    pred: Path = _pred_option(),
    limit: str = typer.Option(..., "--limit", help=LIMIT_HELP),
    class_name: str | None = typer.Option(None, "--class", help="The class whose limit varies (none: the objects' "
                                          "min_region_area)."),
    objects: str | None = _object_option(),
    values: str | None = typer.Option(None, "--values", help="Values to try, e.g. 0,100,250 or 0:5000:250 (px; "
                                      "default: every value where a verdict changes)."),
    split: str | None = _split_option(),
    json_path: Path | None = typer.Option(None, "--json", help="Write every point as JSON."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write every point as CSV."),
    plot: Path | None = typer.Option(None, "--plot", help="Write recall against FPR as a PNG."),
) -> None:
    """Vary one limit on the predicted masks (truth judged by the rules as written); recall vs FPR.

    Example: defectspectrum qc sweep -r pill.yaml -t ds -p p --limit max_total_area --class contamination --plot s.png

    Example: defectspectrum qc sweep -r rules.yaml -t ds -p pred --limit min_region_area --values 0:200:10
    """
    from defectspectrum.io import write_csv_atomic, write_json_atomic
    from defectspectrum.qc.plots import write_sweep_png
    from defectspectrum.qc.rates import RATE_COLUMNS, percent
    from defectspectrum.qc.sweep import sweep

    tried = parse_values(values)
    knob, policies, measured = _sweep_setup(rules_path, truth, pred, limit, class_name, objects, split,
                                            [json_path, csv_path, plot])
    points = sweep(measured, policies, knob, tried)
    say(f"{knob.label}: {len(points)} values, {len(measured)} images")
    say(f"{'value':>10}  {'recall':>7}  {'FPR':>7}  {'escapes':>7}  {'false rejects':>13}")
    for point in points:
        c = point.counts
        say(f"{point.value:>10g}  {percent(c.recall):>7}  {percent(c.fpr):>7}  {c.fn:>7}  {c.fp:>13}")
    if json_path is not None:
        write_json_atomic(json_path, {"rules": str(rules_path), "truth": str(truth), "pred": str(pred),
                                      "limit": limit, "class": class_name, "objects": knob.objects, "split": split,
                                      "points": [point.to_json() for point in points]})
        wrote(json_path)
    if csv_path is not None:
        write_csv_atomic(csv_path, ["value", *RATE_COLUMNS], [[f"{p.value:g}", *p.counts.cells()] for p in points])
        wrote(csv_path)
    if plot is not None:
        wrote(write_sweep_png(plot, points, knob.label))


@qc_app.command("calibrate")
@friendly
def calibrate_command(
    rules_path: Path = _rules_option(),
    truth: Path = _truth_option("The validation DS folder (ground truth)."),
    pred: Path = _pred_option("The model's predicted masks of it."),
    limit: str = typer.Option(..., "--limit", help=LIMIT_HELP),
    class_name: str | None = typer.Option(None, "--class", help="The class whose limit is set (none: the objects' "
                                          "min_region_area)."),
    max_escape: float | None = typer.Option(None, "--max-escape", help="Target: at most this % of defective "
                                            "products accepted; the most lenient such value is chosen."),
    max_false_reject: float | None = typer.Option(None, "--max-false-reject", help="Target: at most this % of "
                                                  "benign products rejected; the strictest such value is chosen."),
    confidence: float = typer.Option(0.95, "--confidence", min=0.5, max=0.999,
                                     help="Level of the (Wilson) intervals around the rates."),
    objects: str | None = _object_option(),
    split: str | None = typer.Option("val", "--split", help="The validation split (all: every sample)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the choice and its rates as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the sweep with the chosen value as a PNG."),
) -> None:
    """Choose a limit that meets a target escape or false-reject rate on validation images.

    The rates come with a (Wilson) confidence interval.

    With no defective validation image (for --max-escape) or no benign one (--max-false-reject) it refuses.

    Example: defectspectrum qc calibrate -r pill.yaml -t ds -p pred --limit max_area --class color --max-escape 5
    """
    from defectspectrum.io import write_json_atomic
    from defectspectrum.qc.plots import write_sweep_png
    from defectspectrum.qc.sweep import calibrate, sweep

    if (max_escape is None) == (max_false_reject is None):
        raise InputError("give one target: --max-escape or --max-false-reject (percent)")
    knob, policies, measured = _sweep_setup(rules_path, truth, pred, limit, class_name, objects,
                                            None if split == "all" else split, [json_path, plot])
    points = sweep(measured, policies, knob)
    choice = calibrate(points, knob, max_escape=max_escape, max_false_reject=max_false_reject, confidence=confidence)
    say(choice.summary())
    if json_path is not None:
        write_json_atomic(json_path, {"rules": str(rules_path), "truth": str(truth), "pred": str(pred),
                                      "split": split, **choice.to_json()})
        wrote(json_path)
    if plot is not None:
        wrote(write_sweep_png(plot, points, knob.label, choice))


@qc_app.command("judge")
@friendly
def judge_command(
    pred: Path = typer.Argument(..., readable=False, help="A DS folder of (predicted) masks."),
    rules_path: Path = _rules_option(),
    split: str | None = _split_option(),
    objects: str | None = _object_option(),
    json_path: Path | None = typer.Option(None, "--json", help="Write every verdict as JSON."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write one row per image as CSV."),
) -> None:
    """Verdicts without ground truth, as the line runs them every day: accept or reject, and why.

    Example: defectspectrum seg predict runs/pill shots/ pred_today --object pill

    Example: defectspectrum qc judge pred_today --rules configs/qc/pill.yaml --csv verdicts.csv
    """
    from defectspectrum.io import write_csv_atomic, write_json_atomic
    from defectspectrum.qc.simulate import judge_folder

    folder = open_ds(pred, what="the DS folder")
    check_report_outputs([json_path, csv_path], folder.root)
    chosen = parse_csv(objects)
    policies = _policies(rules_path, folder, chosen)
    verdicts = judge_folder(folder, policies, split, chosen)
    for name in sorted({sample.object for sample, _ in verdicts}):
        mine = [verdict for sample, verdict in verdicts if sample.object == name]
        rejected = sum(verdict.defective for verdict in mine)
        say(f"{name:20} {len(mine)} images: {len(mine) - rejected} accepted, {rejected} rejected")
    if json_path is not None:
        write_json_atomic(json_path, {"rules": str(rules_path), "data": str(pred), "split": split, "images": [
            {"id": sample.id, "object": sample.object, "split": sample.split, **verdict.to_json()}
            for sample, verdict in verdicts]})
        wrote(json_path)
    if csv_path is not None:
        write_csv_atomic(csv_path, ["id", "object", "split", "verdict", "reasons"], [
            [sample.id, sample.object, sample.split or "", verdict.label, verdict.text]
            for sample, verdict in verdicts])
        wrote(csv_path)
