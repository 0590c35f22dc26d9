"""`defectspectrum gen ...` end to end on a tiny pair of generators."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seg"))

from seg_helpers import split_synth  # noqa: E402

from cli_helpers import invoke, one_line_error  # noqa: E402
from defectspectrum.data.dsfolder import DSFolder  # noqa: E402

TINY = ["--width", "8", "--layers", "1", "--size", "16", "--steps", "3", "--batch-size", "2",
        "--checkpoint-every", "3"]


def test_train_sample_and_resume(tmp_path: Path) -> None:
    ds = split_synth(tmp_path / "ds", size=40, per_type=3, k=2).root
    for preset in ("medium", "small"):
        result = invoke("gen", "train", ds, "--object", "metal", "--preset", preset, "--out", tmp_path / preset, *TINY)
        assert result.exit_code == 0, result.output
        assert (tmp_path / preset / "checkpoints" / "last.pt").is_file()
    result = invoke("gen", "sample", tmp_path / "gen", "--large", tmp_path / "medium", "--small", tmp_path / "small",
                    "--switch", "5", "--num", "3", "--steps", "10", "--keep-empty")
    assert result.exit_code == 0, result.output
    assert "3 synthetic pairs" in result.stdout and len(DSFolder.open(tmp_path / "gen")) == 3
    result = invoke("gen", "eval", tmp_path / "gen", "--train", ds, "--json", tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["samples"] == 3 and 0 <= data["memorisation"]["near_copies"] <= 1 and "masks" in data
    result = invoke("gen", "eval", tmp_path / "gen", "--train", ds, "--report", tmp_path / "gen.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "gen.html").read_text()
    assert "Defect-Gen" in page and "near-copies %" in page
    assert all(f"gen_{i:06d} (left) beside its nearest training pair" in page for i in range(3))
    assert len(list((tmp_path / "gen_files" / "gen").glob("gen_*.png"))) == 3
    one_line_error(["gen", "eval", tmp_path / "gen", "--train", ds, "--json", ds / "samples.jsonl"], "data set")
    one_line_error(["gen", "sample", tmp_path / "gen", "--large", tmp_path / "medium", "--num", "1"], "--overwrite")
    one_line_error(["gen", "sample", tmp_path / "g2", "--large", tmp_path / "medium", "--switch", "5", "--num", "1"],
                   "needs the small model")
    one_line_error(["gen", "train", ds, "--object", "metal", "--out", tmp_path / "small", *TINY], "not an empty folder")
    one_line_error(["gen", "train", ds, "--object", "metal", "--out", tmp_path / "small", "--resume"],
                   "--resume takes every setting", "--object")
    result = invoke("gen", "train", "--out", tmp_path / "small", "--resume")
    assert result.exit_code == 0, result.output
    one_line_error(["gen", "train", "--out", tmp_path / "nothing", "--resume"], "no gen.json")
    one_line_error(["gen", "train", "--out", tmp_path / "z"], "give the DS folder and --object")
    one_line_error(["gen", "train", ds, "--object", "pill", "--out", tmp_path / "x", *TINY], "unknown object 'pill'")
    one_line_error(["gen", "train", ds, "--object", "metal", "--preset", "huge", "--out", tmp_path / "y", *TINY],
                   "choose large, medium, small")


def test_train_ctrl_c_stops_with_a_checkpoint_to_resume(tmp_path: Path, sigint_default: None) -> None:
    import os
    import signal

    from defectspectrum.gen.train import GenConfig, train_generator
    from defectspectrum.seg.train import TrainingStopped

    ds = split_synth(tmp_path / "ds", size=40, per_type=3, k=2).root
    config = GenConfig(data=str(ds), object="metal", width=8, layers=1, size=16, steps=8, batch_size=2,
                       checkpoint_every=100)
    straight = train_generator(config, tmp_path / "straight")

    def press_ctrl_c(step: int, loss: float) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingStopped, match="stopped at step 3 .*gen train --out .* --resume"):
        train_generator(config, tmp_path / "run", on_step=press_ctrl_c)
    resumed = train_generator(config, tmp_path / "run", resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
