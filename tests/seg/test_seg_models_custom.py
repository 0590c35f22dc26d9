"""The three zoo models written here (BiSeNetV2, Segmenter ViT-Tiny, light Mask2Former): what is
particular to each. tests/seg/test_seg_models.py builds, trains and overfits every model generically."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402

from defectspectrum.seg.labels import IGNORE_INDEX  # noqa: E402
from defectspectrum.seg.models import create_model  # noqa: E402
from defectspectrum.seg.models.mask2former import mask_targets, onnx_grid_sample_float  # noqa: E402

CUSTOM = ("bisenetv2", "segmenter-vit-tiny", "mask2former")


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", CUSTOM)
@pytest.mark.parametrize(("in_channels", "size"), [(3, (37, 53)), (1, (48, 80))])
def test_any_input_size_gives_logits_at_that_size(name: str, in_channels: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = create_model(name, 3, in_channels=in_channels)
    with torch.no_grad():
        logits = model(torch.randn(2, in_channels, *size))
    assert logits.shape == (2, 3, *size)
    assert torch.isfinite(logits).all()


def test_bisenetv2_has_the_papers_size_and_trains_on_a_batch_of_one() -> None:
    model = create_model("bisenetv2", 2)
    assert 3.2e6 < _params(model) < 3.45e6  # the paper and mmseg: ~3.3M with the 1024-channel head
    # the context embedding normalises globally pooled features; one image must not break it
    model.train()
    logits = model(torch.randn(1, 3, 64, 64))
    F.cross_entropy(logits, torch.zeros(1, 64, 64, dtype=torch.long)).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_segmenter_decoder_appends_one_token_per_class() -> None:
    model = create_model("segmenter-vit-tiny", 5)
    segmenter = model.core
    decoder = segmenter.decoder
    assert decoder.class_embedding.shape == (1, 5, 192)
    patches = segmenter.encoder(torch.randn(2, 3, 32, 48))
    assert patches.shape == (2, 2 * 3, 192)  # the class token of the ViT is dropped
    assert decoder.tokens(patches).shape == (2, 2 * 3 + 5, 192)
    assert len(decoder.blocks) == 2


def test_segmenter_encoder_matches_timm_at_its_native_size() -> None:
    # the encoder re-implements timm's forward to resize the position embedding without antialias;
    # at 224 px nothing is resized, so it must equal timm's own forward (a timm checkpoint fits)
    torch.manual_seed(0)
    encoder = create_model("segmenter-vit-tiny", 2).core.encoder.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(encoder(x), encoder.vit.forward_features(x)[:, 1:], atol=1e-5)


def test_segmenter_masks_are_layer_normed_over_classes() -> None:
    torch.manual_seed(0)
    model = create_model("segmenter-vit-tiny", 4).eval()
    with torch.no_grad():
        masks = model.core(torch.randn(1, 3, 32, 32))  # (1, 4, 2, 2) before upsampling
    assert masks.shape == (1, 4, 2, 2)
    assert torch.allclose(masks.mean(dim=1), torch.zeros(1, 2, 2), atol=1e-5)  # layer norm at init


def test_mask2former_forward_gives_log_probabilities() -> None:
    torch.manual_seed(0)
    model = create_model("mask2former", 4).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 40, 56))
    assert logits.shape == (2, 4, 40, 56)
    assert torch.allclose(logits.exp().sum(dim=1), torch.ones(2, 40, 56), atol=1e-5)
    assert (logits <= 0).all()


def test_mask_targets_give_one_mask_per_present_class_and_ignore_pixels_to_none() -> None:
    target = torch.tensor([[0, 0, 2, IGNORE_INDEX],
                           [0, 2, 2, IGNORE_INDEX]])
    masks, classes = mask_targets(torch.stack([target, torch.full_like(target, IGNORE_INDEX)]))
    assert classes[0].tolist() == [0, 2]
    assert masks[0].dtype == torch.float32
    assert masks[0].tolist() == [[[1, 1, 0, 0], [1, 0, 0, 0]],
                                 [[0, 0, 1, 0], [0, 1, 1, 0]]]
    assert masks[0][:, :, 3].sum() == 0  # the ignore column is in no mask
    assert masks[1].shape == (0, 2, 4)
    assert classes[1].numel() == 0


def test_mask2former_loss_decreases_and_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = create_model("mask2former", 3, train_num_points=256)
    images = torch.randn(2, 3, 40, 56)  # padded to 64x64 inside
    targets = torch.zeros(2, 40, 56, dtype=torch.long)
    targets[:, 10:25, 10:30] = 1
    targets[1, 30:, 40:] = 2
    targets[:, :3] = IGNORE_INDEX
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(8):
        loss, logits = model.loss(images, targets)
        assert torch.isfinite(loss)
        assert logits.shape == (2, 3, 40, 56)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:  # DDP needs every trainable parameter to take part
            assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-2:]) / 2 < 0.9 * losses[0]


def test_mask2former_loss_returns_the_forward_logits_and_survives_all_ignore() -> None:
    torch.manual_seed(0)
    model = create_model("mask2former", 3, train_num_points=256).eval()
    images = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        loss, logits = model.loss(images, torch.full((2, 40, 56), IGNORE_INDEX))
        assert torch.isfinite(loss) and loss > 0  # only the no-object class loss remains
        assert torch.allclose(logits, model(images), atol=1e-5)


def _export(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"])


def _onnx_parity(path: Path, model: torch.nn.Module, x: torch.Tensor) -> None:
    import onnx
    import onnxruntime as ort

    assert [op.version for op in onnx.load(str(path)).opset_import if op.domain in ("", "ai.onnx")] == [17]
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    assert got.shape == expected.shape
    assert abs(got - expected).max() < 1e-4


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", ["bisenetv2", "segmenter-vit-tiny"])
def test_onnx_export_matches_torch(name: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model(name, 3).eval()
    x = torch.randn(1, 3, 40, 56)  # padded inside: exercises pad, resize and crop
    _export(model, x, tmp_path / "model.onnx")
    _onnx_parity(tmp_path / "model.onnx", model, x)


@pytest.mark.filterwarnings("ignore")
def test_mask2former_onnx_export_runs_after_the_grid_sample_fix(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model("mask2former", 3).eval()
    x = torch.randn(1, 3, 64, 64)
    _export(model, x, tmp_path / "raw.onnx")
    fixed = onnx_grid_sample_float(onnx.load(str(tmp_path / "raw.onnx")))
    assert sum(node.op_type == "GridSample" for node in fixed.graph.node) > 0
    onnx.save(fixed, str(tmp_path / "model.onnx"))
    _onnx_parity(tmp_path / "model.onnx", model, x)
