"""The report's `qc` section (`QC_SECTION`): the rules in words, the rates overall and per object, and
the misjudged images (escapes first, then false rejects) with truth and prediction side by side.

It reads `ReportContext.extra["qc"]`, a `QCResult` put there by `qc simulate --report` or the demo
(like the seg section, it is not in the global registry: `defectspectrum report DS` has no prediction).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.draw import class_colors, overlay, shrink, side_by_side
from defectspectrum.io import save_png_atomic
from defectspectrum.paths import safe_name
from defectspectrum.qc.rates import Counts, percent
from defectspectrum.qc.rules import Policy
from defectspectrum.qc.simulate import JudgedImage, Simulation
from defectspectrum.report.html import Report
from defectspectrum.report.sections import FunctionSection, ReportContext, SkipSection

PICTURE_SIDE = 384  # each half of a truth | prediction picture, at most
MAX_PICTURES = 12
OUTCOME_WORDS = {"FN": "escape (defective accepted)", "FP": "false reject (benign rejected)"}


@dataclass
class QCResult:
    """What the section shows: a simulation, the folders it came from and the policies it used."""

    simulation: Simulation
    truth: DSFolder
    pred: DSFolder
    policies: Mapping[str, Policy]
    rules: Path | None = None
    split: str | None = None
    pictures: int = MAX_PICTURES


def policy_lines(policy: Policy) -> list[str]:
    """One object's rules in words, e.g. `hole: forbidden`, `spot: each region <= 300 px`."""
    names = policy.classes
    lines = [f"{names[i]}: forbidden" for i in sorted(policy.forbidden)]
    for index in sorted(policy.limits):
        limit = policy.limits[index]
        parts = []
        if limit.max_area is not None:
            parts.append(f"each region <= {limit.max_area:g} px")
        if limit.max_total_area is not None:
            parts.append(f"total <= {limit.max_total_area:g} px")
        if limit.max_count is not None:
            parts.append(f"at most {limit.max_count} regions")
        if limit.min_region_area is not None:
            parts.append(f"specks < {limit.min_region_area:g} px ignored")
        lines.append(f"{names[index]}: {', '.join(parts)}")
    lines += [f"{names[i]}: accepted at any size" for i in sorted(policy.accept)]
    named = policy.forbidden | set(policy.limits) | policy.accept
    others = [name for i, name in enumerate(names) if i and i not in named]
    if others:
        lines.append(f"{', '.join(others)}: {'rejected' if policy.reject_others else 'accepted'} (other classes)")
    if policy.min_region_area:
        lines.append(f"regions under {policy.min_region_area:g} px are ignored")
    return lines


def _rates_row(name: str, counts: Counts) -> list[object]:
    return [name, counts.defective, counts.benign, counts.tp, counts.fn, counts.fp, counts.tn,
            percent(counts.recall), percent(counts.fpr), percent(counts.precision)]


def _picture(result: QCResult, image: JudgedImage, folder: Path) -> Path:
    sample = image.sample
    colors = class_colors(len(result.truth.classes(sample.object)))
    picture = result.truth.load_image(sample)
    truth_image, truth_mask = shrink(picture, result.truth.load_mask(sample), PICTURE_SIDE)
    pred_image, pred_mask = shrink(picture, result.pred.load_mask(result.pred[sample.id]), PICTURE_SIDE)
    path = folder / f"{image.outcome}_{safe_name(sample.id.replace('/', '_'))}.png"
    save_png_atomic(side_by_side(overlay(truth_image, truth_mask, colors), overlay(pred_image, pred_mask, colors)),
                    path)
    return path


def render_qc(context: ReportContext, report: Report) -> None:
    result: QCResult | None = context.extra.get("qc")
    if result is None:
        raise SkipSection("no QC simulation")
    simulation = result.simulation
    counts = simulation.counts()
    where = f" of the `{result.split}` split" if result.split else ""
    source = f" `{result.rules.name}`" if result.rules else ""
    report.add_text(f"Each of the {len(simulation.images)} images{where} is judged twice by the rules{source}: "
                    "from its ground-truth mask (the true verdict) and from the model's predicted mask. Defective "
                    "is positive: recall is the share of defective products rejected, FPR the share of benign "
                    "products rejected; n/a where there is nothing to divide by.")
    report.add_metrics({"recall %": percent(counts.recall), "FPR %": percent(counts.fpr),
                        "precision %": percent(counts.precision), "escapes": counts.fn, "false rejects": counts.fp})
    rows = [_rates_row(name, simulation.counts(name)) for name in simulation.objects]
    if len(rows) > 1:
        rows.append(_rates_row("all", counts))
    report.add_table(rows, header=["object", "defective", "benign", "TP", "FN", "FP", "TN", "recall %", "FPR %",
                                   "precision %"], caption="Image-level verdicts, truth against prediction")
    rule_rows = [(name, "; ".join(policy_lines(result.policies[name]))) for name in simulation.objects]
    report.add_table(rule_rows, header=["object", "rules (limits are inclusive)"], caption="The rules applied")
    wrong = [image for kind in ("FN", "FP") for image in simulation.images if image.outcome == kind]
    if not wrong:
        report.add_text("No image is misjudged.", kind="note")
        return
    folder = context.asset_dir("qc")
    gallery = []
    for image in wrong[: result.pictures]:
        caption = (f"{image.sample.id}: {OUTCOME_WORDS[image.outcome]}. Truth: {image.truth.text}. "
                   f"Prediction: {image.pred.text}.")
        gallery.append((_picture(result, image, folder), caption))
    more = f" (the first {len(gallery)} of {len(wrong)})" if len(wrong) > len(gallery) else ""
    report.add_text(f"Misjudged images{more}: ground truth left, prediction right.")
    report.add_gallery(gallery)


QC_SECTION = FunctionSection("qc", "Quality control", render_qc)
