"""Other instances of issue 12's defect classes, found by trying them as an attacker would: hostile
JSON/YAML and caption workbooks, captions an .xlsx cannot hold, box-only COCO images, terminal escapes
in printed tables, and two commands rewriting one DS folder's index at once."""

from __future__ import annotations

import json
import os
import signal
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pytest
from PIL import Image

from cli_helpers import invoke, one_line_error
from cli_helpers import make_ds as shared_make_ds
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats.coco_masks import (
    MAX_PAINT_WORK,
    annotation_to_rle,
    decode_rle,
    rasterize_annotations,
)
from defectspectrum.data.formats.ds_release import MAX_WORKBOOK_BYTES, read_captions
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import MAX_SIDE

# -- helpers ------------------------------------------------------------------------------------------------


def make_ds(root: Path) -> DSFolder:
    """A tiny DS folder: two objects, a defective and a defect-free 16x16 sample each."""
    return shared_make_ds(root, "toy", {"plate": ["dent"], "gear": ["chip", "rust"]})


def rewrite_samples(root: Path, **fields: object) -> None:
    """Set `fields` on every line of samples.jsonl (as a hand edit or another tool would)."""
    path = root / "samples.jsonl"
    lines = [{**json.loads(line), **fields} for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    return make_ds(tmp_path / "ds").root


# -- 4. hostile JSON and YAML are one line, in every reader ---------------------------------------------------


@pytest.mark.parametrize(("text", "fragment"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"images": ' + "9" * 5000 + "}", "too many digits"),
])
def test_hostile_json_is_one_line_wherever_it_is_read(ds: Path, tmp_path: Path, text: str, fragment: str) -> None:
    coco = tmp_path / "coco.json"
    coco.write_text(text)
    one_line_error(["data", "convert", "--from", "coco", coco, tmp_path / "out"], str(coco), fragment)
    (ds / "dataset.json").write_text(text)
    one_line_error(["data", "stats", ds], "dataset.json", fragment)
    one_line_error(["data", "convert", ds, tmp_path / "copy"], "dataset.json", fragment)
    assert not (tmp_path / "out").exists() and not (tmp_path / "copy").exists()


@pytest.mark.parametrize(("text", "fragment"), [
    ("dent: " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("dent: " + "9" * 5000, "too many digits"),
])
def test_hostile_yaml_palette_is_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    source = tmp_path / "shots"
    for folder in ("images", "masks"):
        (source / folder).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(source / folder / "a.png")
    palette = tmp_path / "palette.yaml"
    palette.write_text(text)
    one_line_error(["data", "convert", "--from", "folder", "--palette", palette, source, tmp_path / "out"],
                   str(palette), fragment)


def test_a_deeply_nested_index_line_leaves_validate_json_working(ds: Path, tmp_path: Path) -> None:
    with (ds / "samples.jsonl").open("a") as handle:
        handle.write("[" * 100_000 + "]" * 100_000 + "\n")
    result = invoke("data", "validate", ds, "--json", tmp_path / "report.json")
    assert result.exit_code == 1, result.output  # the bad line is a reported error, not a crash
    codes = {issue["code"] for issue in json.loads((tmp_path / "report.json").read_text())["issues"]}
    assert "bad-index-entry" in codes


# -- 2./5. ds-release captions: never cut, dropped or turned into formulas -------------------------------------


def test_captions_that_look_like_formulas_or_errors_round_trip_as_text(ds: Path, tmp_path: Path) -> None:
    captions = {"plate/bad": "=HYPERLINK(\"http://x\",\"y\")", "plate/good": "#N/A",
                "gear/bad": "line one\nline\ttwo", "gear/good": "+1-2"}
    folder = DSFolder.open(ds)
    folder.update([s.replace(caption=captions[s.id]) for s in folder])
    folder.save()
    assert invoke("data", "export", ds, tmp_path / "release", "--to", "ds-release").exit_code == 0
    sheet = openpyxl.load_workbook(tmp_path / "release" / "captions.xlsx").active
    assert all(cell.data_type == "s" for row in sheet.iter_rows() for cell in row)  # text, never a formula
    assert invoke("data", "convert", tmp_path / "release", tmp_path / "back").exit_code == 0
    back = {s.id: s.caption for s in DSFolder.open(tmp_path / "back")}
    assert back == captions


@pytest.mark.parametrize(("caption", "fragment"), [
    ("x" * 40_000, "40000 characters"),
    ("bell \x07 in a caption", "control character '\\x07'"),
])
def test_a_caption_an_xlsx_cannot_hold_is_refused_not_cut(ds: Path, tmp_path: Path, caption: str,
                                                          fragment: str) -> None:
    rewrite_samples(ds, caption=caption)
    one_line_error(["data", "export", ds, tmp_path / "release", "--to", "ds-release"], "plate/bad", fragment)
    assert not (tmp_path / "release").exists()
    assert invoke("data", "export", ds, tmp_path / "coco", "--to", "coco").exit_code == 0  # coco keeps it whole


def _release_with_captions(root: Path, path_cell: str, caption: str) -> Path:
    """A one-image DS-MVTec tree whose captions.xlsx holds one row, its cells written into the sheet's
    XML as they are (openpyxl would cut a cell to 32767 characters)."""
    image = root / "DS-MVTec" / "bottle" / "image" / "good" / "000.png"
    image.parent.mkdir(parents=True)
    (root / "DS-MVTec" / "bottle" / "mask").mkdir()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(image)
    book = root / "DS-MVTec" / "captions.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.append(["Path", "defect description"])
    workbook.active.append(["PATH-CELL", "CAPTION-CELL"])
    workbook.save(book)
    with zipfile.ZipFile(book) as original:
        parts = {name: original.read(name) for name in original.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet] = parts[sheet].replace(b"PATH-CELL", path_cell.encode()).replace(b"CAPTION-CELL", caption.encode())
    with zipfile.ZipFile(book, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as rewritten:
        for name, data in parts.items():
            rewritten.writestr(name, data)
    return book


def test_a_caption_zip_bomb_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    book = _release_with_captions(tmp_path / "release", "bottle/image/good/000.png", "a" * (MAX_WORKBOOK_BYTES + 1))
    assert book.stat().st_size < MAX_WORKBOOK_BYTES // 100  # small on disk, huge once unpacked
    one_line_error(["data", "convert", "--from", "ds-release", tmp_path / "release", tmp_path / "out"],
                   str(book), "zip bombs")
    assert not (tmp_path / "out").exists()


def test_a_caption_path_with_very_many_parts_costs_memory_in_proportion(tmp_path: Path) -> None:
    # Every tail of every Path used to be a dict key: 200000 parts were 2e10 tuple entries (out of memory).
    deep = "x/" * 200_000 + "bottle/image/good/000.png"
    _release_with_captions(tmp_path / "release", deep, "deep but found")
    assert len(read_captions(tmp_path / "release" / "DS-MVTec" / "captions.xlsx")) == 1
    assert invoke("data", "convert", tmp_path / "release", tmp_path / "out").exit_code == 0
    assert [s.caption for s in DSFolder.open(tmp_path / "out")] == ["deep but found"]


# -- 2. box-only COCO images are left out and counted, never made defect-free ----------------------------------


def _coco_source(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("boxed.png", "drawn.png", "plain.png"):
        Image.fromarray(np.full((16, 16, 3), 80, np.uint8)).save(folder / name)
    data = {"images": [{"id": i, "file_name": n, "height": 16, "width": 16}
                       for i, n in enumerate(("boxed.png", "drawn.png", "plain.png"), start=1)],
            "categories": [{"id": 1, "name": "scratch"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
                            {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]},
                            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [10, 10, 2, 2]}]}
    path = folder / "_annotations.coco.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("reader", ["coco", "vision"])
def test_box_only_images_are_skipped_and_counted(tmp_path: Path, reader: str) -> None:
    annotations = _coco_source(tmp_path / "src" / "Cap" / "train")
    source = annotations if reader == "coco" else tmp_path / "src"
    result = invoke("data", "convert", "--from", reader, source, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "skipped 1 unlabelled image(s)" in result.stdout
    samples = {s.name.removeprefix("train_"): s for s in DSFolder.open(tmp_path / "out")}
    assert sorted(samples) == ["drawn", "plain"]  # the box-only image is not a defect-free sample
    assert samples["drawn"].defect_type == "scratch" and samples["plain"].defect_type == "good"


# -- 4. names printed in tables: markup and terminal escapes shown literally ------------------------------------


def test_tables_print_markup_and_escape_sequences_literally(ds: Path) -> None:
    data = json.loads((ds / "dataset.json").read_text())
    data["name"] = "toy\x1b]0;pwned\x07"
    data["objects"]["plate"]["classes"][1] = "[/]dent\x1b[41m"
    (ds / "dataset.json").write_text(json.dumps(data))
    rewrite_samples(ds, split="[/]train\x1b[2J")
    for command in ("stats", "validate"):
        result = invoke("data", command, ds)
        assert result.exit_code in (0, 1), result.output
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, command
    stats = invoke("data", "stats", ds).stdout
    assert "[/]train\\x1b[2J" in stats and "[/]dent\\x1" in stats and "toy\\x1b]0;pwned\\x07" in stats


# -- 2. two commands rewriting one index: no lost update -------------------------------------------------------


def test_a_save_over_an_index_rewritten_meanwhile_is_refused(ds: Path) -> None:
    splitter, captioner = DSFolder.open(ds), DSFolder.open(ds)  # `data split` and `data caption` at once
    splitter.update([s.replace(split="train") for s in splitter])
    splitter.save()
    captioner.update([s.replace(caption="a caption") for s in captioner])
    with pytest.raises(InputError, match="rewritten by another run since this one read it"):
        captioner.save()
    assert {(s.split, s.caption) for s in DSFolder.open(ds)} == {("train", None)}  # the split was kept
    splitter.update([s.replace(split="val") for s in splitter])
    splitter.save()  # a folder's own earlier save is no conflict
    assert {s.split for s in DSFolder.open(ds)} == {"val"}


def test_the_split_and_caption_commands_never_undo_each_other(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from defectspectrum.data import captions

    real = captions.caption_folder

    def split_meanwhile(folder: DSFolder, **options: object) -> int:
        assert invoke("data", "split", ds, "--rule", "random", "--seed", "1").exit_code == 0
        return real(folder, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(captions, "caption_folder", split_meanwhile)
    one_line_error(["data", "caption", ds], str(ds), "run this command again")
    monkeypatch.undo()
    assert all(s.split is not None and s.caption is None for s in DSFolder.open(ds))
    assert invoke("data", "caption", ds).exit_code == 0
    assert all(s.split is not None and s.caption for s in DSFolder.open(ds))


# -- 2. `convert --from ds` keeps every field it promises to keep ------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_ds_folder_copy_keeps_unknown_fields_sources_and_dataset_fields(ds: Path, tmp_path: Path,
                                                                          workers: str) -> None:
    rewrite_samples(ds, source="mvtec:/data/bottle/000.png", reviewer="alice", boxes=[[1, 2, 3, 4]])
    data = json.loads((ds / "dataset.json").read_text())
    (ds / "dataset.json").write_text(json.dumps({**data, "license": "CC BY-NC-SA 4.0", "citation": "Bergmann"}))
    assert invoke("data", "convert", ds, tmp_path / "copy", "-j", workers).exit_code == 0
    copy = DSFolder.open(tmp_path / "copy")
    assert len(copy) == 4
    for sample in copy:
        assert sample.source == "mvtec:/data/bottle/000.png"
        assert sample.extra == {"reviewer": "alice", "boxes": [[1, 2, 3, 4]]}
    assert (copy.meta["license"], copy.meta["citation"]) == ("CC BY-NC-SA 4.0", "Bergmann")
    assert copy.meta["source"]["format"] == "ds"


# -- 2. exports whose split folders differ only in case (one folder on Windows and macOS) ---------------------


@pytest.mark.parametrize(("to", "folders"), [("coco", ("images", "annotations")), ("mmseg", ("img_dir", "ann_dir"))])
def test_splits_differing_only_in_case_get_folders_apart_ignoring_case(ds: Path, tmp_path: Path, to: str,
                                                                       folders: tuple[str, str]) -> None:
    folder = DSFolder.open(ds)
    splits = {"plate/bad": "train", "plate/good": "Train", "gear/bad": "TRAIN", "gear/good": None}
    folder.update([s.replace(split=splits[s.id]) for s in folder])
    folder.save()
    assert invoke("data", "export", ds, tmp_path / "out", "--to", to).exit_code == 0
    for name in folders:
        entries = [p.name for p in (tmp_path / "out" / name).iterdir()]
        assert len({e.lower() for e in entries}) == len(entries) == 4, entries
    assert (tmp_path / "out" / folders[0] / "train").is_dir()  # the plain name keeps its folder
    assert invoke("data", "convert", tmp_path / "out", tmp_path / "back").exit_code == 0
    assert {s.id: s.split for s in DSFolder.open(tmp_path / "back")} == splits


# -- 4. outputs named `.`, `..` or `/`: one line, and built beside the folder meant ---------------------------


@pytest.mark.parametrize("args", [["data", "export", "DS", ".", "--to", "coco"],
                                  ["data", "export", "DS", ".", "--to", "mmseg"],
                                  ["data", "export", "DS", ".", "--to", "ds-release"],
                                  ["data", "synth", ".", "--size", "32", "--per-type", "1", "--good", "0"],
                                  ["report", "DS", "--out", "report.html"]])
def test_the_current_folder_as_output_is_one_line(ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  args: list[str]) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    one_line_error([str(ds) if a == "DS" else a for a in args], "is the current folder")
    assert list(here.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["ds", "here"]


def test_clean_takes_dot_dotdot_and_refuses_a_root_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "out" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "out")
    assert invoke("data", "clean", ".").exit_code == 0
    assert invoke("data", "clean", "sub/..").exit_code == 0
    one_line_error(["data", "clean", "/"], "is a root folder")


def test_an_output_written_through_dotdot_lands_where_it_points(ds: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert invoke("data", "export", ds, tmp_path / "a" / ".." / "coco", "--to", "coco").exit_code == 0
    assert (tmp_path / "coco" / "annotations").is_dir() and list((tmp_path / "a").iterdir()) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# -- 3./4. a pipe where a file is read: one line, never a hang --------------------------------------------------


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail (instead of blocking the suite) where a command waits on a pipe for more than 20 seconds."""

    def give_up(*_: object) -> None:
        raise TimeoutError("blocked reading a pipe")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
@pytest.mark.parametrize(("pipe", "args", "fragment"), [
    ("samples.jsonl", ["data", "stats", "DS"], "samples.jsonl: is not a regular file"),
    ("samples.jsonl", ["data", "validate", "DS"], "samples.jsonl: is not a regular file"),
    ("dataset.json", ["data", "convert", "DS", "OUT"], "(this looks like a DS folder)"),
    ("dataset.json", ["data", "stats", "DS"], "dataset.json: is not a regular file"),
])
def test_a_pipe_in_place_of_an_index_file_is_one_line(ds: Path, tmp_path: Path, no_hang: None, pipe: str,
                                                      args: list[str], fragment: str) -> None:
    (ds / pipe).unlink()
    os.mkfifo(ds / pipe)
    paths = {"DS": str(ds), "OUT": str(tmp_path / "out")}
    one_line_error([paths.get(a, a) for a in args], fragment)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_given_as_the_palette_is_one_line(tmp_path: Path, no_hang: None) -> None:
    source = tmp_path / "shots"
    for folder in ("images", "masks"):
        (source / folder).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(source / folder / "a.png")
    os.mkfifo(tmp_path / "palette.json")
    one_line_error(["data", "convert", "--from", "folder", "--palette", tmp_path / "palette.json", source,
                    tmp_path / "out"], "palette.json: is not a regular")


# -- 3. many COCO annotations: drawn in time that grows with the shapes, not shapes x image size ---------------


def _reference_raster(annotations: list[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """The overlap rule drawn the plain way: each shape decoded at full size, largest area first."""
    from pycocotools import mask as mask_utils

    shapes = []
    for position, annotation in enumerate(annotations):
        rle = annotation_to_rle(annotation, height, width)
        shapes.append((-int(mask_utils.area(rle)), annotation["id"], position, rle, annotation["category_id"]))
    mask = np.zeros((height, width), np.uint8)
    for *_, rle, category in sorted(shapes, key=lambda shape: shape[:3]):
        mask[decode_rle(rle)] = category
    return mask


def test_run_by_run_drawing_matches_full_decoding_exactly() -> None:
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(7)
    for _ in range(60):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        annotations: list[dict[str, Any]] = []
        for _ in range(int(rng.integers(1, 7))):
            if rng.random() < 0.5:
                points = int(rng.integers(3, 10))
                xy = np.stack([rng.uniform(-width, 2 * width, points), rng.uniform(-height, 2 * height, points)], 1)
                segmentation: Any = [xy.ravel().tolist()]
            else:
                shape = (rng.random((height, width)) < rng.random()).astype(np.uint8)
                counts = mask_utils.encode(np.asfortranarray(shape))["counts"].decode()
                segmentation = {"size": [height, width], "counts": counts}
            annotations.append({"id": int(rng.integers(0, 4)), "category_id": int(rng.integers(1, 4)),
                                "segmentation": segmentation})
        drawn = rasterize_annotations(annotations, height, width, {1: 1, 2: 2, 3: 3})
        np.testing.assert_array_equal(drawn, _reference_raster(annotations, height, width))
        assert drawn.flags.c_contiguous


def test_thousands_of_tiny_annotations_on_a_large_image_are_drawn() -> None:
    # A full decode per annotation made this 2000 x 64 megapixels of work (tens of minutes).
    annotations = [{"id": i, "category_id": 1 + i % 2, "segmentation": [[i % 500, 7, i % 500 + 3, 7, i % 500, 10]]}
                   for i in range(2000)]
    drawn = rasterize_annotations(annotations, 8192, 8192, {1: 1, 2: 2})
    assert set(np.unique(drawn[:20, :510]).tolist()) == {0, 1, 2} and not drawn[20:].any()


def test_an_image_whose_shapes_take_too_long_to_draw_is_refused_before_drawing() -> None:
    band = [[0, 1, 64, 1, 64, 63, 0, 63]]  # rows 1..62 of a 64x64 image: one run per column, spanning it
    annotations = [{"id": i, "category_id": 1, "segmentation": band} for i in range(2 * MAX_PAINT_WORK)]
    with pytest.raises(FormatError, match=r"x\.json: image 3: its annotations take more than"):
        rasterize_annotations(annotations, 64, 64, {1: 1}, where="x.json: image 3")
    drawn = rasterize_annotations(annotations[:MAX_PAINT_WORK // 2], 64, 64, {1: 1})
    assert drawn[1:63].all() and not drawn[[0, 63]].any()


# -- 2. nothing dropped or replaced without a word -----------------------------------------------------------


def test_an_unlabelled_mmseg_split_folder_is_counted_as_skipped(tmp_path: Path) -> None:
    source = tmp_path / "mm"
    for folder, names in (("img_dir/train", ("a",)), ("ann_dir/train", ("a",)), ("img_dir/test", ("b", "c"))):
        (source / folder).mkdir(parents=True)
        for name in names:
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(source / folder / f"{name}.png")
    result = invoke("data", "convert", "--from", "mmseg", source, tmp_path / "out")
    assert result.exit_code == 0 and "skipped 2 unlabelled image(s)" in result.stdout, result.output


def test_split_says_how_many_samples_left_the_split_they_had(ds: Path) -> None:
    folder = DSFolder.open(ds)
    folder.update([s.replace(split="test") for s in folder])  # e.g. the source's own test split
    folder.save()
    result = invoke("data", "split", ds, "--k", "1")
    assert result.exit_code == 0 and "moved 4 sample(s) out of the split they had: test 4" in result.stdout
    assert "moved" not in invoke("data", "split", ds, "--k", "1").stdout  # nothing changed this time


# -- 3. what a killed save leaves inside a DS folder, data clean removes -------------------------------------


def test_data_clean_removes_temporary_files_of_killed_writes_inside_the_folder(ds: Path) -> None:
    import subprocess
    import sys
    import time

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    dead = int(ended.stdout)
    old = time.time() - 3600
    left = {"index": ds / f".samples.jsonl.{dead}.0.tmp", "image": ds / "plate" / "images" / f".bad.png.{dead}.7.tmp",
            "fresh": ds / f".dataset.json.{dead}.1.tmp", "live": ds / f".samples.jsonl.{os.getpid()}.3.tmp",
            "mine": ds / ".notes.tmp"}
    for name, path in left.items():
        path.write_text("partial")
        if name != "fresh":
            os.utime(path, (old, old))
    (ds / f".x.png.{dead}.2.tmp").symlink_to(ds / "dataset.json")
    result = invoke("data", "clean", ds)
    assert result.exit_code == 0, result.output
    assert not left["index"].exists() and not left["image"].exists()
    assert left["fresh"].exists() and left["live"].exists() and left["mine"].exists()
    assert (ds / f".x.png.{dead}.2.tmp").is_symlink() and (ds / "dataset.json").is_file()
    assert "removed" in result.stdout and "kept" in result.stdout
    assert len(DSFolder.open(ds)) == 4


# -- 4. messages keep their file and fix ------------------------------------------------------------------------


def test_a_workbook_error_over_several_lines_keeps_its_fix_on_the_one_line(tmp_path: Path) -> None:
    # An XML entity bomb in the sheet: expat refuses it, and openpyxl's message runs over two lines.
    entities = '<!DOCTYPE worksheet [<!ENTITY a0 "xxxxxxxxxx">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)) + "]>"
    book = _release_with_captions(tmp_path / "release", "bottle/image/good/000.png", "&a9;")
    with zipfile.ZipFile(book) as original:
        parts = {name: original.read(name) for name in original.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet] = parts[sheet].replace(b"<worksheet", entities.encode() + b"<worksheet", 1)
    with zipfile.ZipFile(book, "w") as rewritten:
        for name, data in parts.items():
            rewritten.writestr(name, data)
    one_line_error(["data", "convert", tmp_path / "release", tmp_path / "out"], str(book),
                   "re-save it as .xlsx or remove it")


@pytest.mark.parametrize(("classes", "fragment"), [("dent,dent", "--classes: class map"),
                                                   (",".join(f"c{i}" for i in range(300)), "--classes: class map")])
def test_folder_class_errors_name_the_option(tmp_path: Path, classes: str, fragment: str) -> None:
    source = tmp_path / "shots"
    for folder in ("images", "masks"):
        (source / folder).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(source / folder / "a.png")
    one_line_error(["data", "convert", "--from", "folder", "--classes", classes, source, tmp_path / "out"], fragment)
    result = invoke("data", "convert", "--from", "folder", "--classes", "background,dent", source, tmp_path / "ok")
    assert result.exit_code == 0 and DSFolder.open(tmp_path / "ok").objects["shots"].names == ("background", "dent")


# -- 3. absurd aspect ratios within the pixel limit ---------------------------------------------------------------


def test_a_side_longer_than_opencv_reads_is_refused_from_the_header(tmp_path: Path) -> None:
    source = tmp_path / "strip"
    for folder in ("images", "masks"):
        (source / folder).mkdir(parents=True)
    long_side = MAX_SIDE + 1  # 1 x 1048577: far below the pixel limit, yet Pillow cannot resample a 1 x 10^8 strip
    Image.fromarray(np.zeros((1, long_side), np.uint8)).save(source / "images" / "a.png")
    Image.fromarray(np.zeros((1, long_side), np.uint8)).save(source / "masks" / "a.png")
    one_line_error(["data", "convert", source, tmp_path / "out"], str(source / "images" / "a.png"),
                   f"a side longer than {MAX_SIDE} pixels", "crop or tile")
    folder = DSFolder.create(tmp_path / "ds", objects={"strip": ["dent"]})
    folder.add_sample("strip", "ok", np.zeros((1, MAX_SIDE, 3), np.uint8), np.zeros((1, MAX_SIDE), np.uint8))
    folder.save()
    assert invoke("data", "validate", tmp_path / "ds").exit_code == 0  # the longest side allowed goes through
    Image.fromarray(np.zeros((1, long_side), np.uint8)).save(tmp_path / "ds" / "strip" / "images" / "ok.png")
    result = invoke("data", "validate", tmp_path / "ds", "--json", tmp_path / "report.json")
    assert result.exit_code == 1
    assert "too-large" in [i["code"] for i in json.loads((tmp_path / "report.json").read_text())["issues"]]


# -- 3. huge numbers of classes ----------------------------------------------------------------------------------


def test_more_than_65535_global_classes_keep_their_coco_category_ids(tmp_path: Path) -> None:
    # 256 objects of 255 classes, then 200 and 100 more: the last object's global ids pass 65535 (a uint16 table
    # wrapped them to 0.. silently, or failed with OverflowError).
    objects = {f"o{i}": [f"c{j}" for j in range(255)] for i in range(256)}
    objects.update({"big": [f"b{j}" for j in range(200)], "last": [f"l{j}" for j in range(100)]})
    folder = DSFolder.create(tmp_path / "ds", objects=objects)
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0], mask[2:, 2:] = 100, 60
    folder.add_sample("last", "a", np.zeros((4, 4, 3), np.uint8), mask)
    folder.save()
    assert invoke("data", "export", tmp_path / "ds", tmp_path / "coco", "--to", "coco").exit_code == 0
    document = json.loads((tmp_path / "coco" / "annotations" / "instances_unsplit.json").read_text())
    names = {c["id"]: c["name"] for c in document["categories"]}
    assert sorted(names[a["category_id"]] for a in document["annotations"]) == ["last/l59", "last/l99"]
    assert invoke("data", "convert", tmp_path / "coco", tmp_path / "back").exit_code == 0
    back = DSFolder.open(tmp_path / "back")
    np.testing.assert_array_equal(back.load_mask(back["last/a"]), mask)


def test_an_mmseg_restore_index_with_more_classes_than_uint8_is_one_line(tmp_path: Path, ds: Path) -> None:
    assert invoke("data", "export", ds, tmp_path / "mm", "--to", "mmseg").exit_code == 0
    classes = json.loads((tmp_path / "mm" / "classes.json").read_text())
    for name in classes["objects"]:
        classes["objects"][name]["classes"] = ["background"] + [f"{name}{i}" for i in range(200)]
    (tmp_path / "mm" / "classes.json").write_text(json.dumps(classes))
    one_line_error(["data", "convert", tmp_path / "mm", tmp_path / "out"], "classes.json", "400 classes")


# -- 3. a mask of many specks exports in time that grows with the regions ------------------------------------------


def test_region_rle_from_its_box_is_byte_for_byte_pycocotools_encode() -> None:
    from pycocotools import mask as mask_utils

    from defectspectrum.data.formats.coco import _rle_segmentation
    from defectspectrum.regions import regions

    rng = np.random.default_rng(5)
    for trial in range(120):
        height, width = (int(v) for v in rng.integers(1, 30, 2))
        mask = ((rng.random((height, width)) < rng.random()) * rng.integers(1, 4, (height, width))).astype(np.uint8)
        if trial % 5 == 0:
            mask[:] = 1  # one region reaching the first and the last pixel
        for region in regions(mask):
            full = mask_utils.encode(np.asfortranarray(region.binary().astype(np.uint8)))
            assert _rle_segmentation(region, height, width) == {"size": [height, width],
                                                                "counts": full["counts"].decode("ascii")}


def test_a_mask_of_many_specks_round_trips_through_coco(tmp_path: Path) -> None:
    # Each region used to be encoded at full image size: regions x pixels (a megapixel of specks took days).
    mask = np.zeros((600, 600), np.uint8)
    mask[0::4, 0::4], mask[2::4, 2::4] = 1, 2  # isolated pixels, 8-connectivity included
    folder = DSFolder.create(tmp_path / "ds", objects={"plate": ["dust", "pit"]})
    folder.add_sample("plate", "specks", np.zeros((600, 600), np.uint8), mask)
    folder.save()
    assert invoke("data", "export", tmp_path / "ds", tmp_path / "coco", "--to", "coco").exit_code == 0
    document = json.loads((tmp_path / "coco" / "annotations" / "instances_unsplit.json").read_text())
    assert len(document["annotations"]) == 2 * 150 * 150
    assert invoke("data", "convert", tmp_path / "coco", tmp_path / "back").exit_code == 0
    back = DSFolder.open(tmp_path / "back")
    np.testing.assert_array_equal(back.load_mask(back["plate/specks"]), mask)
