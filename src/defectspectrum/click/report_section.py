"""The report's `click` section (`CLICK_SECTION`): the NoC table, mean IoU against clicks, and pictures of
objects being clicked (the object, then the mask after 1, 3 and 5 clicks, with the clicks drawn).

It reads `ReportContext.extra["click"]`, a `ClickEvaluation` put there by `click eval --report` or the demo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from defectspectrum.click.noc import METRIC_KEYS, ModelResult, Segmenter, evaluate
from defectspectrum.click.objects import Instance, spread
from defectspectrum.click.plots import noc_figure
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.io import save_png_atomic
from defectspectrum.report.html import Report
from defectspectrum.report.sections import FunctionSection, ReportContext, SkipSection

PICTURES = 6
PANEL_SIDE = 160
SHOWN_CLICKS = (1, 3, 5)
TRUTH_RGB = (255, 200, 0)
MASK_RGB = (0, 160, 255)
POSITIVE_RGB, NEGATIVE_RGB = (0, 200, 0), (230, 0, 0)


@dataclass
class ClickEvaluation:
    """One `click eval`: the objects, each model's runs (in `evaluate`'s order), their table labels, how to
    load an object's image, and the segmenters (replayed on a few objects for the pictures)."""

    title: str
    items: Sequence[Instance]
    results: Mapping[str, ModelResult]
    labels: Mapping[str, str]
    load_image: Callable[[Instance], np.ndarray]
    segmenters: Mapping[str, Segmenter]

    @classmethod
    def run(cls, title: str, folder: DSFolder, items: Sequence[Instance], segmenters: Mapping[str, Segmenter],
            max_clicks: int, from_degraded: bool = False,
            progress: Callable[[Sequence[Instance]], Iterable[Instance]] | None = None) -> ClickEvaluation:
        """Every segmenter on every object `items` of `folder` (`noc.evaluate`), labelled by their names;
        `progress` wraps the objects for a progress bar."""

        def load_image(instance: Instance) -> np.ndarray:
            return folder.load_image(folder[str(instance.sample_id)])

        results = evaluate(segmenters, progress(items) if progress else items, load_image, max_clicks, from_degraded)
        return cls(title, list(items), results, {name: name for name in results}, load_image, segmenters)


def table_rows(evaluation: ClickEvaluation) -> list[list[Any]]:
    """A row per model, then its thin and fix (from a flawed mask) rows where there are any."""
    rows = []
    for name, result in evaluation.results.items():
        metrics = result.to_json()
        label = evaluation.labels.get(name, name)
        for suffix, values in (("", metrics), (" (thin)", metrics.get("thin")), (" (fix)", metrics.get("degraded"))):
            if values is not None:
                rows.append([label + suffix, *(_cell(values[key]) for key in METRIC_KEYS)])
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.3f}" if value <= 1 else f"{value:.2f}"


def _crop_box(instance: Instance) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the object's box grown by its size, at least 48 px a side, inside the image."""
    x, y, w, h = instance.bbox
    side = max(48, 2 * max(w, h))
    cy, cx = y + h / 2, x + w / 2
    height, width = instance.shape
    y0 = int(min(max(0, cy - side / 2), max(0, height - side)))
    x0 = int(min(max(0, cx - side / 2), max(0, width - side)))
    return y0, min(height, y0 + side), x0, min(width, x0 + side)


def panel(image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], color: tuple[int, int, int],
          clicks: Sequence[Any] = ()) -> np.ndarray:
    """The box of `image` enlarged to PANEL_SIDE, `mask` tinted and outlined in `color`, clicks as dots."""
    y0, y1, x0, x1 = box
    scale = PANEL_SIDE / max(y1 - y0, x1 - x0)
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    crop = np.ascontiguousarray(image[y0:y1, x0:x1, :3])
    out = cv2.resize(crop, size, interpolation=cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA)
    part = cv2.resize(mask[y0:y1, x0:x1].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    tint = np.array(color, np.float32)
    out[part] = (0.55 * out[part] + 0.45 * tint).astype(np.uint8)
    contours, _ = cv2.findContours(part.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, color, 1)
    for click in clicks:
        centre = (int((click.x - x0 + 0.5) * scale), int((click.y - y0 + 0.5) * scale))
        cv2.circle(out, centre, 5, (255, 255, 255), -1, lineType=cv2.LINE_AA)
        cv2.circle(out, centre, 4, POSITIVE_RGB if click.positive else NEGATIVE_RGB, -1, lineType=cv2.LINE_AA)
    return np.asarray(out)


def strip(evaluation: ClickEvaluation, name: str, index: int) -> tuple[np.ndarray, str]:
    """The object `index` and `name`'s masks after SHOWN_CLICKS of its recorded clicks, side by side."""
    instance = evaluation.items[index]
    run = evaluation.results[name].runs[index]
    image = evaluation.load_image(instance)
    truth = instance.mask()
    box = _crop_box(instance)
    panels = [panel(image, truth, box, TRUTH_RGB)]
    mask = np.zeros(truth.shape, bool)
    shown = []
    for k, _click in enumerate(run.clicks, start=1):
        mask = np.asarray(evaluation.segmenters[name].predict(image, tuple(run.clicks[:k]), mask), bool)
        if k in SHOWN_CLICKS:
            panels.append(panel(image, mask, box, MASK_RGB, run.clicks[:k]))
            shown.append(f"{k}: {run.ious[k - 1]:.2f}")
        if k >= SHOWN_CLICKS[-1]:
            break
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate([part for p in panels for part in (p, gap)][:-1], axis=1)
    thin = ", thin" if instance.thin else ""
    caption = (f"{instance.sample_id} / {instance.class_name}{thin}: truth, then the mask after clicks "
               f"(IoU) {', '.join(shown) or 'none needed'}")
    return row, caption


def render_click(context: ReportContext, report: Report) -> None:
    evaluation: ClickEvaluation | None = context.extra.get("click")
    if evaluation is None or not evaluation.items:
        raise SkipSection("no click evaluation")
    report.add_text(
        f"{evaluation.title}: each defect object (an 8-connected region of one class) is clicked by a simulated "
        "user, who puts each click at the centre of the largest error, up to the click budget. NoC85/NoC90: "
        "mean clicks to reach IoU 0.85/0.90; NoF: objects that never do; IoU@k: mean IoU after k clicks. Thin: "
        "objects at most 3 px wide. Fix: starting from a flawed mask (IoU 0.7) instead of an empty one.")
    report.add_table(table_rows(evaluation), header=["model", *METRIC_KEYS], caption="NoC evaluation")
    labelled = {evaluation.labels.get(name, name): result for name, result in evaluation.results.items()}
    report.add_figure(noc_figure(labelled, evaluation.title), "click_noc", caption="Mean IoU against clicks")
    learned = [name for name in evaluation.results if name not in ("grabcut", "random-walker")]
    shown = (learned or list(evaluation.results))[0]
    folder = context.asset_dir("click")
    indices = spread(list(range(len(evaluation.items))), PICTURES)
    gallery = []
    for index in indices:
        picture, caption = strip(evaluation, shown, index)
        path = folder / f"object_{index:04d}.png"
        save_png_atomic(picture, path)
        gallery.append((path, caption))
    report.add_text(f"Objects clicked with {evaluation.labels.get(shown, shown)}: the truth (yellow), then the mask "
                    "(blue) after 1, 3 and 5 clicks (green: positive, red: negative).")
    report.add_gallery(gallery)


CLICK_SECTION = FunctionSection("click", "Defect-Click", render_click)
