"""`defectspectrum click eval` end to end on a small procedural DS folder, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click_helpers import TINY_ARGS

from cli_helpers import invoke, one_line_error
from conftest import ModuleTmp
from defectspectrum.data.splits import assign_splits
from defectspectrum.data.synth import write_ds_folder

KEYS = ["NoC85", "NoC90", "NoF85", "NoF90", "IoU@1", "IoU@3", "IoU@5", "objects"]


@pytest.fixture(scope="module")
def ds(module_tmp: ModuleTmp) -> Path:
    """The procedural folder of tests/seg's `split_synth`: metal, 3 images per defect type, first-k splits."""
    root = module_tmp("click") / "synth"
    folder = write_ds_folder(root, materials=["metal"], n_defective_per_type=3, n_good=2, size=(48, 48), seed=0)
    assign_splits(folder, rule="first-k", k=2)
    folder.save()
    return root


def check_metrics(metrics: dict[str, object], objects: int, max_clicks: int) -> None:
    assert list(metrics)[: len(KEYS)] == KEYS
    assert metrics["objects"] == objects
    for key in ("NoC85", "NoC90"):
        assert 1 <= metrics[key] <= max_clicks  # type: ignore[operator]
    for key in ("NoF85", "NoF90"):
        assert 0 <= metrics[key] <= objects  # type: ignore[operator]
    for key in ("IoU@1", "IoU@3", "IoU@5"):
        assert 0 <= metrics[key] <= 1  # type: ignore[operator]
    assert metrics["NoC85"] <= metrics["NoC90"] and metrics["NoF85"] <= metrics["NoF90"]  # type: ignore[operator]


def test_eval_both_baselines_writes_table_json_and_plot(ds: Path, tmp_path: Path) -> None:
    out_json, plot = tmp_path / "noc.json", tmp_path / "noc.png"
    result = invoke("click", "eval", ds, "--model", "grabcut", "--model", "random-walker", "--split", "val",
                    "--limit", "6", "--json", out_json, "--plot", plot, width=200)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("6 object(s) of 5 sample(s)")
    assert lines[1].split() == ["model", *KEYS]
    assert lines[2].split()[0] == "grabcut" and lines[2].split()[-1] == "6"
    assert any(line.split()[0] == "random-walker" for line in lines)
    data = json.loads(out_json.read_text())
    assert list(data["models"]) == ["grabcut", "random-walker"]
    assert data["settings"]["max_clicks"] == 20 and data["settings"]["limit"] == 6
    assert data["settings"]["split"] == "val" and data["settings"]["objects_found"] == 10
    thin = sum(item["thin"] for item in data["instances"])
    for name, metrics in data["models"].items():
        check_metrics(metrics, 6, 20)
        assert len(metrics["mean_iou_curve"]) == 20
        if thin:
            check_metrics(metrics["thin"], thin, 20)
            assert any(line.startswith(f"{name} thin") for line in lines)
        else:
            assert "thin" not in metrics
    assert len(data["instances"]) == 6
    assert all(len(item["ious"]["grabcut"]) == 20 for item in data["instances"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_defaults_to_the_shipped_model_and_both_baselines_over_every_sample(ds: Path) -> None:
    result = invoke("click", "eval", ds, "--limit", "2", "--max-clicks", "3", "--object", "metal", width=200)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("2 object(s) of 17 sample(s)")
    rows = [line.split()[0] for line in result.stdout.splitlines()[2:]]
    assert rows[0] == "default" and "grabcut" in rows and "random-walker" in rows


def test_eval_from_degraded_adds_a_fix_row_and_json_entry(ds: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "noc.json"
    result = invoke("click", "eval", ds, "--model", "grabcut", "--limit", "3", "--max-clicks", "5",
                    "--from-degraded", "--json", out_json, width=200)
    assert result.exit_code == 0, result.output
    assert any(line.split()[:2] == ["grabcut", "fix"] for line in result.stdout.splitlines())
    data = json.loads(out_json.read_text())
    fix = data["models"]["grabcut"]["degraded"]
    check_metrics(fix, 3, 5)
    assert abs(fix["start_IoU"] - 0.7) < 0.05 and data["settings"]["from_degraded"] is True


def test_unknown_model_is_one_line(ds: Path, tmp_path: Path) -> None:
    one_line_error(["click", "eval", ds, "--model", "sam", "--json", tmp_path / "x.json"], "--model 'sam'",
                   "unknown model", "grabcut, random-walker")
    assert not (tmp_path / "x.json").exists()


def test_an_unknown_init_is_one_line_naming_init(ds: Path, tmp_path: Path) -> None:
    one_line_error(["click", "train", ds, "--out", tmp_path / "run", "--init", "none"], "--init 'none'",
                   "unknown model", "a run folder of `click train`")
    one_line_error(["click", "train", ds, "--out", tmp_path / "run", "--init", "runs/gone"], "--init runs/gone",
                   "not found")
    one_line_error(["click", "train", ds, "--out", tmp_path / "run", "--init", "grabcut"], "--init grabcut",
                   "has no weights")
    assert not (tmp_path / "run").exists()


def test_a_missing_default_model_or_run_is_one_line(ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   ) -> None:
    one_line_error(["click", "eval", ds, "--model", "runs/click/best.pt"], "--model runs/click/best.pt",
                   "not found", "default")
    monkeypatch.setattr("defectspectrum.click.model_files.DEFAULT_WEIGHTS", tmp_path / "gone.safetensors")
    one_line_error(["click", "eval", ds, "--model", "default", "--limit", "1"], "gone.safetensors",
                   "shipped default model is missing", "reinstall")


@pytest.fixture(scope="module")
def run(ds: Path, module_tmp: ModuleTmp) -> Path:
    """A tiny ClickNet trained for a few steps by `click train`."""
    out = module_tmp("clickrun") / "run"
    result = invoke("click", "train", ds, "--out", out, "--steps", "4", "--batch-size", "2", "--crop-size", "64",
                    *TINY_ARGS, width=200)
    assert result.exit_code == 0, result.output
    assert "trained 4 steps" in result.stdout
    return out


def test_train_resume_of_a_finished_run_and_errors(ds: Path, run: Path, tmp_path: Path) -> None:
    result = invoke("click", "train", ds, "--out", run, "--resume", width=200)
    assert result.exit_code == 0 and "trained 4 steps" in result.stdout, result.output
    one_line_error(["click", "train", ds, "--out", run], "not an empty folder", "--resume")
    one_line_error(["click", "train", ds, "--out", tmp_path / "r", "--scale-range", "2"], "--scale-range")
    one_line_error(["click", "train", ds, "--out", tmp_path / "r", "--encoder", "nope"], "--encoder nope")


def test_eval_a_trained_run_beside_a_baseline(ds: Path, run: Path) -> None:
    result = invoke("click", "eval", ds, "--model", run, "--model", "grabcut", "--limit", "2", "--max-clicks", "3",
                    "--split", "val", width=300)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:] if "thin" not in line.split()}
    assert rows["run"][-1] == "2" and "grabcut" in rows  # a run folder is labelled by its name


def test_predict_writes_a_0_255_mask_and_fixes_a_given_one(ds: Path, run: Path, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "part.png"
    Image.fromarray(np.full((40, 50, 3), 128, np.uint8)).save(image)
    out = tmp_path / "m.png"
    result = invoke("click", "predict", image, "--model", run, "--click", "20,10,+", "--click", "5,5,-",
                    "--out", out)
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(out))
    assert mask.shape == (40, 50) and set(np.unique(mask)) <= {0, 255}
    start = np.zeros((40, 50), np.uint8)
    start[30:38, 40:48] = 255
    Image.fromarray(start).save(tmp_path / "start.png")
    result = invoke("click", "predict", image, "--model", run / "checkpoints" / "last.pt", "--mask",
                    tmp_path / "start.png", "--click", "2,2,-", "--out", out)
    assert result.exit_code == 0, result.output
    assert set(np.unique(np.asarray(Image.open(out)))) <= {0, 255}


def test_predict_errors_are_one_line(run: Path, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "part.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(image)
    one_line_error(["click", "predict", image, "--model", run, "--click", "60,10,+", "--out", tmp_path / "m.png"],
                   "outside the 50x40 image")
    one_line_error(["click", "predict", image, "--model", run, "--click", "1,2", "--out", tmp_path / "m.png"],
                   "give x,y,+ or x,y,-")
    one_line_error(["click", "predict", image, "--model", tmp_path / "nope", "--click", "1,2,+",
                    "--out", tmp_path / "m.png"], "not found", "run folder of `click train`")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "small.png")
    one_line_error(["click", "predict", image, "--model", run, "--mask", tmp_path / "small.png", "--click", "1,2,+",
                    "--out", tmp_path / "m.png"], "mask is 4x4", "50x40")
    one_line_error(["click", "predict", image, "--model", run, "--click", "1,2,+", "--out", tmp_path / "m.jpg"],
                   "PNG")
    assert not (tmp_path / "m.png").exists()


def test_empty_split_and_unknown_object_are_one_line(ds: Path) -> None:
    one_line_error(["click", "eval", ds, "--split", "test"], "no samples in split 'test'", "its splits: train, val")
    one_line_error(["click", "eval", ds, "--object", "wood"], "has no object 'wood'", "metal")


def test_no_defect_regions_is_one_line(ds: Path) -> None:
    one_line_error(["click", "eval", ds, "--min-area", "100000"], "hold no defect regions of at least 100000 px")


def test_missing_folder_is_one_line(tmp_path: Path) -> None:
    one_line_error(["click", "eval", tmp_path / "nope"], "folder not found")


def test_help_has_examples() -> None:
    result = invoke("click", "eval", "--help", width=200)
    assert result.exit_code == 0 and "Example: defectspectrum click eval" in result.stdout
    assert invoke("click", "--help").exit_code == 0
    for command in ("train", "predict"):
        text = invoke("click", command, "--help", width=200).stdout
        assert f"Example: defectspectrum click {command}" in text


def test_eval_report_has_the_table_plot_and_clicked_objects(ds: Path, tmp_path: Path) -> None:
    page = tmp_path / "click.html"
    result = invoke("click", "eval", ds, "--model", "grabcut", "--limit", "3", "--max-clicks", "5",
                    "--report", page, width=200)
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "Defect-Click" in html and "NoC evaluation" in html and "grabcut" in html
    pictures = sorted((tmp_path / "click_files" / "click").glob("object_*.png"))
    assert len(pictures) == 3
    from PIL import Image

    strip = np.asarray(Image.open(pictures[0]))
    assert strip.shape[0] == 160 and strip.shape[1] > 2 * 160  # the truth and at least one clicked mask
    one_line_error(["click", "eval", ds, "--model", "grabcut", "--report", ds / "dataset.json"], "dataset.json")


def test_eval_a_refined_run_beside_the_same_run(ds: Path, run: Path) -> None:
    refined = f"{run}+grabcut"
    result = invoke("click", "eval", ds, "--model", run, "--model", refined, "--limit", "2", "--max-clicks", "3",
                    "--split", "val", width=300)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:] if "thin" not in line.split()}
    assert rows["run"][-1] == rows["run+grabcut"][-1] == "2"
    assert rows["run"][1:-1] != rows["run+grabcut"][1:-1]  # the refinement changed the masks


def test_a_refinement_is_refused_where_it_has_no_meaning(ds: Path, run: Path, tmp_path: Path) -> None:
    one_line_error(["click", "eval", ds, "--model", "grabcut+grabcut"], "grabcut+grabcut",
                   "only a learned model's masks are refined")
    one_line_error(["click", "eval", ds, "--model", "runs/gone+grabcut"], "--model runs/gone", "not found")
    one_line_error(["click", "export", f"{run}+grabcut", "--weights", tmp_path / "w.safetensors"],
                   "has no weights of its own")
    one_line_error(["click", "train", ds, "--out", tmp_path / "run", "--init", "default+grabcut"],
                   "--init default+grabcut", "has no weights of its own")
    assert not (tmp_path / "w.safetensors").exists() and not (tmp_path / "run").exists()
