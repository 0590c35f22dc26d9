"""The report's `gen` section (`GEN_SECTION`): the measures of `gen eval`, the mask classes generated
beside the training ones, each generated pair beside its nearest training pair, and the training
previews where there are any.

It reads `ReportContext.extra["gen"]`, a `GenResult` put there by `gen eval --report` or the demo.
"""

from __future__ import annotations

from typing import Any

from defectspectrum.gen.evaluation import GenResult
from defectspectrum.gen.gallery import beside_nearest
from defectspectrum.io import save_png_atomic
from defectspectrum.paths import safe_name
from defectspectrum.report.html import Report
from defectspectrum.report.sections import FunctionSection, ReportContext, SkipSection

MAX_PICTURES = 16


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _headline(result: GenResult) -> dict[str, Any]:
    data = result.measures
    memo = data["memorisation"]
    ratio = memo.get("nearest_over_scale")
    headline: dict[str, Any] = {
        "pairs": result.metrics.samples, "training pairs": result.metrics.train,
        "nearest / training spacing": "n/a" if ratio is None else f"{ratio:.2f}",
        "near-copies %": _percent(memo["near_copies"]),
        "diversity (IC)": "n/a" if data["diversity"] is None else f"{data['diversity']:.3f}",
        "empty masks %": _percent(data["masks"]["generated"]["empty"])}
    consistency = data.get("consistency") or {}
    if consistency.get("off_object_share") is not None:
        headline["masks off the object %"] = _percent(consistency["off_object_share"])
    if consistency.get("agreement"):
        headline["seg agreement (IoU)"] = f"{consistency['agreement']['mean']:.3f}"
    for key, label in (("fid", "FID"), ("kid", "KID"), ("ic_lpips", "IC-LPIPS")):
        if data.get("learned", {}).get(key) is not None:
            headline[label] = f"{data['learned'][key]:.3f}"
    return headline


def _class_rows(result: GenResult) -> list[list[Any]]:
    masks = result.measures["masks"]
    rows = []
    for name, made in masks["generated"]["classes"].items():
        real = masks["train"]["classes"][name]
        rows.append([name, _percent(made["share"]), _percent(real["share"]),
                     "n/a" if made["median_area"] is None else f"{100 * made['median_area']:.2f}",
                     "n/a" if real["median_area"] is None else f"{100 * real['median_area']:.2f}"])
    return rows


def render_gen(context: ReportContext, report: Report) -> None:
    result: GenResult | None = context.extra.get("gen")
    if result is None:
        raise SkipSection("no generated pairs")
    report.add_text(
        f"{result.metrics.samples} generated image + mask pairs of `{result.object}`, measured against the "
        f"{result.metrics.train} training pairs they were learnt from, without any downloaded weights. "
        "Memorisation: each pair's distance to its nearest training image, against the usual spacing of the "
        "training images (near 0: a copy; near 1: as far as two different training images). Diversity: the "
        "IC protocol (mean distance between pairs that share a nearest training image).")
    report.add_metrics(_headline(result))
    report.add_table(_class_rows(result), header=["class", "in generated masks %", "in training masks %",
                                                  "median region (generated) % of image",
                                                  "median region (training) % of image"],
                     caption="Mask classes, generated beside training")
    folder = context.asset_dir("gen")
    samples = result.generated.samples()
    shown = min(MAX_PICTURES, len(samples))
    num_classes = len(result.generated.classes(result.object))
    gallery = []
    for k in range(shown):
        sample = samples[k]
        nearest = result.reference[int(result.metrics.nearest_index[k])]
        picture = beside_nearest((result.generated.load_image(sample), result.generated.load_mask(sample)),
                                 (result.train.load_image(nearest), result.train.load_mask(nearest)), num_classes)
        path = folder / f"{safe_name(sample.name)}.png"
        save_png_atomic(picture, path)
        gallery.append((path, f"{sample.name} (left) beside its nearest training pair {nearest.id} (right), "
                              f"distance {result.metrics.nearest[k]:.3f}"))
    more = f" (the first {shown} of {len(samples)})" if len(samples) > shown else ""
    report.add_text(f"Generated pairs{more}, each beside the training pair it is closest to; masks tinted.")
    report.add_gallery(gallery)
    if result.previews:
        report.add_text("Training previews: four pairs drawn with the EMA weights from the same noise each time.")
        report.add_gallery([(path, path.stem.replace("_", " ")) for path in result.previews])


GEN_SECTION = FunctionSection("gen", "Defect-Gen", render_gen)
