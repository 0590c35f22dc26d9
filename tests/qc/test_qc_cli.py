"""`defectspectrum qc ...` end to end on hand-built folders: outputs, and one-line errors that write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qc_helpers import blank, rect, write_folder, write_rules

from cli_helpers import invoke, one_line_error
from defectspectrum.qc.cli import parse_values

RULES = """\
version: 1
objects:
  plate:
    forbidden: [hole]
    limits:
      spot: {max_area: 10}
"""


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    hole, spot3, spot4 = rect(blank(), 3, 4, 4, 2, 2), rect(blank(), 2, 8, 8, 3, 3), rect(blank(), 2, 8, 8, 4, 4)
    splits = dict.fromkeys("abcdef", "val")
    write_folder(tmp_path / "truth", {"a": hole, "b": hole, "c": spot3, "d": blank(), "e": spot4, "f": blank()},
                 splits=splits)
    write_folder(tmp_path / "pred", {"a": hole, "b": blank(), "c": spot4, "d": blank(), "e": spot4, "f": blank()},
                 splits=splits)
    return write_rules(tmp_path / "rules.yaml", RULES), tmp_path / "truth", tmp_path / "pred"


def test_simulate_writes_json_csv_and_a_report(tmp_path: Path, setup: tuple[Path, Path, Path]) -> None:
    rules, truth, pred = setup
    out = tmp_path / "out"
    result = invoke("qc", "simulate", "-r", rules, "-t", truth, "-p", pred, "--split", "val",
                    "--json", out / "qc.json", "--csv", out / "qc.csv", "--report", out / "qc.html")
    assert result.exit_code == 0, result.output
    assert "recall  66.67  FPR  33.33" in result.stdout
    data = json.loads((out / "qc.json").read_text())
    assert {"recall", "fpr", "precision", "counts", "objects", "images"} <= set(data)
    assert data["counts"]["fn"] == 1 and data["split"] == "val"
    assert len((out / "qc.csv").read_text().splitlines()) == 7
    html = (out / "qc.html").read_text()
    assert "Quality control" in html and "escape (defective accepted)" in html and "false reject" in html
    pictures = sorted(p.name for p in (out / "qc_files").rglob("*.png"))
    assert pictures == ["FN_plate_b.png", "FP_plate_c.png"]  # the two misjudged images, truth | prediction


def test_compare_puts_predictions_side_by_side(tmp_path: Path, setup: tuple[Path, Path, Path]) -> None:
    rules, truth, pred = setup
    result = invoke("qc", "compare", truth, pred, "-r", rules, "-t", truth, "--names", "perfect,model",
                    "--json", tmp_path / "c.json", "--csv", tmp_path / "c.csv")
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "c.json").read_text())["predictions"]
    assert table["perfect"]["recall"] == 100.0 and table["perfect"]["fpr"] == 0.0
    assert table["model"]["counts"]["fp"] == 1
    assert (tmp_path / "c.csv").read_text().splitlines()[1].startswith("perfect,100.00,0.00")
    one_line_error(["qc", "compare", truth, pred, "-r", rules, "-t", truth, "--names", "one"], "2 prediction")


def test_sweep_and_calibrate(tmp_path: Path, setup: tuple[Path, Path, Path]) -> None:
    rules, truth, pred = setup
    result = invoke("qc", "sweep", "-r", rules, "-t", truth, "-p", pred, "--limit", "max_area", "--class", "spot",
                    "--values", "0:20:5", "--json", tmp_path / "s.json", "--plot", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    points = json.loads((tmp_path / "s.json").read_text())["points"]
    assert [p["value"] for p in points] == [0, 5, 10, 15, 20]
    assert [p["counts"]["fp"] for p in points] == [1, 1, 1, 1, 0]  # the predicted spot is 16 px
    assert (tmp_path / "s.png").stat().st_size > 1000
    result = invoke("qc", "calibrate", "-r", rules, "-t", truth, "-p", pred, "--limit", "max_area", "--class",
                    "spot", "--max-false-reject", "0", "--json", tmp_path / "k.json")
    assert result.exit_code == 0, result.output
    assert "spot.max_area = 16" in result.stdout
    assert json.loads((tmp_path / "k.json").read_text())["value"] == 16.0


def test_judge_needs_no_truth(tmp_path: Path, setup: tuple[Path, Path, Path]) -> None:
    rules, _, pred = setup
    result = invoke("qc", "judge", pred, "-r", rules, "--json", tmp_path / "j.json", "--csv", tmp_path / "j.csv")
    assert result.exit_code == 0, result.output
    assert "6 images: 3 accepted, 3 rejected" in result.stdout
    images = json.loads((tmp_path / "j.json").read_text())["images"]
    assert [i["verdict"] for i in images] == ["defective", "benign", "defective", "benign", "defective", "benign"]


def test_rules_command_checks_names_against_the_data(tmp_path: Path, setup: tuple[Path, Path, Path]) -> None:
    rules, truth, _ = setup
    result = invoke("qc", "rules", rules, truth)
    assert result.exit_code == 0
    assert "spot: each region <= 10 px" in result.stdout and "hole: forbidden" in result.stdout
    bad = write_rules(tmp_path / "bad.yaml", RULES.replace("spot:", "spots:"))
    one_line_error(["qc", "rules", bad, truth], "bad.yaml:6", "'spots' is not a class of plate",
                   "scratch, spot, hole")


def test_errors_are_one_line_and_write_nothing(tmp_path: Path, setup: tuple[Path, Path, Path]) -> None:
    rules, truth, pred = setup
    out = tmp_path / "out.json"
    broken = write_rules(tmp_path / "broken.yaml", "objects:\n  plate:\n    forbidden: [hole\n")
    one_line_error(["qc", "simulate", "-r", broken, "-t", truth, "-p", pred, "--json", out], "broken.yaml", "line 4")
    unknown = write_rules(tmp_path / "unknown.yaml", "objects:\n  pill: {forbidden: [crack]}\n")
    one_line_error(["qc", "simulate", "-r", unknown, "-t", truth, "-p", pred, "--json", out],
                   "'pill' is not in", "its objects: plate")
    write_folder(tmp_path / "other", {"a": blank()}, splits={"a": "val"})
    one_line_error(["qc", "simulate", "-r", rules, "-t", truth, "-p", tmp_path / "other", "--json", out],
                   "5 sample(s) missing")
    one_line_error(["qc", "simulate", "-r", rules, "-t", truth, "-p", tmp_path / "nowhere"], "nowhere")
    assert not out.exists()
    index = truth / "samples.jsonl"
    before = index.read_bytes()
    one_line_error(["qc", "simulate", "-r", rules, "-t", truth, "-p", pred, "--csv", index], "a file of the data set")
    assert index.read_bytes() == before
    one_line_error(["qc", "simulate", "-r", rules, "-t", truth, "-p", pred, "--json", out, "--csv", out], "two outputs")
    one_line_error(["qc", "sweep", "-r", rules, "-t", truth, "-p", pred, "--limit", "max_area", "--class", "dent"],
                   "no object has class 'dent'")
    one_line_error(["qc", "calibrate", "-r", rules, "-t", truth, "-p", pred, "--limit", "max_area", "--class",
                    "spot"], "one target")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.yaml", "other", "pred", "rules.yaml", "truth",
                                                          "unknown.yaml"]


@pytest.mark.parametrize(("text", "values"), [("0,5, 20", [0, 5, 20]), ("0:10:5", [0, 5, 10]), ("1:2:0.5", [1, 1.5, 2]),
                                              (None, None)])
def test_parse_values(text: str | None, values: list[float] | None) -> None:
    assert parse_values(text) == values


@pytest.mark.parametrize("text", ["a,b", "0:10", "10:0:1", "0:10:0", "-1,3", "0:1e9:1", "nan", "inf,2"])
def test_parse_values_refuses(text: str) -> None:
    from defectspectrum.errors import InputError

    with pytest.raises(InputError):
        parse_values(text)
