"""The end-to-end demo: runs on tiny settings, writes a report whose images exist, and never deletes user data."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np
import pytest

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.synth import DEFAULT_MATERIALS, MATERIALS
from defectspectrum.data.validate import validate
from defectspectrum.demo import MARKER, main, prepare_out
from defectspectrum.errors import InputError


@pytest.fixture(scope="module")
def demo_run(module_tmp) -> tuple[Path, str]:
    """One tiny demo run (64 px, 2 images per defect folder, first-1 split, 3 segmentation and 3 generator
    steps, 4 clicked defects) shared by the tests; returns (out, stdout)."""
    out = module_tmp("demo") / "demo_output"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["--out", str(out), "--size", "64", "--per-type", "2", "--seed", "3", "--k", "1",
                     "--seg-steps", "3", "--gen-steps", "3", "--click-objects", "4"])
    assert code == 0, printed.getvalue()
    return out, printed.getvalue()


def test_demo_writes_a_report_whose_images_exist(demo_run):
    out, printed = demo_run
    match = re.search(r"^Report: (.+)$", printed, re.MULTILINE)
    assert match, printed
    report = Path(match.group(1))
    assert report.is_absolute() and report == (out / "report.html").resolve() and report.is_file()
    assert len(re.findall(r"^\[\d+/12\] ", printed, re.MULTILINE)) == 12
    html = report.read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) >= 5  # stats plot, contact sheet and several overlays
    for src in srcs:
        assert not src.startswith(("/", "http", "file:")), src
        assert (report.parent / unquote(src)).is_file(), src
    assert "show/contact_sheet.png" in srcs
    assert any(src.startswith("report_files/") for src in srcs)  # the stats figure
    # the registered report sections, with the demo's own steps and files around them
    assert re.findall(r"<h2 [^>]*>(.*?)</h2>", html) == ["Overview", "Steps", "Validation", "Statistics", "Splits",
                                                         "Overlays", "Segmentation", "Quality control",
                                                         "Defect-Gen", "Defect-Click", "Files"]
    assert ">Examples with captions</h3>" in html and "first-1 rule of the paper" in html
    assert "seg/confusion.png" in srcs and any(src.startswith("seg/compare/") for src in srcs)


def test_demo_ds_folder_is_valid_split_and_captioned(demo_run):
    out, _ = demo_run
    folder = DSFolder.open(out / "ds")
    assert set(folder.objects) == set(DEFAULT_MATERIALS)
    assert validate(folder).ok
    assert all(s.split in ("train", "val") for s in folder)
    assert all(s.caption for s in folder)
    # first-1: in each (object, defect type) group the first image trains, the other validates
    groups = Counter((s.object, s.defect_type) for s in folder if s.split == "train")
    assert set(groups.values()) == {1}
    shown = sorted(p.name for p in (out / "show").iterdir())
    assert "contact_sheet.png" in shown and "show.json" in shown
    n_types = sum(len(MATERIALS[m]) + 1 for m in DEFAULT_MATERIALS)
    assert len(shown) - 2 == n_types  # one overlay per (object, defect type)
    assert (out / MARKER).is_file() and (out / "stats.json").is_file() and (out / "validation.json").is_file()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    assert main(["--out", str(precious), "--size", "64", "--per-type", "1"]) == 2
    assert "not a demo output" in capsys.readouterr().err
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.txt"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        prepare_out(a_file)
    assert a_file.read_text() == "x"


def test_prepare_out_replaces_only_marked_folders(tmp_path):
    previous = tmp_path / "old_demo"
    (previous / "ds").mkdir(parents=True)
    (previous / "ds" / "stale.png").write_bytes(b"x")
    (previous / MARKER).write_text("demo")
    prepare_out(previous)
    assert sorted(p.name for p in previous.iterdir()) == [MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_out(empty)
    assert (empty / MARKER).is_file()
    fresh = tmp_path / "new" / "deeper"
    prepare_out(fresh)
    assert (fresh / MARKER).is_file()


def test_demo_segmentation_step_predicts_the_val_split(demo_run):
    out, printed = demo_run
    assert re.search(r"^\[8/12\] seg .* val mIoU \d+\.\d", printed, re.MULTILINE), printed
    truth = DSFolder.open(out / "ds")
    predicted = DSFolder.open(out / "seg" / "pred")
    assert validate(predicted).ok
    expected = sorted(s.id for s in truth.samples(object="metal", split="val"))
    assert sorted(s.id for s in predicted) == expected and expected
    assert predicted.objects["metal"] == truth.objects["metal"]


def test_demo_quality_control_step_judges_the_predictions(demo_run):
    out, printed = demo_run
    assert re.search(r"^\[9/12\] qc +rules on metal val: recall (\d+\.\d%|n/a), FPR", printed, re.MULTILINE), printed
    truth = DSFolder.open(out / "ds")
    verdicts = json.loads((out / "qc" / "qc.json").read_text(encoding="utf-8"))
    assert sorted(i["id"] for i in verdicts["images"]) == sorted(s.id for s in truth.samples(object="metal",
                                                                                             split="val"))
    counts = verdicts["counts"]
    assert counts["tp"] + counts["fn"] + counts["fp"] + counts["tn"] == len(verdicts["images"])
    # the true verdicts, recomputed from the masks: a hole, a scratch region over 400 px, spots over 200 px
    # or stains over 3500 px in all make a part defective
    classes = truth.classes("metal")
    for image in verdicts["images"]:
        mask = truth.load_mask(truth[image["id"]])
        scratch = cv2.connectedComponentsWithStats((mask == classes.index("scratch")).astype(np.uint8),
                                                   connectivity=8)[2][1:, cv2.CC_STAT_AREA]
        defective = bool((mask == classes.index("hole")).any() or (scratch > 400).any()
                         or (mask == classes.index("spot")).sum() > 200
                         or (mask == classes.index("stain")).sum() > 3500)
        assert (image["truth"]["verdict"] == "defective") == defective, image
    assert (out / "qc" / "rules.yaml").is_file() and (out / "qc" / "qc.csv").is_file()


def test_demo_generator_step_draws_measured_pairs(demo_run):
    out, printed = demo_run
    assert re.search(r"^\[10/12\] gen +large \+ small on metal, 3 steps each at 64 px: 8 two-stage pairs",
                     printed, re.MULTILINE), printed
    pairs = DSFolder.open(out / "gen" / "pairs")
    assert validate(pairs).ok and len(pairs) == 8 and all(s.synthetic for s in pairs)
    assert pairs.objects["metal"] == DSFolder.open(out / "ds").objects["metal"]
    measures = json.loads((out / "gen" / "eval.json").read_text(encoding="utf-8"))
    assert measures["samples"] == 8 and "agreement" in measures["consistency"]  # the seg step's model judged them
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("beside its nearest training pair") >= 8
    assert (out / "gen" / "large" / "previews" / "step_0000003.png").is_file()


def test_demo_click_step_clicks_val_defects_with_the_shipped_model(demo_run):
    out, printed = demo_run
    assert re.search(r"^\[11/12\] click +shipped model and GrabCut on 4 val defects: NoC85 default \d+\.\d, "
                     r"grabcut \d+\.\d \(of 10\)", printed, re.MULTILINE), printed
    noc = json.loads((out / "click" / "noc.json").read_text(encoding="utf-8"))
    assert list(noc["models"]) == ["default", "grabcut"] and noc["objects"] == 4
    for metrics in noc["models"].values():
        assert metrics["objects"] == 4 and 1 <= metrics["NoC85"] <= 10
    html = (out / "report.html").read_text(encoding="utf-8")
    assert len(set(re.findall(r"report_files/click/object_\d+\.png", html))) == 4
    assert "the mask after clicks" in html
