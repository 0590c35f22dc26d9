"""A trained run shown on its val split: scores, confusion matrix, predicted DS folder and
truth | prediction pictures, ready for the report's `seg` section (used by `make demo`)."""

from __future__ import annotations

from pathlib import Path

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.draw import class_colors, overlay, side_by_side
from defectspectrum.io import save_png_atomic
from defectspectrum.seg.evaluate import LoadedRun
from defectspectrum.seg.metrics import ConfusionMatrix, scores
from defectspectrum.seg.plots import write_confusion_png
from defectspectrum.seg.predict import predict_to_ds
from defectspectrum.seg.report_section import SegEvalResult


def showcase_run(run: LoadedRun, folder: DSFolder, out: Path, *, split: str = "val",
                 pictures: int = 6) -> SegEvalResult:
    """Score `run` on `folder`'s split, predict that split into `out/pred` (a DS folder), and draw
    `out/confusion.png` and `pictures` truth | prediction pairs (the most defect pixels first) in `out/compare/`."""
    from defectspectrum.seg.dataset import DSDataset

    labels = run.info.labels
    dataset = DSDataset(folder, split=split, labels=labels, synthetic="exclude", transform=None)
    subset = DSFolder(folder.root, folder.name, {name: folder.classes(name) for name in labels.objects},
                      dataset.samples)
    predicted = predict_to_ds(run.predictor(), labels, subset, out / "pred", overlays=False,
                              info={"split": split})
    matrix = ConfusionMatrix(labels.num_classes)  # scored from the written masks, as a user would
    for sample in dataset.samples:
        guess = labels.to_labels(predicted.load_mask(predicted[sample.id]), sample.object)
        matrix.update(guess, labels.to_labels(folder.load_mask(sample), sample.object))
    result = scores(matrix.matrix, list(labels.names))
    out.mkdir(parents=True, exist_ok=True)
    confusion = write_confusion_png(out / "confusion.png", matrix.matrix, list(labels.names))
    ranked = sorted(dataset.samples, key=lambda s: -int((folder.load_mask(s) > 0).sum()))[:pictures]
    overlays = []
    for sample in ranked:
        image = folder.load_image(sample)
        colors = class_colors(len(folder.classes(sample.object)))
        truth = overlay(image, folder.load_mask(sample), colors)
        guess = overlay(image, predicted.load_mask(predicted[sample.id]), colors)
        path = out / "compare" / f"{sample.object}_{sample.name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_png_atomic(side_by_side(truth, guess), path)
        overlays.append((path, f"{sample.id}: truth | prediction"))
    config = run.info.config
    settings = {"objects": ", ".join(labels.objects), "steps": config.steps, "batch": config.batch_size,
                "crop": config.crop_size, "lr": config.lr, "seed": config.seed,
                "train images": len(run.info.data.get("train_ids", []))}
    return SegEvalResult(model=config.model, settings=settings, scores=result.to_json(), split=split,
                         images=len(dataset), confusion_png=confusion, overlays=overlays, predictions=predicted.root)
