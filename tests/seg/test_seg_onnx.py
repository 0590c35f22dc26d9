"""ONNX export with its sidecar, and onnxruntime parity with torch from raw image to class mask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from seg_helpers import TinyConvNet  # noqa: E402
from torch import nn  # noqa: E402

from conftest import ModuleTmp  # noqa: E402
from defectspectrum.data.classes import ClassMap  # noqa: E402
from defectspectrum.errors import InputError  # noqa: E402
from defectspectrum.seg.infer import Predictor, TorchPredictor  # noqa: E402
from defectspectrum.seg.labels import LabelSpace  # noqa: E402
from defectspectrum.seg.onnx_export import (  # noqa: E402
    OnnxPredictor,
    export_onnx,
    read_sidecar,
    sidecar_path,
)
from defectspectrum.seg.preprocess import Preprocess  # noqa: E402

CLASSES = ("background", "scratch", "hole")
PREPROCESS = Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))  # not the default: the sidecar must carry it


class PooledNet(nn.Module):
    """Pools to a 3 x 3 grid (as PSPNet's pyramid does): the TorchScript exporter takes it only at a
    fixed input size whose side 3 divides."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stem(x)
        context = nn.functional.interpolate(self.pool(features), size=features.shape[-2:], mode="bilinear",
                                            align_corners=False)
        return self.head(torch.cat([features, context], dim=1))


def with_running_statistics(model: nn.Module) -> nn.Module:
    """Give BatchNorm layers running statistics of their own (a few training-mode passes), so that an
    export or prediction in training mode would show."""
    generator = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 3, 64, 64, generator=generator) * 2 + 0.5)
    return model


def raw_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def assert_parity(torch_predictor: TorchPredictor, onnx_predictor: OnnxPredictor, image: np.ndarray) -> float:
    """Identical masks and logits within 1e-4, from the raw image; returns the largest logit difference."""
    expected, got = torch_predictor.logits(image), onnx_predictor.logits(image)
    assert got.shape == expected.shape == (len(CLASSES), *image.shape[:2])
    diff = float(np.abs(got - expected).max())
    assert diff <= 1e-4
    mask = onnx_predictor.predict(image)
    np.testing.assert_array_equal(mask, torch_predictor.predict(image))
    assert len(np.unique(mask)) > 1  # a mask of one class would make the comparison weak
    return diff


smp = pytest.importorskip("segmentation_models_pytorch")


@pytest.fixture(scope="module", params=["unet", "deeplabv3plus"])
def smp_export(request: pytest.FixtureRequest, module_tmp: ModuleTmp) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    build = {"unet": smp.Unet, "deeplabv3plus": smp.DeepLabV3Plus}[request.param]
    model = with_running_statistics(build("resnet18", encoder_weights=None, classes=len(CLASSES)))
    path = module_tmp(request.param) / "model.onnx"
    result = export_onnx(model, path, preprocess=PREPROCESS, labels=CLASSES, size=64, tile=64)
    assert result.policy == "dynamic"
    assert model.training  # the export put it in eval mode and back
    return model, path


def test_smp_models_onnx_parity_whole_image(smp_export: tuple[nn.Module, Path]) -> None:
    model, path = smp_export
    onnx_predictor = OnnxPredictor(path)
    assert isinstance(onnx_predictor, Predictor)
    assert_parity(TorchPredictor(model, PREPROCESS), onnx_predictor, raw_image(96, 128))


def test_smp_models_onnx_parity_tiled_on_an_image_larger_than_the_tile(smp_export: tuple[nn.Module, Path]) -> None:
    model, path = smp_export
    image = raw_image(128, 160, seed=1)
    tiled = TorchPredictor(model, PREPROCESS, tile=64, overlap=0.25, batch_size=3)
    assert_parity(tiled, OnnxPredictor(path, tile=64, overlap=0.25, batch_size=3), image)
    assert not np.allclose(tiled.logits(image), TorchPredictor(model, PREPROCESS).logits(image), atol=1e-3)


def test_sidecar_holds_preprocessing_size_policy_classes_opset_and_checksum(tmp_path: Path) -> None:
    space = LabelSpace.build({"pill": ClassMap.from_defects(["scratch", "hole"])})
    path = tmp_path / "tiny.onnx"
    result = export_onnx(TinyConvNet(), path, preprocess=PREPROCESS, labels=space, size=32, tile=128)
    data = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path) == tmp_path / "tiny.onnx.json" == result.sidecar
    assert data["preprocess"] == {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "scale": 255.0,
                                  "channels": "RGB", "layout": "NCHW"}
    assert data["input"]["dynamic_batch"] and data["input"]["dynamic_size"] and data["input"]["layout"] == "NCHW"
    assert data["classes"] == list(CLASSES) and data["tile"] == 128
    written = [entry.version for entry in onnx.load(str(path)).opset_import if entry.domain in ("", "ai.onnx")]
    assert data["opset"] == result.opset == written[0]
    info = read_sidecar(path)
    assert info.preprocess == PREPROCESS and info.labels == space and info.tile == 128 and info.fixed_size is None
    assert result.max_abs_diff <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.onnx.json"]  # no temporary files left


def test_a_model_that_exports_only_at_a_fixed_size_is_tiled_at_that_size(tmp_path: Path,
                                                                        capfd: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = PooledNet()
    path = tmp_path / "pooled.onnx"
    result = export_onnx(model, path, preprocess=PREPROCESS, labels=CLASSES, size=48)
    assert result.policy in ("dynamic-batch", "fixed")
    assert capfd.readouterr().out == ""  # the exporter's graph dump of the failed dynamic try is not printed
    data = json.loads(sidecar_path(path).read_text())
    assert not data["input"]["dynamic_size"] and data["input"]["size"] == 48
    assert data["export"]["tried"] and data["export"]["tried"][0].startswith("dynamic:")
    predictor = OnnxPredictor(path)
    assert predictor.tile == 48
    assert_parity(TorchPredictor(model, PREPROCESS, tile=48), predictor, raw_image(100, 70, seed=2))
    assert predictor.logits(raw_image(20, 30)).shape == (3, 20, 30)  # smaller than the input: padded, cut back
    with pytest.raises(InputError, match="48x48 inputs only"):
        OnnxPredictor(path, tile=64)


def test_export_refuses_to_replace_files_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    export_onnx(TinyConvNet(), path, preprocess=PREPROCESS, labels=CLASSES, size=32)
    first = read_sidecar(path).sha256
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        export_onnx(TinyConvNet(), path, preprocess=PREPROCESS, labels=CLASSES, size=32)
    assert read_sidecar(path).sha256 == first
    sidecar_path(path).unlink()
    path.with_name("other.onnx.json").write_text("{}")
    with pytest.raises(InputError, match="exists"):  # the sidecar alone is protected too
        export_onnx(TinyConvNet(), tmp_path / "other.onnx", preprocess=PREPROCESS, labels=CLASSES, size=32)
    torch.manual_seed(5)
    export_onnx(TinyConvNet(), path, preprocess=PREPROCESS, labels=CLASSES, size=32, overwrite=True)
    assert read_sidecar(path).sha256 != first


def test_export_refuses_class_names_that_do_not_match_the_model(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="predicts 3 classes but 2"):
        export_onnx(TinyConvNet(), tmp_path / "m.onnx", preprocess=PREPROCESS, labels=["background", "x"], size=32)
    assert not any(tmp_path.iterdir())


def test_onnx_predictor_needs_a_sound_sidecar_for_the_very_file(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    export_onnx(TinyConvNet(), path, preprocess=PREPROCESS, labels=CLASSES, size=32)
    side = sidecar_path(path)
    good = side.read_text()

    side.unlink()
    with pytest.raises(InputError, match="sidecar not found"):
        OnnxPredictor(path)
    side.write_text("{not json")
    with pytest.raises(InputError, match="m.onnx.json"):
        OnnxPredictor(path)
    data = json.loads(good)
    del data["preprocess"]
    side.write_text(json.dumps(data))
    with pytest.raises(InputError, match="malformed sidecar"):
        OnnxPredictor(path)
    data = json.loads(good)
    data["input"]["dynamic_size"] = "yes"
    side.write_text(json.dumps(data))
    with pytest.raises(InputError, match="malformed sidecar"):
        OnnxPredictor(path)
    side.write_text(good)
    OnnxPredictor(path)  # sound again
    with path.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(InputError, match="sha256 does not match"):
        OnnxPredictor(path)
    with pytest.raises(InputError, match="ONNX file not found"):
        OnnxPredictor(tmp_path / "absent.onnx")


@pytest.mark.slow
def test_mask2former_exports_through_export_onnx_and_predicts_the_same_masks(tmp_path: Path) -> None:
    from defectspectrum.seg.models import create_model
    from defectspectrum.seg.onnx_export import OnnxPredictor

    torch.manual_seed(0)
    model = create_model("mask2former", 3).eval()
    exported = export_onnx(model, tmp_path / "m.onnx", preprocess=PREPROCESS, labels=list(CLASSES), size=64, tile=64)
    assert exported.max_abs_diff < 1e-4  # the GridSample grids are cast to float32 on the way out
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    torch_mask = TorchPredictor(model, PREPROCESS).predict(image)
    assert np.array_equal(OnnxPredictor(tmp_path / "m.onnx").predict(image), torch_mask)


def test_pspnet_exports_at_a_fixed_size_its_pooling_divides(tmp_path: Path) -> None:
    from defectspectrum.seg.models import create_model

    torch.manual_seed(0)
    model = create_model("pspnet-r18", 3).eval()
    exported = export_onnx(model, tmp_path / "p.onnx", preprocess=PREPROCESS, labels=list(CLASSES), size=192)
    assert exported.policy == "fixed" and exported.size == 192 and exported.max_abs_diff < 1e-4
    image = np.random.default_rng(1).integers(0, 256, (200, 260, 3), dtype=np.uint8)  # tiled at 192 px
    torch_mask = TorchPredictor(model, PREPROCESS, tile=192).predict(image)
    assert np.array_equal(OnnxPredictor(tmp_path / "p.onnx").predict(image), torch_mask)
