"""Regressions from trying every command as a new user would (issue 12, helper X2)."""

from __future__ import annotations

import inspect
import io
import itertools
from pathlib import Path

import pytest
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.synth import write_ds_folder
from defectspectrum.io import MAX_PIXELS_ENV


def run_cli(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    return result.exit_code, result.output


@pytest.fixture
def small_ds(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    write_ds_folder(root, materials=["metal"], n_defective_per_type=1, n_good=1, size=(32, 32), seed=3)
    return root


@pytest.mark.parametrize("command", [
    ["data", "validate", "{ds}"],
    ["data", "stats", "{ds}"],
    ["data", "show", "{ds}", "{tmp}/overlays"],
    ["data", "caption", "{ds}"],
    ["data", "export", "{ds}", "{tmp}/export", "--to", "coco"],
    ["report", "{ds}", "--out", "{tmp}/report"],
])
def test_bad_pixel_limit_variable_is_one_error_not_one_per_image(small_ds: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 command: list[str]) -> None:
    """A bad $DEFECTSPECTRUM_MAX_PIXELS used to be counted against every image: validate listed an error
    per file, stats called every mask unreadable and the report was written with warnings (exit 0)."""
    monkeypatch.setenv(MAX_PIXELS_ENV, "abc")
    args = [part.format(ds=small_ds, tmp=tmp_path) for part in command]
    code, output = run_cli(args)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {MAX_PIXELS_ENV}='abc'"), output
    assert not (tmp_path / "overlays").exists() and not (tmp_path / "export").exists()
    assert not (tmp_path / "report").exists()


def test_report_takes_max_pixels(small_ds: Path, tmp_path: Path) -> None:
    """The report reads every image (validation, statistics, overlays) so it takes --max-pixels like them."""
    code, output = run_cli(["report", small_ds, "--out", tmp_path / "report", "--sections", "validation",
                            "--max-pixels", "100"])
    assert code == 0, output
    html = (tmp_path / "report" / "report.html").read_text()
    assert "too-large" in html and "above the limit of 100 pixels" in html


def _commands() -> list[tuple[str, object]]:
    """Every command of the app as (`data convert`, click command), walking the groups."""
    import typer.main

    found = []
    stack = [("", typer.main.get_command(app))]
    while stack:
        prefix, group = stack.pop()
        for name, command in getattr(group, "commands", {}).items():
            path = f"{prefix} {name}".strip()
            if hasattr(command, "commands"):
                stack.append((path, command))
            else:
                found.append((path, command))
    return sorted(found, key=lambda item: item[0])


@pytest.mark.parametrize("path,command", _commands(), ids=[path for path, _ in _commands()])
def test_help_paragraphs_are_not_hard_wrapped(path: str, command: object) -> None:
    """Typer keeps single line breaks of a help text as they are (also in the group's list of commands),
    so a docstring wrapped mid-sentence is shown broken mid-line: `data formats` and `data clean` were."""
    text = inspect.cleandoc(getattr(command, "help", None) or "")
    assert f"defectspectrum {path}" in text, f"{path}: its help has no example"
    for paragraph in text.split("\n\n"):
        lines = paragraph.splitlines()
        for line, following in itertools.pairwise(lines):
            assert line.rstrip().endswith((".", ":")), f"{path}: help line break mid-sentence: {line!r} / {following!r}"


def test_contact_sheet_thumbnails_never_cover_each_other_or_captions(tmp_path: Path) -> None:
    """Tall thumbnails (Magnetic-tile's tiles) filled their whole cell, caption room included, so each
    covered the caption of the one above and its own caption ran into the next row."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from defectspectrum.draw import contact_sheet_figure

    shapes = [(240, 100), (100, 240), (240, 240), (240, 60), (60, 240), (200, 150), (240, 100), (90, 240)]
    thumbs = [np.full((h, w, 3), 128, dtype=np.uint8) for h, w in shapes]
    captions = [f"object/sample_with_a_long_name_{i}" for i in range(len(thumbs))]
    fig = contact_sheet_figure(thumbs, captions, {"object": ["background", "scratch"]}, tmp_path / "sheet.png",
                               columns=3)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [ax.get_window_extent(renderer) for ax in fig.axes[:len(thumbs)]]
    labels = [ax.xaxis.label.get_window_extent(renderer) for ax in fig.axes[:len(thumbs)]]
    for i, (box, label) in enumerate(zip(boxes, labels)):
        assert label.y1 <= box.y0 + 1, f"caption {i} overlaps its own thumbnail"
        for j, other in enumerate(boxes):
            if j != i:
                assert not box.overlaps(other), f"thumbnails {i} and {j} overlap"
                assert not label.overlaps(other), f"caption {i} is covered by thumbnail {j}"


def test_report_tables_group_thousands_alike(tmp_path: Path) -> None:
    """A column of region areas read `34,314 / 6476 / 1,509`: whole floats got a thousands separator,
    fractional ones of four digits did not."""
    from defectspectrum.report.html import Report

    report = Report("numbers")
    report.add_table([("a", 6475.6, 1509.0, 373.5, 0.1183, 34314)], header=["name", "p50", "p95", "small", "tiny", "n"])
    html = report.write(tmp_path / "r.html").read_text()
    cells = [cell.split(">", 1)[1] for cell in html.split("</td>")[:-1]]
    assert [cell.rsplit(">", 1)[-1] for cell in cells[-5:]] == ["6,476", "1,509", "373.5", "0.1183", "34,314"]


def _image_and_masks(folder_images: Path, folder_masks: Path, names: dict[str, bool], mask_ext: str = ".png",
                     value: int = 255) -> None:
    """One 32x32 image per name and its mask: a square of `value` where `names[name]`, else all black."""
    import numpy as np
    from PIL import Image

    folder_images.mkdir(parents=True, exist_ok=True)
    folder_masks.mkdir(parents=True, exist_ok=True)
    for i, (name, defect) in enumerate(names.items()):
        Image.fromarray(np.full((32, 32, 3), 40 + 30 * i, dtype=np.uint8)).save(folder_images / f"{name}.png")
        mask = np.zeros((32, 32), dtype=np.uint8)
        if defect:
            mask[8:16, 8:16] = value
        Image.fromarray(mask).save(folder_masks / f"{name}{mask_ext}")


@pytest.mark.parametrize("layout", ["folder", "folder-jpeg-masks", "mmseg"])
def test_an_all_black_mask_outside_class_folders_is_a_defect_free_sample(tmp_path: Path, layout: str) -> None:
    """images/ + masks/ (and plain mmseg) with all-black masks for the good images, as many defect data
    sets ship: those samples became defect_type 'defect' (None for mmseg) and validate warned on each,
    'mask is empty ... annotate the defect or mark the sample good'."""
    from defectspectrum.data.convert import convert_counted
    from defectspectrum.data.validate import validate

    src = tmp_path / "src"
    names = {"a": True, "b": False, "c": False}
    if layout == "mmseg":
        _image_and_masks(src / "img_dir" / "train", src / "ann_dir" / "train", names, value=1)  # class indices
    else:
        _image_and_masks(src / "images", src / "masks", names, ".jpg" if layout == "folder-jpeg-masks" else ".png")
    result = convert_counted(src, tmp_path / "ds", layout.split("-")[0])
    assert (result.with_defects, result.defect_free) == (1, 2)
    types = {sample.id.split("/")[1]: sample.defect_type for sample in result.open()}
    assert types["b"] == types["c"] == "good" and types["a"] != "good"
    assert not [issue for issue in validate(result.open()).issues if issue.code == "empty-mask"]


def test_an_all_black_mask_in_a_class_folder_keeps_its_class_and_is_flagged(tmp_path: Path) -> None:
    """A class folder is the source's own grouping (like Magnetic-tile's MT_Uneven): an empty mask there
    may be a missing annotation, so the sample keeps the class and validate warns."""
    from defectspectrum.data.convert import convert
    from defectspectrum.data.validate import validate

    src = tmp_path / "src"
    _image_and_masks(src / "scratch" / "images", src / "scratch" / "masks", {"a": True, "b": False})
    folder = convert(src, tmp_path / "ds", "folder")
    assert {sample.defect_type for sample in folder} == {"scratch"}
    assert [issue.sample for issue in validate(folder).issues if issue.code == "empty-mask"] == ["src/scratch_b"]


def test_class_folders_without_any_mask_are_an_error_not_defect_free(tmp_path: Path) -> None:
    """MVTec's `bottle/test/` given alone (or a release object's `image/`) read as class folders with no
    masks: every image of `broken_large/` became a defect-free sample, exit 0."""
    import numpy as np
    from PIL import Image

    src = tmp_path / "test"
    for defect in ("broken_large", "contamination", "good"):
        (src / defect).mkdir(parents=True)
        Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(src / defect / "000.png")
    code, output = run_cli(["data", "convert", src, tmp_path / "ds"])
    assert code == 2, output
    assert output.strip().splitlines() == [
        f"error: {src}: images in class folders (broken_large, contamination) but no masks; pass the data set's top "
        "folder if this is part of one (`data formats` lists the layouts), put each class's masks in "
        "<class>/masks/, or pass a folder of defect-free images by itself"]
    assert not (tmp_path / "ds").exists()


def test_a_good_folder_holds_defect_free_images_and_is_no_class(tmp_path: Path) -> None:
    """`good/` beside `scratch/` became a defect class 'good' (exported as a COCO category and an mmseg class)."""
    from defectspectrum.data.convert import convert_counted
    from defectspectrum.errors import FormatError

    src = tmp_path / "src"
    _image_and_masks(src / "scratch" / "images", src / "scratch" / "masks", {"a": True})
    _image_and_masks(src / "good" / "images", src / "good" / "masks", {"b": False})
    result = convert_counted(src, tmp_path / "ds", "folder")
    assert result.open().objects["src"].names == ("background", "scratch")
    assert {s.name: s.defect_type for s in result.open()} == {"scratch_a": "scratch", "good_b": "good"}
    _image_and_masks(src / "good" / "images", src / "good" / "masks", {"d": True})  # a defect in good/
    with pytest.raises(FormatError, match=r"good/masks/d.png: the mask of an image in a good/ folder has defect"):
        convert_counted(src, tmp_path / "ds2", "folder")


def test_images_too_deep_for_the_folder_reader_are_pointed_at(tmp_path: Path) -> None:
    """The folder holding `VOCdevkit/VOC2012/` said 'no images found', though it holds thousands."""
    src = tmp_path / "download"
    voc = src / "VOCdevkit" / "VOC2012"
    _image_and_masks(voc / "JPEGImages", voc / "SegmentationClass", {"2007_000032": True}, value=1)
    code, output = run_cli(["data", "convert", "--from", "folder", src, tmp_path / "ds"])
    assert code == 2, output
    line = output.strip()
    assert line.startswith(f"error: {src}: no images where the folder reader looks") and "\n" not in line
    assert line.endswith(f"but {voc / 'JPEGImages'} holds some; pass the data set's own folder, e.g. {voc}")


def test_formats_says_what_the_release_export_leaves_out(small_ds: Path, tmp_path: Path) -> None:
    """`--to ds-release` drops every split (the release has none) without a word anywhere a user looks."""
    from defectspectrum.data import DSFolder
    from defectspectrum.data.convert import convert
    from defectspectrum.data.splits import assign_splits

    folder = DSFolder.open(small_ds)
    assign_splits(folder, rule="first-k", k=1)
    folder.save()
    assert run_cli(["data", "export", small_ds, tmp_path / "release", "--to", "ds-release"])[0] == 0
    assert {s.split for s in convert(tmp_path / "release", tmp_path / "back")} == {None}
    code, output = run_cli(["data", "formats"])
    writers = " ".join(output.split("writers (")[1].split())
    assert code == 0 and "ds-release Defect Spectrum release layout" in writers
    assert "keeps no splits" in writers.split("ds-release", 1)[1]


def test_caption_says_it_kept_the_captions_already_there(small_ds: Path) -> None:
    """A second `data caption` said only 'captioned 0 of N samples', as if captioning had failed."""
    assert run_cli(["data", "caption", small_ds])[0] == 0
    code, output = run_cli(["data", "caption", small_ds])
    total = len(list((small_ds / "samples.jsonl").read_text().splitlines()))
    assert code == 0 and " ".join(output.split()) == (
        f"captioned 0 of {total} samples; kept the {total} caption(s) already there (--replace rewrites them)")


@pytest.mark.parametrize("fmt", ["ds", "ds-release", "vision", "coco", "mvtec", "dagm", "magnetic-tile", "sd900",
                                 "mmseg", "cotton", "folder"])
def test_every_reader_on_a_wrong_folder_names_it_and_a_fix(tmp_path: Path, fmt: str) -> None:
    """`--from mvtec` (and mmseg) on the wrong folder said what was missing but not what to do."""
    import numpy as np
    from PIL import Image

    src = tmp_path / "photos"
    (src / "batch").mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(src / "batch" / "a.png")
    code, output = run_cli(["data", "convert", "--from", fmt, src, tmp_path / "ds"])
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {src}: "), output
    fix = lines[0].rsplit(";", 1)[1] if ";" in lines[0] else ""
    assert any(word in fix for word in ("pass", "check", "convert", "put")), lines[0]
    assert not (tmp_path / "ds").exists()


def test_stats_table_keeps_every_digit_at_80_columns() -> None:
    """Piped `data stats` (80 columns) printed Magnetic-tile's region areas as `106…` and `239…`: the
    number columns were cut while the object name kept its full width."""
    from rich.console import Console

    from defectspectrum.data.stats import ClassStats, DatasetStats, ObjectStats, stats_table

    areas = {"p5": 3.0, "p25": 8079.0, "p50": 23934.0, "p75": 30835.0, "p95": 64468.0}
    classes = [ClassStats(index=i, name=name, images=99, regions=107, pixels=1, area_px=areas,
                          area_pct={"p50": 24.11}) for i, name in enumerate(("Blowhole", "Uneven"), 1)]
    obj = ObjectStats(name="magnetic_tile", samples=1344, defective=388, defect_free=956, splits={"unassigned": 1344},
                      classes=classes)
    stats = DatasetStats(name="ds_mt", root="ds_mt", samples=1344, splits={"unassigned": 1344}, image_sizes=[],
                         objects={"magnetic_tile": obj})
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(stats_table(stats))
    text = console.export_text()
    for number in ("1344", "388", "956", "8079", "23934", "30835", "64468", "24.11"):
        assert f" {number} " in text, number


def test_formats_lists_pascal_voc_and_good_folders_under_folder() -> None:
    """The folder reader reads VOC trees and good/ folders, but `data formats` (where a user looks) said neither."""
    code, output = run_cli(["data", "formats"])
    readers = " ".join(output.split("writers (")[0].split())
    folder = readers.split(" folder ", 1)[1]
    assert code == 0 and "Pascal VOC" in folder and "--classes voc" in folder and "good/: defect-free" in folder
