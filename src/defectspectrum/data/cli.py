"""`defectspectrum data ...`: thin typer commands over the data layer (no torch imports here).

Help texts are rich markup (typer's default): write a literal `[` as `\\[` (see `--palette`).
Everything printed that holds a path or a name goes through `say`/`wrote` (never parsed as markup).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from defectspectrum.cli_support import (
    check_report_outputs,
    friendly,
    max_pixels_option,
    out,
    parse_csv,
    parse_size,
    require_folder,
    say,
    wrote,
)
from defectspectrum.data.export import writer_names
from defectspectrum.errors import InputError

if TYPE_CHECKING:
    from defectspectrum.data.dsfolder import DSFolder

data_app = typer.Typer(help="Bring defect data sets into the DS folder format and work on them.", no_args_is_help=True)


def open_ds(path: Path, lenient: bool = False, what: str = "the DS folder") -> DSFolder:
    """The DS folder at `path`; a file or a missing path is one clear error (naming `what` was expected)
    before anything is read. `lenient`: bad index lines are listed in `folder.problems` instead of
    refused (see `DSFolder.open`)."""
    from defectspectrum.data.dsfolder import DSFolder

    return DSFolder.open(require_folder(path, what), lenient=lenient)


# -- data convert / formats -------------------------------------------------------------------------------


@data_app.command("convert")
@friendly
def convert_command(
    source: Path = typer.Argument(..., readable=False,  # an unreadable path gets our one-line error, not a usage box
                                  help="The source data set's top folder (for coco also the .json file)."),
    dst: Path = typer.Argument(..., help="The DS folder to create (must be new or empty)."),
    fmt: str = typer.Option("auto", "--from", "-f", help="Source layout; `data formats` lists them. auto detects."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace DST if it is already a DS folder (files of yours in it are kept)."),
    resize_masks: bool = typer.Option(False, "--resize-masks", help="Resample masks of another size to their image."),
    name: str | None = typer.Option(None, "--name", help="Data set name (default: DST's folder name)."),
    classes: str | None = typer.Option(None, "--classes",
                                       help="folder/coco/mmseg: class names in index order, comma-separated."),
    mask_suffix: str | None = typer.Option(None, "--mask-suffix",
                                           help="folder/mmseg: mask file suffix, e.g. _mask or _label."),
    palette: Path | None = typer.Option(None, "--palette", readable=False,
                                        help="folder: JSON/YAML mapping class name -> \\[r, g, b] for colour masks."),
    object_name: str | None = typer.Option(None, "--object", help="Object name for single-object layouts."),
    max_pixels: int | None = max_pixels_option(),
    images: Path | None = typer.Option(None, "--images",
                                       help="coco: the folder holding the images (also DIR/<split>/); absolute "
                                            "file_names are read only from under it."),
) -> None:
    """Convert a data set into a DS folder.

    Examples:

      defectspectrum data convert --from mvtec ~/data/mvtec_ad ds_mvtec

      defectspectrum data convert ~/data/Defect_Spectrum/DS-MVTec ds_release --workers 4

      defectspectrum data convert --from folder --mask-suffix _label --classes scratch,dent shots/ ds_shots

      defectspectrum data convert --from coco coco2017/ ds_coco --images /data/coco2017_images
    """
    from defectspectrum.data.convert import convert_counted

    kept: list[str] = []
    result = convert_counted(source, dst, fmt, workers=workers, overwrite=overwrite, resize_masks=resize_masks,
                             name=name, kept=kept, max_pixels=max_pixels, classes=parse_csv(classes),
                             mask_suffix=mask_suffix, palette=palette, object_name=object_name, images=images)
    wrote(result.root, f": {result.summary()}")
    if kept:
        shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
        say(f"kept {len(kept)} file(s) of yours from the replaced folder: {shown}")


@data_app.command("formats")
@friendly
def formats_command() -> None:
    """List the layouts `data convert --from` reads (in the order auto tries them) and `data export --to` writes.

    Example: defectspectrum data formats
    """
    from rich.table import Table
    from rich.text import Text

    from defectspectrum.data.export import WRITERS
    from defectspectrum.data.formats import READERS, detection_order

    readers = Table("--from", "layout", box=None, show_lines=True, pad_edge=False,
                    title="readers (--from auto tries them in this order)", title_justify="left")
    for name in detection_order():
        readers.add_row(Text(name, style="bold"), Text(READERS[name].summary))
    writers = Table("--to", "layout", box=None, show_lines=True, pad_edge=False,
                    title="writers (data export --to)", title_justify="left")
    for name, writer in WRITERS.items():
        writers.add_row(Text(name, style="bold"), Text(writer.summary))
    out.print(readers)
    out.print()
    out.print(writers)


@data_app.command("export")
@friendly
def export_command(
    ds: Path = typer.Argument(..., readable=False, help="A DS folder."),
    dst: Path = typer.Argument(..., help="Output: a new folder."),
    to: str = typer.Option(..., "--to", "-t", help=f"One of: {', '.join(writer_names())} (`data formats` lists them)."),
    polygons: bool = typer.Option(False, "--polygons",
                                  help="coco: exact polygons (holes joined in by zero-width cuts) instead of RLE, "
                                       "for tools that read no RLE (Label Studio)."),
    link: bool = typer.Option(False, "--link",
                              help="coco: hard-link the images instead of copying them (a copy where the file "
                                   "system refuses); an in-place edit of a linked image changes the DS folder's too."),
    max_pixels: int | None = max_pixels_option(),
) -> None:
    """Export a DS folder to another layout.

    coco writes OUT/annotations/instances_<split>.json and OUT/images/<split>/ (the standard layout).

    Examples:

      defectspectrum data export ds_mvtec ds_mvtec_coco --to coco

      defectspectrum data export ds_mvtec ds_mvtec_coco --to coco --polygons

      defectspectrum data export ds_mvtec mmseg_mvtec --to mmseg
    """
    from defectspectrum.data.export import export, get_writer
    from defectspectrum.io import pixel_limit

    get_writer(to)  # an unknown --to is refused before the folder is read
    with pixel_limit(max_pixels):
        path = export(open_ds(ds), dst, to, polygons=polygons, link=link)
    wrote(path)


# -- data stats / validate / show ---------------------------------------------------------------------------


@data_app.command("stats")
@friendly
def stats_command(
    ds: Path = typer.Argument(..., readable=False, help="A DS folder."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the statistics as JSON here."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes reading the masks."),
    max_pixels: int | None = max_pixels_option(),
) -> None:
    """Per object and class: images, regions, area percentiles and image sizes.

    Example: defectspectrum data stats ds_mvtec --json stats.json -j 4
    """
    from defectspectrum.data.stats import compute_stats, stats_table
    from defectspectrum.io import pixel_limit, write_json_atomic

    folder = open_ds(ds)
    check_report_outputs([json_out], folder.root)
    with pixel_limit(max_pixels):
        stats = compute_stats(folder, workers=workers)
    out.print(stats_table(stats))
    if json_out:
        write_json_atomic(json_out, stats.to_json())
        wrote(json_out)


@data_app.command("validate")
@friendly
def validate_command(
    ds: Path = typer.Argument(..., readable=False, help="A DS folder."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the machine-readable report here."),
    hash_distance: int = typer.Option(4, "--hash-distance", min=0, max=32,
                                      help="Perceptual-hash distance (bits of 64) counted as near-duplicate."),
    near_duplicates: str = typer.Option("auto", "--near-duplicates",
                                        help="auto (search unless the images look so alike that it would take more "
                                             "than a minute), full or off."),
    workers: int = typer.Option(1, "--workers", "-j", min=1,
                                help="Worker processes reading and hashing the files and searching near-duplicates."),
    max_pixels: int | None = max_pixels_option(),
) -> None:
    """Check every file: readable, sizes match, indices in the class map, empty masks, duplicates across splits.

    Near-duplicates (perceptual hash) are reported once per group of look-alike images, listing the group.
    Exit code 1 when errors are found.

    Example: defectspectrum data validate ds_mvtec --json report.json -j 4

    Example: defectspectrum data validate ds_line --near-duplicates full
    """
    from defectspectrum.data.validate import validate, validation_table
    from defectspectrum.io import write_json_atomic

    folder = open_ds(ds, lenient=True)  # bad index lines are reported, not fatal
    check_report_outputs([json_out], folder.root)
    report = validate(folder, hash_distance=hash_distance, max_pixels=max_pixels, near_duplicates=near_duplicates,
                      workers=workers)
    out.print(validation_table(report))
    if json_out:
        write_json_atomic(json_out, report.to_json())
        wrote(json_out)
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("show")
@friendly
def show_command(
    ds: Path = typer.Argument(..., readable=False, help="A DS folder."),
    out_dir: Path = typer.Argument(..., help="Folder for the overlay PNGs and contact sheet."),
    limit: int = typer.Option(24, "--limit", "-n", min=1, help="Samples to draw (defective first)."),
    object_name: str | None = typer.Option(None, "--object", help="Only this object."),
    include_good: bool = typer.Option(False, "--include-good", help="Also draw defect-free samples."),
    max_pixels: int | None = max_pixels_option(),
) -> None:
    """Draw mask overlays and a contact sheet with a class-colour legend.

    Example: defectspectrum data show ds_mvtec overlays/ --object pill -n 12
    """
    from defectspectrum.data.show import write_overlays
    from defectspectrum.io import pixel_limit

    with pixel_limit(max_pixels):
        written = write_overlays(open_ds(ds), out_dir, limit=limit, object_name=object_name,
                                 include_good=include_good)
    say(("wrote", "green"), f" {len(written.overlays)} overlays and the contact sheet {written.contact_sheet}")


@data_app.command("clean")
@friendly
def clean_command(
    output: Path = typer.Argument(..., help="An output (DS folder, export) whose leftovers to clean up."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be done."),
) -> None:
    """Remove what killed runs left beside an output (staging folders, replaced folders, locks) and inside it.

    Beside it they are hidden: .NAME.*.partial (staging), .NAME.*.old (replaced) and .NAME.lock (locks).

    Inside it: .FILE.PID.N.tmp, an atomic write a killed run did not finish (e.g. of a DS folder's index).

    Only leftovers of runs that have ended are touched; a run into the same output also does this on its own.

    A replaced folder whose swap was cut off is put back where the output is missing, else listed to be dealt with.

    Example: defectspectrum data clean ds_mvtec
    """
    from defectspectrum.staging import clean_leftovers

    found = clean_leftovers(output, dry_run=dry_run, inside=True)
    if not found:
        say(f"nothing to clean beside {output}")
    verbs = {"remove": "removed", "restore": "restored", "keep": "kept"} if not dry_run else \
        {"remove": "would remove", "restore": "would restore", "keep": "would keep"}
    for item in found:
        say(f"{verbs[item.action]} {item.path} ({item.kind}: {item.reason})")


# -- data split / caption ------------------------------------------------------------------------------------


@data_app.command("split")
@friendly
def split_command(
    ds: Path = typer.Argument(..., readable=False, help="A DS folder (its samples.jsonl is rewritten atomically)."),
    rule: str = typer.Option("first-k", "--rule", help="first-k (the paper's rule) or random (stratified)."),
    k: int = typer.Option(5, "--k", min=1, help="first-k: training images per defect type."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", min=0.0, max=1.0, help="random: share for validation."),
    seed: int = typer.Option(0, "--seed", help="random: the seed."),
) -> None:
    """Assign train/val splits (every sample's split is replaced; samples moved out of one are counted).

    first-k: the first k images of each defect type train, the rest validate (the paper's rule).
    random: stratified by defect type, seeded; a defect type of two or more images keeps one for training.

    Example: defectspectrum data split ds_mvtec --rule first-k --k 5
    """
    from defectspectrum.data.splits import assign_splits

    folder = open_ds(ds)
    before = {s.id: s.split for s in folder if s.split is not None}
    counts = assign_splits(folder, rule=rule, k=k, val_fraction=val_fraction, seed=seed)
    folder.save()
    say(", ".join(f"{split}: {count}" for split, count in counts.items()))
    changed = Counter(before[s.id] for s in folder if before.get(s.id, s.split) != s.split)
    if changed:
        say(f"moved {sum(changed.values())} sample(s) out of the split they had: "
            + ", ".join(f"{split} {count}" for split, count in sorted(changed.items())))


@data_app.command("caption")
@friendly
def caption_command(
    ds: Path = typer.Argument(..., readable=False, help="A DS folder (its samples.jsonl is rewritten atomically)."),
    replace_existing: bool = typer.Option(False, "--replace", help="Also replace captions already present."),
    max_pixels: int | None = max_pixels_option(),
) -> None:
    """Write template captions from the masks (object, classes, count, size, position).

    Captions that came with the data (DS-MVTec's captions.xlsx) are kept unless --replace.
    Example: defectspectrum data caption ds_mvtec
    """
    from defectspectrum.data.captions import caption_folder
    from defectspectrum.io import pixel_limit

    folder = open_ds(ds)
    with pixel_limit(max_pixels):
        written = caption_folder(folder, replace_existing=replace_existing)
    folder.save()
    kept = len(folder) - written
    say(f"captioned {written} of {len(folder)} samples"
        + (f"; kept the {kept} caption(s) already there (--replace rewrites them)" if kept else ""))


# -- data synth -------------------------------------------------------------------------------------------------


@data_app.command("synth")
@friendly
def synth_command(
    dst: Path = typer.Argument(..., help="Folder to create."),
    layout: str = typer.Option("mvtec", "--layout",
                               help="mvtec (native MVTec AD tree: one class a folder), ds-release (the Defect Spectrum "
                                    "release layout: multi-class index masks) or ds (a DS folder)."),
    materials: str | None = typer.Option(None, "--materials",
                                         help="Comma-separated materials: metal, wood, fabric, tile, plastic "
                                              "(the default) and steel."),
    per_type: int = typer.Option(4, "--per-type", min=1, help="Defective images per defect type."),
    good: int = typer.Option(4, "--good", min=0, help="Defect-free images per material."),
    size: str = typer.Option("256", "--size", help="Image size: N or HxW."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same files."),
) -> None:
    """Render procedural inspection images with exact multi-class defect masks (no downloads).

    Example: defectspectrum data synth synth_src --materials metal,wood --size 192x256 --seed 1
    """
    from defectspectrum.data.synth import MAX_COUNT, MAX_SIDE, write_ds_folder, write_mvtec_layout, write_release_layout

    if layout not in ("mvtec", "ds-release", "ds"):
        raise InputError(f"--layout {layout!r}: choose mvtec, ds-release or ds")
    for option, count in (("--per-type", per_type), ("--good", good)):
        if count > MAX_COUNT:
            raise InputError(f"{option} {count}: at most {MAX_COUNT} images per type; use a smaller number")
    common: dict[str, Any] = {"materials": parse_csv(materials), "n_defective_per_type": per_type,
                              "size": parse_size(size, "--size", largest=MAX_SIDE), "seed": seed}
    if layout == "mvtec":
        path = write_mvtec_layout(dst, n_good=good, n_train_good=good, **common)
    elif layout == "ds-release":
        path = write_release_layout(dst, n_good=good, **common)
    else:
        path = write_ds_folder(dst, n_good=good, **common).root
    wrote(path)
