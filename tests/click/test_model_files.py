"""Model files: compact weights, ONNX for onnxruntime, and the shipped default model (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from click_helpers import TINY  # noqa: E402

from cli_helpers import invoke, one_line_error  # noqa: E402
from defectspectrum.click.clicks import Click  # noqa: E402
from defectspectrum.click.model import build_click_model  # noqa: E402
from defectspectrum.click.model_files import (  # noqa: E402
    DEFAULT_WEIGHTS,
    load_click_model,
    save_weights,
    weights_info,
)
from defectspectrum.click.noc import run_object  # noqa: E402
from defectspectrum.click.objects import folder_instances  # noqa: E402
from defectspectrum.click.onnx_export import OnnxClickNet, export_click_onnx  # noqa: E402
from defectspectrum.click.predictor import ClickPredictor, load_predictor  # noqa: E402
from defectspectrum.data.synth import write_ds_folder  # noqa: E402
from defectspectrum.errors import InputError  # noqa: E402
from defectspectrum.seg.checkpoint import save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_click_model(TINY).eval()


def probe(h: int = 64, w: int = 96) -> torch.Tensor:
    return torch.randn(1, 6, h, w, generator=torch.Generator().manual_seed(1))


def test_weights_round_trip_in_half_the_size(tiny: torch.nn.Module, tmp_path: Path) -> None:
    path = save_weights(tiny, TINY, tmp_path / "w.safetensors", {"data": "synth"})
    checkpoint = tmp_path / "c.pt"
    save_checkpoint(checkpoint, {"model": tiny.state_dict(), "model_config": TINY.to_json()})
    assert path.stat().st_size < 0.6 * checkpoint.stat().st_size
    model, config = load_click_model(path)
    assert config == TINY and weights_info(path) == {"data": "synth"}
    with torch.no_grad():
        a, b = tiny(probe()), model(probe())
    assert next(model.parameters()).dtype == torch.float32
    assert torch.allclose(a, b, atol=2e-2 * float(a.abs().max()))
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        save_weights(tiny, TINY, path)


def test_foreign_or_broken_weight_files_are_one_line(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="not a Defect-Click weights file"):
        load_click_model(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_click_model(tmp_path / "junk.safetensors")
    with pytest.raises(InputError, match="missing"):
        load_click_model(tmp_path / "none.safetensors")


def test_onnx_export_matches_torch_in_the_predictor(tiny: torch.nn.Module, tmp_path: Path) -> None:
    result = export_click_onnx(tiny, TINY, tmp_path / "click.onnx", size=64)
    assert result.max_abs_diff < 1e-3 and result.sidecar.is_file()
    runner = OnnxClickNet(result.path)
    with torch.no_grad():
        expected = tiny(probe(70, 90))
    assert torch.allclose(runner(probe(70, 90)), expected, atol=1e-3)
    image = np.random.default_rng(0).integers(0, 255, (120, 100, 3), dtype=np.uint8)
    clicks = (Click(60, 50, True), Click(20, 20, False))
    options = {"coarse_side": 64, "focus_side": 64, "focus_min": 32}
    by_torch = ClickPredictor(tiny, TINY, **options).predict(image, clicks[:1], np.zeros((120, 100), bool))
    by_onnx = load_predictor(str(result.path), **options).predict(image, clicks[:1], np.zeros((120, 100), bool))
    assert np.mean(by_torch == by_onnx) > 0.99
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        export_click_onnx(tiny, TINY, result.path)


def test_changed_onnx_file_is_refused(tiny: torch.nn.Module, tmp_path: Path) -> None:
    path = export_click_onnx(tiny, TINY, tmp_path / "click.onnx", size=64).path
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(InputError, match="sha256 does not match"):
        OnnxClickNet(path)
    (tmp_path / "click.onnx.json").unlink()
    with pytest.raises(InputError, match="sidecar not found"):
        OnnxClickNet(path)


def test_click_export_cli_writes_weights_and_onnx(tiny: torch.nn.Module, tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "last.pt", {"model": tiny.state_dict(), "model_config": TINY.to_json()})
    weights, onnx = tmp_path / "w.safetensors", tmp_path / "m.onnx"
    result = invoke("click", "export", run, "--weights", weights, "--onnx", onnx)
    assert result.exit_code == 0, result.output
    assert weights.is_file() and onnx.is_file()
    assert json.loads((tmp_path / "m.onnx.json").read_text())["model_config"] == TINY.to_json()
    one_line_error(["click", "export", run], "nothing to write")
    one_line_error(["click", "export", "grabcut", "--weights", tmp_path / "g.safetensors"], "no weights to export")


# -- the shipped default ---------------------------------------------------------------------------


def test_default_model_ships_in_the_package_and_loads_offline(offline: None) -> None:
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size <= 20 * 1024 * 1024
    model, config = load_click_model("default")
    assert config.encoder == "mobilenet_v2"
    info = weights_info(DEFAULT_WEIGHTS)
    assert "mvtec" not in json.dumps(info).lower()  # never trained on MVTec AD (non-commercial)
    assert sum(p.numel() for p in model.parameters()) > 1_000_000


def test_default_model_gains_iou_with_clicks_on_unseen_procedural_data(offline: None, tmp_path: Path) -> None:
    folder = write_ds_folder(tmp_path / "ds", n_defective_per_type=1, n_good=0, size=(160, 160), seed=987)
    items = [item for item in folder_instances(folder, list(folder)) if item.area >= 30][:12]
    predictor = load_predictor("default")
    first, fifth = [], []
    for item in items:
        run = run_object(predictor, folder.load_image(folder[str(item.sample_id)]), item.mask(), max_clicks=5)
        first.append(run.ious[0])
        fifth.append(run.ious[4])
    assert len(items) >= 8
    assert np.mean(fifth) > np.mean(first) + 0.05  # measured: 0.59 after one click, 0.72 after five
    assert np.mean(fifth) > 0.6
