"""`defectspectrum gen ...`: Defect-Gen, two-stage few-shot diffusion of defect image + mask pairs.

Thin typer commands; torch and diffusers are imported inside them, so the rest of the CLI starts
fast and works without the `gen` extra.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from defectspectrum.cli_support import (
    check_report_outputs,
    friendly,
    options_given,
    require_folder,
    say,
    typed_options,
    wrote,
)
from defectspectrum.errors import InputError

gen_app = typer.Typer(help="Defect-Gen: two-stage few-shot diffusion that generates defect image + mask pairs.",
                      no_args_is_help=True)


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def require_gen_extra(more: tuple[str, ...] = ()) -> None:
    """One clear line when the `gen` extra (or the `more` modules it brings) is not installed."""
    needed = ("torch", "diffusers", "accelerate", *more)
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"Defect-Gen needs {', '.join(missing)}; install it with `pip install 'defectspectrum[gen]'`")


@gen_app.command("presets")
@friendly
def presets_command(
    channels: int = typer.Option(8, "--channels", help="Sample channels to build with (3 + classes)."),
    size: int = typer.Option(128, "--size", help="Side of the image the receptive field is measured on."),
    width: int | None = typer.Option(16, "--width", help="Base channels to measure with (small is quick)."),
) -> None:
    """List the UNet presets with their sizes and measured receptive fields.

    The receptive field is measured, not assumed: the input gradient of the centre output pixel.

    Example: defectspectrum gen presets --size 256
    """
    require_gen_extra()
    from defectspectrum.gen.presets import PRESET_NAMES, load_preset
    from defectspectrum.gen.receptive_field import effective_receptive_field
    from defectspectrum.gen.unet import build_unet

    for name in PRESET_NAMES:
        preset = load_preset(name)
        params = sum(p.numel() for p in build_unet(preset, channels).parameters())
        field = effective_receptive_field(build_unet(preset.scaled(width), channels), channels, size=size)
        reach = "the whole image" if field.covers_image else f"{2 * field.extent + 1} px"
        say(f"{name:7} {preset.downsamplings} downsamplings, attention at levels {list(preset.attention_levels)}, "
            f"{params / 1e6:.1f} M parameters; 95% of the gradient within {2 * field.radius + 1} px, reach {reach} "
            f"(at {size} px, width {width})")


@gen_app.command("train")
@friendly
def train_command(
    ctx: typer.Context,
    ds: Path | None = typer.Argument(None, readable=False, help="The DS folder (with a train split)."),
    object_name: str | None = typer.Option(None, "--object", help="The object to learn (one generator per object)."),
    out: Path = typer.Option(..., "--out", "-o", help="The run folder to create (or continue with --resume)."),
    preset: str = typer.Option("small", "--preset", help="large, medium, small, or a preset YAML file."),
    width: int | None = typer.Option(None, "--width", help="Base channels instead of the preset's."),
    layers: int | None = typer.Option(None, "--layers", help="Resnet layers per block instead of the preset's."),
    size: int = typer.Option(64, "--size", help="Training resolution: short side scaled to it, square crops."),
    steps: int = typer.Option(1000, "--steps", help="Training iterations."),
    batch_size: int = typer.Option(2, "--batch-size", "-b", help="Pairs per step and process."),
    lr: float = typer.Option(1e-4, "--lr", help="AdamW learning rate."),
    ema_decay: float = typer.Option(0.9999, "--ema-decay", help="Decay of the EMA weights."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Batches accumulated per step."),
    vflip: bool = typer.Option(False, "--vflip", help="Also flip vertically (textures)."),
    rotate90: bool = typer.Option(False, "--rotate90", help="Also rotate by quarter turns (textures)."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine or linear."),
    prediction: str = typer.Option("x0", "--prediction", help="x0 (the paper) or epsilon."),
    mask_ce: float = typer.Option(0.0, "--mask-ce", help="Weight of the cross-entropy on the mask channels."),
    mixed_precision: str = typer.Option("no", "--mixed-precision", help="no, fp16 or bf16."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Save a checkpoint every N steps."),
    preview_every: int = typer.Option(500, "--preview-every", help="Draw 4 pairs with the EMA weights into "
                                      "previews/ every N steps (0: never)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights, the batches and the noise."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint (every "
                                "setting comes from its gen.json)."),
) -> None:
    """Train one generator UNet on the train split of one object (the paper: 5 images per defect type).

    Train a large and a small one for the two-stage sampler; images keep their aspect (short side scaled, crops).

    Example: defectspectrum gen train ds_mvtec --object pill --preset large --size 256 --out gen/pill_large

    Example: defectspectrum gen train ds_mvtec --object pill --preset small --size 256 --out gen/pill_small

    Example: defectspectrum gen train --out gen/pill_small --resume
    """
    require_gen_extra()
    from defectspectrum.gen.train import GenConfig, loss_rise, read_config, train_generator
    from defectspectrum.seg.train import TrainingStopped

    if resume:
        ignored = options_given(ctx, {"out", "resume"})
        if ignored:
            raise InputError(f"--resume takes every setting from {out}/gen.json; drop {', '.join(ignored)}")
        config = read_config(out)
    elif ds is None or object_name is None:
        raise InputError("give the DS folder and --object (or --out RUN --resume)")
    else:
        config = GenConfig(data=str(require_folder(ds).absolute()), object=object_name, preset=preset, width=width,
                           layers=layers, size=size, steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay,
                           grad_accum=grad_accum, vflip=vflip, rotate90=rotate90, schedule=schedule,
                           prediction=prediction, mask_ce_weight=mask_ce, mixed_precision=mixed_precision,
                           checkpoint_every=checkpoint_every, preview_every=preview_every, seed=seed)
    try:
        result = train_generator(config, out, resume=resume)
    except TrainingStopped as stopped:
        say(("stopped", "yellow"), f" {str(stopped).removeprefix('stopped ')}")
        raise typer.Exit(130) from None
    if result.losses:
        say(f"loss {sum(result.losses[:20]) / len(result.losses[:20]):.4f} (first steps) -> "
            f"{sum(result.losses[-20:]) / len(result.losses[-20:]):.4f} (last)")
    rise = loss_rise(result.losses)
    if rise is not None:
        say(("warning", "yellow"), f" the loss rose from {rise[1]:.4f} (around step {rise[0]}) to {rise[2]:.4f}: the "
            f"run has likely diverged; look at {out}/previews and train again with a lower --lr (the paper: 1e-4)")
    wrote(out, ": gen.json, checkpoints/last.pt (model, EMA, optimiser)")


@gen_app.command("sample")
@friendly
def sample_command(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="The DS folder of synthetic pairs to create."),
    large: Path | None = typer.Option(None, "--large", readable=False, help="The large generator's run folder."),
    small: Path | None = typer.Option(None, "--small", readable=False, help="The small generator's run folder."),
    switch: int = typer.Option(50, "--switch", "-u", help="Timestep u: the large model for t >= u, the small below."),
    num: int = typer.Option(16, "--num", "-n", help="Samples to draw."),
    seed: int = typer.Option(0, "--seed", help="Sample i is drawn from (seed, i): the same in any batch."),
    sampler: str = typer.Option("ddpm", "--sampler", help="ddpm or ddim."),
    steps: int | None = typer.Option(None, "--steps", help="Sampling steps (default: every training step)."),
    batch: int = typer.Option(4, "--batch", help="Samples per forward pass."),
    min_area: int = typer.Option(0, "--min-area", help="Remove mask regions under this many pixels."),
    keep_empty: bool = typer.Option(False, "--keep-empty", help="Keep samples left without a defect."),
    weights: str = typer.Option("ema", "--weights", help="ema (default) or raw."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it is a DS folder."),
    onto: Path | None = typer.Option(None, "--onto", readable=False, help="A folder of defect-free images to "
                                     "generate defects into (pixels away from the defect stay untouched)."),
    masks: Path | None = typer.Option(None, "--masks", readable=False, help="With --onto: where each defect goes, "
                                      "a mask per good image (same name): class indices, or binary with --class."),
    class_name: str | None = typer.Option(None, "--class", help="With --onto: the defect class to place (random "
                                          "placement: shapes from the training masks; default any class)."),
    blend: int | None = typer.Option(None, "--blend", help="With --onto: px around the defect blended into the "
                                     "source (default two model pixels)."),
    filter_pairs: bool = typer.Option(False, "--filter", help="Drop pairs whose mask lies mostly off the object "
                                      "or (with --seg-model) that a segmentation model does not see."),
    seg_model: Path | None = typer.Option(None, "--seg-model", readable=False, help="With --filter: a `seg train` "
                                          "run trained on the real pairs of this object."),
    min_agreement: float = typer.Option(0.3, "--min-agreement", help="With --seg-model: least IoU of its "
                                        "prediction with the generated mask."),
    min_on_object: float = typer.Option(0.5, "--min-on-object", help="With --filter: least share of the mask on "
                                        "the object's foreground."),
) -> None:
    """Draw image + mask pairs along ONE trajectory: large model for t >= u, small model after.

    Each sample is marked synthetic, captioned, and its source holds the runs and seed that regenerate it.

    With --onto, defects are generated into your good images where --masks says, or at random (one per image).

    Example: defectspectrum gen sample gen_pill --large gen/pill_large --small gen/pill_small --switch 50 --num 100

    Example: defectspectrum gen sample onto_pill --large gen/pill_large --small gen/pill_small --onto good/ --masks at/

    Example: defectspectrum gen sample gen_pill --large gen/l --small gen/s --num 200 --filter --seg-model runs/pill_b0
    """
    require_gen_extra()
    from defectspectrum.data.classes import ClassMap
    from defectspectrum.gen.onto import MaskPlacements, RandomPlacements
    from defectspectrum.gen.sample import check_pair, load_generator, write_samples

    runs = [load_generator(require_folder(path, "a gen train run folder"), weights) if path else None
            for path in (large, small)]
    first = check_pair(runs[0], runs[1])
    placements: MaskPlacements | RandomPlacements | None = None
    if onto is None:
        stray = typed_options(ctx, {"masks", "class_name", "blend"})
        if stray:
            raise InputError(f"{', '.join(stray)} only apply with --onto GOOD_DIR")
    else:
        from defectspectrum.io import list_images

        stray = typed_options(ctx, {"min_area", "keep_empty"})
        if stray:
            raise InputError(f"{', '.join(stray)} do not apply with --onto: the defect's mask is given")
        goods = list_images(require_folder(onto, "a folder of good images"))
        if not typed_options(ctx, {"num"}):
            num = len(goods)  # one per good image
        placements = RandomPlacements(goods, first, class_name, num, seed) if masks is None else \
            MaskPlacements(onto, require_folder(masks, "a folder of masks"), ClassMap(first.classes), class_name)
    sample_filter = None
    if filter_pairs:
        from defectspectrum.gen.filters import SampleFilter, on_object_applies, segmenter

        if not (0 <= min_agreement <= 1 and 0 <= min_on_object <= 1):
            raise InputError(f"--min-agreement {min_agreement} / --min-on-object {min_on_object}: use 0 to 1")
        segment = segmenter(require_folder(seg_model, "a seg train run folder"), first.object,
                            ClassMap(first.classes)) if seg_model else None
        data, samples = first.training_samples("--filter")
        check_on_object = on_object_applies([(data.load_image(s), data.load_mask(s)) for s in samples], min_on_object)
        if not check_on_object:
            say(f"--filter: the real {first.object} masks themselves do not lie on the estimated foreground (a "
                "texture?); masks are not checked for lying on the object")
        sample_filter = SampleFilter(min_on_object, min_agreement, segment, check_on_object)
    else:
        stray = typed_options(ctx, {"seg_model", "min_agreement", "min_on_object"})
        if stray:
            raise InputError(f"{', '.join(stray)} only apply with --filter")
    folder, dropped = write_samples(runs[0], runs[1], switch, num, out, seed=seed, sampler=sampler, steps=steps,
                                    batch=batch, min_area=min_area, keep_empty=keep_empty, overwrite=overwrite,
                                    placements=placements, blend=blend, sample_filter=sample_filter)
    if dropped:
        from collections import Counter

        reasons = Counter(d.reason.split(" (")[0] for d in dropped)
        say(f"dropped {len(dropped)} of {num}: " + "; ".join(f"{n} {why}" for why, n in reasons.most_common()) +
            f" (each with its reason in {out}/dataset.json)")
    wrote(out, f": {len(folder)} synthetic pairs")


@gen_app.command("eval")
@friendly
def eval_command(
    generated: Path = typer.Argument(..., readable=False, help="A DS folder of generated pairs (gen sample)."),
    train: Path = typer.Option(..., "--train", readable=False, help="The DS folder the generator learnt from."),
    split: str = typer.Option("train", "--split", help="The training split of --train."),
    copy_fraction: float = typer.Option(0.5, "--copy-fraction", help="Near-copy: closer to a training image than "
                                        "this share of the usual distance between training images."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the measures as JSON."),
    seg_model: Path | None = typer.Option(None, "--seg-model", readable=False, help="A `seg train` run trained on "
                                          "the real pairs: how well it sees each generated mask's defect."),
    report: Path | None = typer.Option(None, "--report", help="Write an HTML report: the measures and each pair "
                                       "beside its nearest training pair."),
    inception_weights: Path | None = typer.Option(None, "--inception-weights", readable=False, help="Also FID and "
                                                  "KID, with this local file (torch-fidelity's "
                                                  "weights-inception-2015-12-05-6726825d.pth)."),
    lpips_weights: Path | None = typer.Option(None, "--lpips-weights", readable=False, help="Also IC-LPIPS, with "
                                              "this local AlexNet file (torchvision's alexnet-owt-7be5be79.pth)."),
) -> None:
    """Memorisation, diversity and mask sanity of generated pairs, weight-free and offline.

    With --seg-model also mask-defect agreement: the model's prediction on each generated image against its mask.

    FID/KID and IC-LPIPS need weight files you download yourself once; nothing is fetched at run time.

    Example: defectspectrum gen eval gen_pill --train ds_mvtec --json gen_eval.json

    Example: defectspectrum gen eval gen_pill --train ds_mvtec --seg-model runs/pill_b0 --report gen_pill.html

    Example: defectspectrum gen eval gen_pill --train ds_mvtec --inception-weights ~/weights/inception.pth
    """
    from defectspectrum.data.cli import open_ds
    from defectspectrum.gen.evaluation import evaluate_folders, generated_object
    from defectspectrum.io import write_json_atomic

    made, source = open_ds(generated), open_ds(train)
    check_report_outputs([json_path, report], made.root, source.root)
    segment = None
    if seg_model is not None:
        require_gen_extra()
    if inception_weights is not None or lpips_weights is not None:
        require_gen_extra(("torchmetrics", "torch_fidelity"))
    for path in (inception_weights, lpips_weights):
        if path is not None and not path.is_file():
            raise InputError(f"{path}: no such weights file; give the local file (nothing is downloaded)")
    if seg_model is not None:
        from defectspectrum.gen.filters import segmenter

        name = generated_object(made)
        segment = segmenter(require_folder(seg_model, "a seg train run folder"), name, made.classes(name))
    device = "cuda" if (inception_weights or lpips_weights) and _cuda() else "cpu"
    evaluation = evaluate_folders(made, source, split, copy_fraction, segment, inception_weights=inception_weights,
                                  lpips_weights=lpips_weights, device=device)
    result, data, name = evaluation.metrics, evaluation.measures, evaluation.object
    memo = data["memorisation"]
    say(f"{result.samples} samples against {result.train} training pairs of {name}")
    say(f"memorisation: nearest training image at {memo['nearest_median']:.3f} (median; training images are "
        f"{memo['train_scale']:.3f} apart), near-copies {100 * memo['near_copies']:.1f}%")
    diversity = "n/a (no two samples share a nearest training image)" if data["diversity"] is None \
        else f"{data['diversity']:.3f}"
    say(f"diversity (IC protocol, coarse-appearance distance): {diversity}")
    masks = data["masks"]
    say(f"empty masks: {100 * masks['generated']['empty']:.1f}% (training {100 * masks['train']['empty']:.1f}%)")
    for cls, values in masks["generated"]["classes"].items():
        theirs = masks["train"]["classes"][cls]
        say(f"  {cls:20} in {100 * values['share']:5.1f}% of masks (training {100 * theirs['share']:5.1f}%)")
    checks = data["consistency"]
    if checks["off_object_share"] is not None:
        say(f"masks mostly off the object: {100 * checks['off_object_share']:.1f}%")
    elif not checks["on_object_check"]:
        say("masks on the object: not checked (the real masks do not lie on the estimated foreground: a texture?)")
    agreement = checks.get("agreement")
    if agreement:
        say(f"agreement with {seg_model}: defect IoU {agreement['mean']:.3f} mean, {agreement['median']:.3f} median "
            f"(same class {agreement['class_mean']:.3f}); {100 * agreement['under_min']:.1f}% under "
            f"{agreement['min_agreement']}")
    learned = data.get("learned", {})
    if "fid" in learned:
        say(f"FID {learned['fid']:.2f}, KID {learned['kid']:.4f} ± {learned['kid_std']:.4f} (subsets of "
            f"{learned['kid_subset_size']}; few-shot sets make both noisy)")
    if "ic_lpips" in learned:
        say("IC-LPIPS " + ("n/a (no two samples share a nearest training image)" if learned["ic_lpips"] is None
                           else f"{learned['ic_lpips']:.3f}"))
    if json_path is not None:
        write_json_atomic(json_path, evaluation.to_json())
        wrote(json_path)
    if report is not None:
        from defectspectrum.gen.report_section import GEN_SECTION
        from defectspectrum.report.sections import ReportContext, build_report

        context = ReportContext(made, html=report, extra={"gen": evaluation})
        page, _ = build_report(context, [GEN_SECTION], "Generated pairs", subtitle=f"{generated} against {train}")
        page.write(report)
        wrote(report)
