"""Validation: each kind of broken file, empty masks, duplicates across splits, CLI exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data import validate as validate_module
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.validate import ERROR, WARNING, validate
from defectspectrum.errors import InputError
from defectspectrum.io import save_png_atomic

SIZE = (96, 96)


def texture(seed: int) -> np.ndarray:
    """Smooth coloured noise: distinct seeds give perceptually distinct images."""
    noise = np.random.default_rng(seed).random((*SIZE, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    smooth = (smooth - smooth.min()) / (np.ptp(smooth) + 1e-9)
    return (smooth * 200 + 20).astype(np.uint8)


def defect_mask(index: int = 1) -> np.ndarray:
    mask = np.zeros(SIZE, np.uint8)
    mask[10:20, 30:45] = index
    return mask


def build(root: Path) -> DSFolder:
    """A clean folder: pill (crack, color); four defective and one good sample, train and val."""
    folder = DSFolder.create(root, "clean", {"pill": ["crack", "color"]})
    for seed, (name, split) in enumerate([("a", "train"), ("b", "train"), ("c", "val"), ("d", "val")]):
        folder.add_sample("pill", name, texture(seed), defect_mask(1 + seed % 2), split=split, defect_type="crack")
    folder.add_sample("pill", "g", texture(10), np.zeros(SIZE, np.uint8), split="train", defect_type="good")
    folder.save()
    return folder


def codes(report: validate_module.ValidationReport) -> dict[str, str]:
    """code -> level of every issue."""
    return {issue.code: issue.level for issue in report.issues}


def test_clean_folder_has_no_issues(tmp_path: Path) -> None:
    report = validate(build(tmp_path / "ds"))
    assert report.ok and report.issues == [] and report.samples == 5


def test_corrupt_image_is_unreadable(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    (folder.root / folder["pill/b"].image).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    report = validate(folder)
    assert not report.ok
    [issue] = report.issues
    assert (issue.level, issue.code, issue.sample, issue.file) == (ERROR, "unreadable", "pill/b", "pill/images/b.png")


def test_corrupt_and_missing_masks(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    (folder.root / folder["pill/a"].mask).write_bytes(b"")
    (folder.root / folder["pill/c"].mask).unlink()
    found = {(i.code, i.sample) for i in validate(folder).issues}
    assert found == {("unreadable", "pill/a"), ("missing-file", "pill/c")}


def test_mask_of_another_size(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    save_png_atomic(np.zeros((40, 30), np.uint8) + 1, folder.root / folder["pill/a"].mask)
    [issue] = validate(folder).issues
    assert (issue.code, issue.level, issue.sample) == ("size-mismatch", ERROR, "pill/a")
    assert "30x40" in issue.message and "96x96" in issue.message


def test_mask_index_outside_class_map(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    save_png_atomic(defect_mask(5), folder.root / folder["pill/d"].mask)
    [issue] = validate(folder).issues
    assert (issue.code, issue.level, issue.sample) == ("index-out-of-map", ERROR, "pill/d")
    assert "index 5" in issue.message


def test_colour_mask_is_not_single_channel(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    rgb = np.repeat(defect_mask()[:, :, None], 3, axis=2)
    Image.fromarray(rgb).save(folder.root / folder["pill/a"].mask)
    assert codes(validate(folder)) == {"mask-not-single-channel": ERROR}


def test_empty_mask_on_defective_sample_and_mask_on_good_are_warnings(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    folder.add_sample("pill", "e", texture(20), np.zeros(SIZE, np.uint8), split="train", defect_type="crack")
    folder.add_sample("pill", "h", texture(21), defect_mask(), split="train", defect_type="good")
    report = validate(folder)
    assert report.ok
    assert {(i.code, i.level, i.sample) for i in report.issues} == {
        ("empty-mask", WARNING, "pill/e"), ("mask-on-good", WARNING, "pill/h")}


def test_same_image_in_train_and_val_is_an_error(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    folder.add_sample("pill", "copy", texture(0), defect_mask(), split="val", defect_type="crack")  # = pill/a (train)
    report = validate(folder)
    assert not report.ok
    [issue] = report.issues
    assert (issue.code, issue.sample, issue.other) == ("duplicate-across-splits", "pill/copy", "pill/a")


def test_brightened_copy_across_splits_is_a_near_duplicate_error(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    brighter = np.clip(texture(2).astype(int) + 2, 0, 255).astype(np.uint8)  # pill/c is val
    folder.add_sample("pill", "bright", brighter, defect_mask(), split="train", defect_type="crack")
    [issue] = validate(folder).issues
    assert (issue.code, issue.level) == ("near-duplicate-across-splits", ERROR)
    assert (issue.sample, issue.other) == ("pill/c", "pill/bright")  # names the non-training sample


def test_jpeg_reencoded_copy_across_splits_is_a_near_duplicate_error(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    jpeg = tmp_path / "copy.jpg"
    Image.fromarray(texture(1)).save(jpeg, quality=85)  # pill/b is train
    folder.add_sample("pill", "jpeg", jpeg, defect_mask(), split="val", defect_type="crack")
    [issue] = validate(folder).issues
    assert (issue.code, issue.sample, issue.other, issue.file) == (
        "near-duplicate-across-splits", "pill/jpeg", "pill/b", "pill/images/jpeg.jpg")


def test_duplicates_within_a_split_or_unassigned_are_warnings(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    folder.add_sample("pill", "same", texture(0), defect_mask(), split="train", defect_type="crack")
    folder.add_sample("pill", "loose", texture(3), defect_mask(), split=None, defect_type="crack")
    report = validate(folder)
    assert report.ok
    assert {(i.code, i.level, frozenset((i.sample, i.other))) for i in report.issues} == {
        ("duplicate", WARNING, frozenset(("pill/a", "pill/same"))),
        ("duplicate", WARNING, frozenset(("pill/d", "pill/loose")))}


def test_many_identical_images_are_reported_once_each_not_pairwise(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    blank = np.full((*SIZE, 3), 128, np.uint8)
    splits = ["val", "train", "val", "test", None, "train"]
    for number, split in enumerate(splits):
        folder.add_sample("pill", f"blank{number}", blank, np.zeros(SIZE, np.uint8), split=split, defect_type="good")
    issues = validate(folder).issues
    assert len(issues) == len(splits) - 1  # pairwise reporting gave 15
    assert {i.other for i in issues} == {"pill/blank1"}  # the first training copy
    assert {(i.sample, i.code) for i in issues} == {
        ("pill/blank0", "duplicate-across-splits"), ("pill/blank2", "duplicate-across-splits"),
        ("pill/blank3", "duplicate-across-splits"), ("pill/blank4", "duplicate"), ("pill/blank5", "duplicate")}


def test_copies_in_val_and_test_only_are_still_errors(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    blank = np.full((*SIZE, 3), 128, np.uint8)
    for number, split in enumerate([None, "test", "val"]):
        folder.add_sample("pill", f"blank{number}", blank, np.zeros(SIZE, np.uint8), split=split, defect_type="good")
    assert {(i.sample, i.code, i.other) for i in validate(folder).issues} == {
        ("pill/blank0", "duplicate", "pill/blank1"), ("pill/blank2", "duplicate-across-splits", "pill/blank1")}


def test_a_near_duplicate_group_is_one_issue_listing_every_copy(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")  # pill/c is val
    brighter = np.clip(texture(2).astype(int) + 2, 0, 255).astype(np.uint8)
    for number in range(3):
        folder.add_sample("pill", f"bright{number}", brighter, defect_mask(), split="train", defect_type="crack")
    issues = validate(folder).issues
    near = [i for i in issues if i.code.startswith("near-duplicate")]
    assert len(near) == 1  # pairwise reporting gave 3
    assert (near[0].code, near[0].sample, near[0].other) == ("near-duplicate-across-splits", "pill/c", "pill/bright0")
    assert near[0].group == ("pill/c", "pill/bright0", "pill/bright1", "pill/bright2")  # in folder order
    assert near[0].to_json()["group"] == list(near[0].group)
    assert all(name in near[0].message for name in near[0].group)
    assert sorted((i.sample, i.other) for i in issues if i.code == "duplicate") == [
        ("pill/bright1", "pill/bright0"), ("pill/bright2", "pill/bright0")]
    assert len(issues) == 3


def test_near_duplicates_within_one_split_are_one_warning(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")  # pill/a is train
    for step in (2, 4):
        brighter = np.clip(texture(0).astype(int) + step, 0, 255).astype(np.uint8)
        folder.add_sample("pill", f"shot{step}", brighter, defect_mask(), split="train", defect_type="crack")
    near = [i for i in validate(folder).issues if i.code.startswith("near-duplicate")]
    assert [(i.code, i.level, i.sample, i.other, i.group) for i in near] == [
        ("near-duplicate", WARNING, "pill/shot2", "pill/a", ("pill/a", "pill/shot2", "pill/shot4"))]


def test_hash_distance_above_the_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="hash distance 33"):
        validate(build(tmp_path / "ds"), hash_distance=33)


def test_hash_distance_zero_still_finds_identical_images(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    folder.add_sample("pill", "copy", texture(0), defect_mask(), split="val", defect_type="crack")
    assert codes(validate(folder, hash_distance=0)) == {"duplicate-across-splits": ERROR}


def test_unknown_split_is_a_warning(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    folder.update([folder["pill/a"].replace(split="training")])
    assert codes(validate(folder)) == {"unknown-split": WARNING}


def test_report_json(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    (folder.root / folder["pill/b"].image).write_bytes(b"junk")
    folder.add_sample("pill", "e", texture(20), np.zeros(SIZE, np.uint8), split="train", defect_type="crack")
    data = json.loads(json.dumps(validate(folder).to_json()))
    assert data["ok"] is False
    assert data["summary"] == {"samples": 6, "errors": 1, "warnings": 1, "hash_distance": 4,
                               "by_code": {"empty-mask": 1, "unreadable": 1}}
    assert {i["code"] for i in data["issues"]} == {"unreadable", "empty-mask"}
    assert all({"level", "code", "sample", "file", "message"} <= set(i) for i in data["issues"])


def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    runner = CliRunner()
    clean = runner.invoke(app, ["data", "validate", str(folder.root)])
    assert clean.exit_code == 0, clean.output
    assert "OK" in clean.output

    save_png_atomic(defect_mask(9), folder.root / folder["pill/a"].mask)
    report = tmp_path / "report.json"
    failed = runner.invoke(app, ["data", "validate", str(folder.root), "--json", str(report)])
    assert failed.exit_code == 1, failed.output
    assert "index-out-of-map" in failed.output
    data = json.loads(report.read_text())
    assert data["summary"]["errors"] == 1 and data["issues"][0]["sample"] == "pill/a"


def test_cli_warnings_only_exit_zero(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    folder.add_sample("pill", "e", texture(20), np.zeros(SIZE, np.uint8), split="train", defect_type="crack")
    folder.save()
    result = CliRunner().invoke(app, ["data", "validate", str(folder.root)])
    assert result.exit_code == 0, result.output
    assert "empty-mask" in result.output


def test_look_alike_lines_skip_the_near_duplicate_search_unless_asked(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = build(tmp_path / "ds")  # pill/c is val
    brighter = np.clip(texture(2).astype(int) + 2, 0, 255).astype(np.uint8)
    folder.add_sample("pill", "bright", brighter, defect_mask(), split="train", defect_type="crack")
    monkeypatch.setattr(validate_module, "NEAR_DUPLICATE_BUDGET", -1)  # every search is over budget
    skipped = validate(folder).issues
    assert [(i.code, i.level) for i in skipped if "near" in i.code] == [("near-duplicates-skipped", WARNING)]
    assert "--near-duplicates full" in skipped[-1].message
    full = validate(folder, near_duplicates="full").issues
    assert [i.code for i in full if "near" in i.code] == ["near-duplicate-across-splits"]
    assert not [i for i in validate(folder, near_duplicates="off").issues if "near" in i.code]
    with pytest.raises(InputError, match="choose one of auto, full, off"):
        validate(folder, near_duplicates="sometimes")


def test_cli_near_duplicates_off(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    brighter = np.clip(texture(2).astype(int) + 2, 0, 255).astype(np.uint8)
    folder.add_sample("pill", "bright", brighter, defect_mask(), split="train", defect_type="crack")
    folder.save()
    runner = CliRunner()
    assert runner.invoke(app, ["data", "validate", str(folder.root)]).exit_code == 1  # the leak is an error
    assert runner.invoke(app, ["data", "validate", str(folder.root), "--near-duplicates", "off"]).exit_code == 0
    bad = runner.invoke(app, ["data", "validate", str(folder.root), "--near-duplicates", "maybe"])
    assert bad.exit_code == 2 and "choose one of auto, full, off" in bad.output


def test_workers_give_the_same_report(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds")
    (folder.root / folder["pill/b"].image).write_bytes(b"junk")
    brighter = np.clip(texture(2).astype(int) + 2, 0, 255).astype(np.uint8)
    folder.add_sample("pill", "bright", brighter, defect_mask(), split="train", defect_type="crack")
    folder.add_sample("pill", "copy", texture(3), defect_mask(), split="train", defect_type="crack")
    folder.add_sample("pill", "e", texture(20), np.zeros(SIZE, np.uint8), split="train", defect_type="crack")
    folder.save()
    one = validate(folder).to_json()
    assert {"unreadable", "near-duplicate-across-splits", "duplicate-across-splits", "empty-mask"} <= set(
        one["summary"]["by_code"])
    assert validate(folder, workers=2).to_json() == one
    result = CliRunner().invoke(app, ["data", "validate", str(folder.root), "-j", "2", "--json",
                                      str(tmp_path / "r.json")])
    assert result.exit_code == 1 and json.loads((tmp_path / "r.json").read_text()) == one
