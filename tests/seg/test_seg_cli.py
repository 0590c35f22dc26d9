"""`defectspectrum seg ...` end to end on a tiny model: train, eval, predict, export, benchmark, aug-study."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from seg_helpers import register_tiny_model, split_synth  # noqa: E402

from cli_helpers import invoke, one_line_error  # noqa: E402
from defectspectrum.data.dsfolder import DSFolder  # noqa: E402
from defectspectrum.data.validate import validate  # noqa: E402
from defectspectrum.seg.metrics import ConfusionMatrix, scores  # noqa: E402
from defectspectrum.seg.run import read_run  # noqa: E402

TRAIN = ["--steps", "4", "--val-every", "2", "--crop-size", "32", "--batch-size", "2", "--workers", "0"]


@pytest.fixture(scope="module")
def trained(module_tmp) -> tuple[Path, Path]:
    root = module_tmp("segcli")
    ds = split_synth(root / "ds", size=48).root
    result = invoke("seg", "train", ds, "--model", register_tiny_model(), "--out", root / "run", *TRAIN)
    assert result.exit_code == 0, result.output
    assert "val mIoU" in result.stdout
    return ds, root / "run"


def test_eval_json_matches_masks_scored_independently(trained, tmp_path):
    ds, run = trained
    result = invoke("seg", "eval", run, ds, "--json", tmp_path / "s.json", "--plot", tmp_path / "cm.png")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "s.json").read_text())
    assert {"mIoU", "aAcc", "mAcc", "classes"} <= data.keys()
    assert [c["name"] for c in data["classes"]] == list(read_run(run).labels.names)
    assert (tmp_path / "cm.png").stat().st_size > 1000
    # predict the same split, then recompute mIoU from the written masks with no model involved
    assert invoke("seg", "predict", run, ds, tmp_path / "pred").exit_code == 0
    truth, pred = DSFolder.open(ds), DSFolder.open(tmp_path / "pred")
    matrix = ConfusionMatrix(len(data["classes"]))
    for sample in truth.samples(split="val"):
        matrix.update(pred.load_mask(pred[sample.id]), truth.load_mask(sample))
    again = scores(matrix.matrix)
    assert again.mIoU == pytest.approx(data["mIoU"], abs=1e-9)
    assert again.aAcc == pytest.approx(data["aAcc"], abs=1e-9)


def test_predict_writes_a_valid_ds_folder_with_the_same_ids(trained, tmp_path):
    ds, run = trained
    result = invoke("seg", "predict", run, ds, tmp_path / "pred")
    assert result.exit_code == 0, result.output
    truth, pred = DSFolder.open(ds), DSFolder.open(tmp_path / "pred")
    assert [s.id for s in pred] == [s.id for s in truth]
    assert dict(pred.objects) == dict(truth.objects)
    assert validate(pred).ok
    overlays = list((tmp_path / "pred" / "_overlays").rglob("*.png"))
    assert len(overlays) == len(truth)
    one_line_error(["seg", "predict", run, ds, tmp_path / "pred"], "pred", "--overwrite")


def test_predict_one_split_feeds_qc_simulate(trained, tmp_path):
    ds, run = trained
    result = invoke("seg", "predict", run, ds, tmp_path / "pred", "--split", "val", "--no-overlays")
    assert result.exit_code == 0, result.output
    truth, pred = DSFolder.open(ds), DSFolder.open(tmp_path / "pred")
    assert sorted(s.id for s in pred) == sorted(s.id for s in truth.samples(split="val"))
    rules = tmp_path / "rules.yaml"
    rules.write_text("default: {other_classes: reject}\n", encoding="utf-8")
    result = invoke("qc", "simulate", "-r", rules, "-t", ds, "-p", tmp_path / "pred", "--split", "val",
                    "--json", tmp_path / "qc.json")
    assert result.exit_code == 0, result.output
    images = json.loads((tmp_path / "qc.json").read_text())["images"]
    assert len(images) == len(pred)
    for image in images:  # any predicted defect pixel rejects under these rules
        assert (image["pred"]["verdict"] == "defective") == bool(pred.load_mask(pred[image["id"]]).any())
    one_line_error(["seg", "predict", run, ds, tmp_path / "p2", "--split", "test"], "no samples", "in split 'test'")


def test_predict_an_image_folder(trained, tmp_path):
    ds, run = trained
    images = tmp_path / "shots"
    images.mkdir()
    folder = DSFolder.open(ds)
    for sample in folder.samples()[:3]:
        (images / Path(sample.image).name).write_bytes(folder.image_path(sample).read_bytes())
    result = invoke("seg", "predict", run, images, tmp_path / "pred")
    assert result.exit_code == 0, result.output
    pred = DSFolder.open(tmp_path / "pred")
    assert len(pred) == 3 and set(pred.objects) == {"metal"}


def test_onnx_export_and_predict_match_torch(trained, tmp_path):
    ds, run = trained
    result = invoke("seg", "export", run, "--onnx", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx.json").is_file()
    assert invoke("seg", "predict", run, ds, tmp_path / "torch").exit_code == 0
    result = invoke("seg", "predict", tmp_path / "m.onnx", ds, tmp_path / "onnx", "--runtime", "onnx")
    assert result.exit_code == 0, result.output
    a, b = DSFolder.open(tmp_path / "torch"), DSFolder.open(tmp_path / "onnx")
    for sample in a:
        assert np.array_equal(a.load_mask(sample), b.load_mask(b[sample.id])), sample.id
    one_line_error(["seg", "export", run, "--onnx", tmp_path / "m.onnx"], "m.onnx")


def test_from_run_repeats_a_run(trained, tmp_path):
    _ds, run = trained
    result = invoke("seg", "train", "--from-run", run / "run.json", "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    first, again = read_run(run), read_run(tmp_path / "again")
    assert first.config == again.config
    assert first.data["train_digest"] == again.data["train_digest"]
    a = torch.load(run / "best.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "again" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_errors_are_one_line(trained, tmp_path):
    ds, run = trained
    one_line_error(["seg", "train", ds, "--model", "resnet-9000", "--out", tmp_path / "r"], "resnet-9000",
                   "unet-small")
    one_line_error(["seg", "train", ds, "--model", "unet-small", "--out", run], "--resume")
    one_line_error(["seg", "train", ds, "--model", "unet-small", "--out", tmp_path / "r", "--labels", "pixel"],
                   "--labels")
    one_line_error(["seg", "train", tmp_path / "nowhere", "--model", "unet-small", "--out", tmp_path / "r"],
                   "nowhere")
    one_line_error(["seg", "eval", tmp_path, ds], "run.json")
    one_line_error(["seg", "train", "--out", tmp_path / "r"], "--model")
    one_line_error(["seg", "predict", run, ds, tmp_path / "p", "--runtime", "tensorrt"], "--runtime")


def test_benchmark_table(trained, tmp_path):
    ds, _ = trained
    result = invoke("seg", "benchmark", ds, "--models", register_tiny_model(), "--seeds", "2", "--steps", "2",
                    "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--out", tmp_path / "bench")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert len(data["results"]) == 2 and {r["seed"] for r in data["results"]} == {0, 1}
    rows = list(csv.reader((tmp_path / "bench" / "table.csv").open()))
    assert rows[1][:2] == [register_tiny_model(), "metal"] and rows[1][4] == "2"
    mean = np.mean([r["mIoU"] for r in data["results"]])
    assert float(rows[1][2]) == pytest.approx(mean, abs=1e-3)
    assert "Segmentation" in (tmp_path / "bench" / "report.html").read_text()
    again = invoke("seg", "benchmark", ds, "--models", register_tiny_model(), "--seeds", "2", "--steps", "2",
                   "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--out", tmp_path / "bench",
                   "--resume")
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "bench" / "benchmark.json").read_text())["results"] == data["results"]


def test_aug_study_adds_the_asked_share_of_synthetic_pairs(trained, tmp_path):
    ds, _ = trained
    synthetic = split_synth(tmp_path / "gen", size=48, per_type=4, seed=5).root
    result = invoke("seg", "aug-study", ds, "--synthetic", synthetic, "--ratios", "0,50,100", "--model",
                    register_tiny_model(), "--steps", "2", "--crop-size", "32", "--batch-size", "2",
                    "--workers", "0", "--out", tmp_path / "aug")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "aug" / "aug-study.json").read_text())
    assert [r["row"] for r in data["results"]] == ["0%", "50%", "100%"]
    n_real = len(read_run(Path(data["results"][0]["run"])).data["train_ids"])
    for row, share in (("50%", 0.5), ("100%", 1.0)):
        run = next(Path(r["run"]) for r in data["results"] if r["row"] == row)
        assert len(read_run(run).data["synthetic_ids"]) == round(share * n_real)
    assert "synthetic_ids" not in read_run(Path(data["results"][0]["run"])).data
    assert (tmp_path / "aug" / "mIoU_vs_ratio.png").stat().st_size > 1000
    one_line_error(["seg", "aug-study", ds, "--synthetic", synthetic, "--ratios", "0,900", "--model",
                    register_tiny_model(), "--steps", "1", "--out", tmp_path / "aug2", "--workers", "0",
                    "--crop-size", "32"], "synthetic pairs")


# -- what a new user and an attacker tried ------------------------------------------------------------


def test_eval_never_writes_over_the_data_set_or_the_run(trained, tmp_path):
    ds, run = trained
    index = (ds / "samples.jsonl").read_bytes()
    one_line_error(["seg", "eval", run, ds, "--json", ds / "samples.jsonl"], "samples.jsonl", "elsewhere")
    one_line_error(["seg", "eval", run, ds, "--plot", run / "run.json"], "run.json", "elsewhere")
    assert (ds / "samples.jsonl").read_bytes() == index
    read_run(run)
    one_line_error(["seg", "eval", run, ds, "--weights", "bogus"], "--weights")


def test_predict_overwrite_replaces_predictions_never_annotations(trained, tmp_path):
    ds, run = trained
    copy = tmp_path / "annotations"
    assert invoke("data", "convert", ds, copy).exit_code == 0
    one_line_error(["seg", "predict", run, ds, copy, "--overwrite"], "annotations", "predictions only")
    assert "prediction" not in DSFolder.open(copy).meta
    assert invoke("seg", "predict", run, ds, tmp_path / "pred").exit_code == 0
    assert invoke("seg", "predict", run, ds, tmp_path / "pred", "--overwrite").exit_code == 0


def test_predict_a_multi_object_folder_takes_the_trained_objects(trained, tmp_path):
    _, run = trained
    ds = split_synth(tmp_path / "two", materials=("metal", "wood"), size=48).root
    result = invoke("seg", "predict", run, ds, tmp_path / "pred")
    assert result.exit_code == 0, result.output
    assert set(DSFolder.open(tmp_path / "pred").objects) == {"metal"}
    one_line_error(["seg", "predict", run, ds, tmp_path / "p2", "--object", "wood"], "wood")


def test_resume_and_from_run_refuse_settings_they_would_ignore(trained, tmp_path):
    _, run = trained
    one_line_error(["seg", "train", "--out", run, "--resume", "--steps", "8"], "--resume", "--steps")
    one_line_error(["seg", "train", "--from-run", run / "run.json", "--out", tmp_path / "r", "--lr", "0.5"],
                   "--from-run", "--lr")


def test_diverging_or_impossible_settings_are_one_line(trained, tmp_path):
    ds, _ = trained
    base = ["seg", "train", ds, "--model", register_tiny_model(), *TRAIN]
    one_line_error([*base, "--out", tmp_path / "a", "--lr", "inf"], "--lr")
    one_line_error([*base, "--out", tmp_path / "b", "--class-weights", "0,0,0,0"], "not all zero")
    one_line_error([*base, "--out", tmp_path / "c", "--lr", "1e30"], "diverged", "--lr")
    one_line_error([*base, "--out", tmp_path / "d", "--mixed-precision", "fp16"], "fp16", "GPU")


def test_a_run_stopped_before_its_first_checkpoint_starts_again(trained, tmp_path):
    ds, run = trained
    early = tmp_path / "early"
    early.mkdir()
    (early / "run.json").write_bytes((run / "run.json").read_bytes())
    (early / "history.jsonl").write_text("")
    one_line_error(["seg", "train", "--out", early, "--resume"], "without --resume")
    result = invoke("seg", "train", ds, "--model", register_tiny_model(), "--out", early, *TRAIN)
    assert result.exit_code == 0, result.output
    assert (early / "checkpoints" / "last.pt").is_file()


def test_hostile_checkpoints_and_run_files_are_one_line(trained, tmp_path):
    ds, run = trained
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    import pickle

    (copy / "best.pt").write_bytes(pickle.dumps({"model": Payload()}))
    one_line_error(["seg", "eval", copy, ds], "best.pt", "never loaded")
    assert not marker.exists()
    (copy / "best.pt").write_bytes(b"")
    one_line_error(["seg", "eval", copy, ds], "best.pt")
    torch.save([1, 2, 3], copy / "best.pt")
    one_line_error(["seg", "eval", copy, ds], "best.pt", "not a checkpoint")
    (copy / "checkpoints" / "last.pt").write_text("text")
    one_line_error(["seg", "train", "--out", copy, "--resume"], "last.pt")
    data = json.loads((run / "run.json").read_text())
    for change, fragment in ((("config", "model"), "config.model"), (("config", "crop_size"), "config.crop_size"),
                             (("preprocess", "std"), "preprocess")):
        broken = json.loads(json.dumps(data))
        broken[change[0]][change[1]] = ["x"] if change[1] == "model" else "32" if change[1] == "crop_size" \
            else [float("nan")] * 3
        (copy / "run.json").write_text(json.dumps(broken))
        one_line_error(["seg", "eval", copy, ds], "run.json", fragment)


def test_grids_check_every_cell_before_training_any(trained, tmp_path):
    ds, _ = trained
    small = ["--steps", "1", "--crop-size", "32", "--batch-size", "2", "--workers", "0"]
    one_line_error(["seg", "benchmark", ds, "--models", f"{register_tiny_model()},{register_tiny_model()}",
                    "--seeds", "1", "--out", tmp_path / "b", *small], "same run twice")
    assert not (tmp_path / "b" / "runs").exists()
    synthetic = split_synth(tmp_path / "gen", size=48, per_type=1, seed=5).root
    one_line_error(["seg", "aug-study", ds, "--synthetic", synthetic, "--ratios", "0,300", "--model",
                    register_tiny_model(), "--out", tmp_path / "aug", *small], "synthetic pairs")
    assert not (tmp_path / "aug" / "runs").exists()


def test_no_good_trains_on_defective_images_only(trained, tmp_path):
    ds, _ = trained
    result = invoke("seg", "train", ds, "--model", register_tiny_model(), "--out", tmp_path / "r", "--no-good", *TRAIN)
    assert result.exit_code == 0, result.output
    info = read_run(tmp_path / "r")
    folder = DSFolder.open(ds)
    assert info.config.include_good is False
    assert info.data["train_ids"] and not any(folder[i].is_good for i in info.data["train_ids"])
    assert any(s.is_good for s in folder.samples(split="train"))  # there were good ones to leave out


def test_train_ctrl_c_stops_with_a_checkpoint_to_resume(trained, tmp_path, monkeypatch):
    import os
    import signal

    import defectspectrum.seg.cli as seg_cli

    ds, _ = trained
    monkeypatch.setattr(seg_cli, "_on_event", lambda event: os.kill(os.getpid(), signal.SIGINT))
    result = invoke("seg", "train", ds, "--model", register_tiny_model(), "--out", tmp_path / "run", *TRAIN)
    assert result.exit_code == 130, result.output
    assert "stopped at step 3 (Ctrl-C)" in " ".join(result.stdout.split()) and "--resume" in result.stdout
    assert read_run(tmp_path / "run").results["last_step"] == 3
    monkeypatch.undo()
    result = invoke("seg", "train", "--out", tmp_path / "run", "--resume")
    assert result.exit_code == 0, result.output
    assert read_run(tmp_path / "run").results["last_step"] == 4
