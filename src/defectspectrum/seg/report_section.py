"""The report's `seg` section (`SEG_SECTION`): a trained run's scores and predictions, and benchmark /
aug-study tables. It reads what the caller put in `ReportContext.extra` (no torch import here):

- `seg_eval`: `SegEvalResult` (run summary, scores JSON, confusion-matrix PNG, prediction overlays)
- `seg_study`: a study JSON as written by `seg.study.write_study` (+ optional `seg_study_plot` PNG)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectspectrum.report.html import Report
from defectspectrum.report.sections import FunctionSection, ReportContext, SkipSection


@dataclass
class SegEvalResult:
    """What the section shows of one run: settings, scores (`SegScores.to_json()`), pictures."""

    model: str
    settings: dict[str, Any]
    scores: dict[str, Any]
    split: str
    images: int
    confusion_png: Path | None = None
    overlays: Sequence[tuple[Path, str]] = field(default_factory=list)  # (side-by-side PNG, caption)
    predictions: Path | None = None  # the DS folder of predicted masks


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _render_eval(result: SegEvalResult, report: Report) -> None:
    report.add_text(f"Model `{result.model}` trained on the `train` split; scored on the `{result.split}` split "
                    f"({result.images} images) with mmseg's IoUMetric rules: intersections and unions summed per "
                    "class over the whole split, background counted as a class, classes absent from both truth "
                    "and prediction left out of the mean.")
    report.add_metrics({"mIoU": _number(result.scores.get("mIoU")), "aAcc": _number(result.scores.get("aAcc")),
                        "mAcc": _number(result.scores.get("mAcc"))})
    rows = [(c["name"], c["IoU"], c["Acc"]) for c in result.scores.get("classes", [])]
    report.add_table(rows, header=["class", "IoU %", "Acc %"], caption="Per class (a dash: the class is in "
                     "neither truth nor prediction of this split)")
    settings = ", ".join(f"{key} {value}" for key, value in result.settings.items())
    report.add_text(f"Settings: {settings}.", kind="note")
    if result.confusion_png is not None and result.confusion_png.is_file():
        report.add_image(result.confusion_png, caption="Confusion matrix, rows = truth, normalised per row")
    if result.overlays:
        report.add_gallery([(path, caption) for path, caption in result.overlays if Path(path).is_file()])


def _render_study(study: dict[str, Any], plot: Path | None, report: Report) -> None:
    table = study["table"]
    rows, columns = table["rows"], table["columns"]
    many = len(columns) > 1

    def text(entry: dict[str, Any]) -> str:
        if not entry["n"]:
            return "n/a"
        return f"{entry['mean']:.2f}" if entry["n"] == 1 else f"{entry['mean']:.2f} ± {entry['std']:.2f}"

    body = []
    for row in rows:
        line = [row, *(text(table["cells"][f"{row}|{column}"]) for column in columns)]
        if many:
            line.append(text(table["row_means"][row]))
        body.append(line)
    header = [table["row_title"], *columns, *(["mean"] if many else [])]
    settings = study.get("settings", {})
    what = ("Validation mIoU (%) per model and object, mean ± std over seeds" if study["kind"] == "benchmark"
            else "Validation mIoU (%) against the share of synthetic pairs added, at the same training budget")
    report.add_table(body, header=header, caption=f"{what}; {settings.get('steps', '?')} steps per run.")
    if plot is not None and plot.is_file():
        report.add_image(plot, caption="mIoU against the synthetic share (mean ± std over seeds)")


def render_seg(context: ReportContext, report: Report) -> None:
    evaluation = context.extra.get("seg_eval")
    study = context.extra.get("seg_study")
    if evaluation is None and study is None:
        raise SkipSection("no segmentation results")
    if evaluation is not None:
        _render_eval(evaluation, report)
    if study is not None:
        _render_study(study, context.extra.get("seg_study_plot"), report)


# Not in the global registry: `defectspectrum report DS` has no run to show. The demo and the seg
# commands add it to the sections they compose.
SEG_SECTION = FunctionSection("seg", "Segmentation", render_seg)
