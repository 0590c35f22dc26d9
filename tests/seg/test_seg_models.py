"""The model zoo: every registered model builds, takes any input size, trains end to end, and
loads local weights (whole model or an ImageNet encoder checkpoint) without downloading."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("segmentation_models_pytorch")

from torch import nn  # noqa: E402

from defectspectrum.errors import InputError  # noqa: E402
from defectspectrum.seg.models import create_model, model_names  # noqa: E402
from defectspectrum.seg.models.common import InputSizeAdapter  # noqa: E402
from defectspectrum.seg.models.registry import PAPER_ORDER  # noqa: E402

RESNET18_MODELS = ("unet-small", "pspnet-r18", "deeplabv3plus-r18")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one intra-op thread is faster, and on a busy 2-core machine a
    second thread spin-waits (measured with five models: 355 s with 2 threads, 27 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _registered(name: str) -> None:
    if name not in model_names():
        pytest.skip(f"model {name} is not registered in this checkout")


def _loss(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's own objective where it has one, cross-entropy on its logits otherwise."""
    if hasattr(model, "loss"):
        loss, logits = model.loss(images, targets)
        return loss, logits
    logits = model(images)
    return nn.functional.cross_entropy(logits, targets), logits


def _toy_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two images: a bright square (class 1) and a dark bar (class 2) on a noisy grey background,
    at different places in each image, on a 4 x 4 grid of cells; the masks say where."""
    gen = torch.Generator().manual_seed(0)
    images = 0.3 * torch.randn(2, 3, size, size, generator=gen)
    masks = torch.zeros(2, size, size, dtype=torch.long)
    # (rows, columns) of the square and of the bar, in cells
    places = [(((0, 2), (0, 2)), ((3, 4), (0, 4))), (((2, 4), (2, 4)), ((0, 1), (1, 4)))]
    colours = (torch.tensor([1.5, 1.0, -0.5]), torch.tensor([-1.0, -1.5, 1.0]))
    cell = size // 4
    for i, shapes in enumerate(places):
        for label, ((y0, y1), (x0, x1)) in enumerate(shapes, start=1):
            rows, cols = slice(y0 * cell, y1 * cell), slice(x0 * cell, x1 * cell)
            images[i, :, rows, cols] += colours[label - 1].view(3, 1, 1)
            masks[i, rows, cols] = label
    return images, masks


def _miou(logits: torch.Tensor, masks: torch.Tensor, num_classes: int = 3) -> float:
    pred = logits.argmax(1)
    ious = []
    for c in range(num_classes):
        inter = ((pred == c) & (masks == c)).sum().item()
        union = ((pred == c) | (masks == c)).sum().item()
        ious.append(inter / union)
    return sum(ious) / num_classes


# --- every model -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_forward_backward_any_size_reaches_every_parameter(name: str) -> None:
    _registered(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    model.train()
    for height, width in ((64, 64), (48, 80)):
        model.zero_grad(set_to_none=True)
        images = torch.randn(2, 3, height, width)
        targets = torch.randint(0, 3, (2, height, width))
        loss, logits = _loss(model, images, targets)
        assert logits.shape == (2, 3, height, width)
        assert torch.isfinite(logits).all()
        loss.backward()
        # A trainable parameter without a gradient breaks DistributedDataParallel: freeze it instead.
        no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not no_grad, f"{name}: parameters without a gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_other_input_channels(name: str) -> None:
    _registered(name)
    model = create_model(name, num_classes=2, in_channels=4).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 4, 40, 56))
    assert logits.shape == (1, 2, 40, 56)
    with pytest.raises(RuntimeError):  # the 4 channels really are the model's input
        model(torch.randn(1, 3, 40, 56))


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_overfits_one_tiny_batch(name: str) -> None:
    _registered(name)
    torch.manual_seed(0)
    images, masks = _toy_batch(32)
    model = create_model(name, num_classes=3)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch.no_grad():
        start = _miou(_loss(model, images, masks)[1], masks)
    for _ in range(30):
        optimizer.zero_grad()
        loss, _ = _loss(model, images, masks)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        end = _miou(_loss(model, images, masks)[1], masks)
    background_only = (masks == 0).float().mean().item() / 3  # mIoU of predicting background everywhere
    assert end > max(start, background_only) + 0.3, f"{name}: mIoU {start:.2f} -> {end:.2f} in 30 steps"


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_whole_model_state_dict_round_trips(name: str, tmp_path: Path) -> None:
    _registered(name)
    trained = create_model(name, num_classes=3)
    with torch.no_grad():
        for value in trained.state_dict().values():
            if value.is_floating_point():
                value.add_(0.01)  # differ from any fresh initialisation
    torch.save(trained.state_dict(), tmp_path / "run.pth")
    loaded = create_model(name, num_classes=3, weights=tmp_path / "run.pth")
    expected = trained.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key


# --- the registry ------------------------------------------------------------------------------


def test_unknown_model_lists_the_names() -> None:
    with pytest.raises(InputError, match="unknown model 'unet-big'.*unet-small"):
        create_model("unet-big", num_classes=3)


def test_fewer_than_two_classes_refused() -> None:
    with pytest.raises(InputError, match="at least 2 classes"):
        create_model("unet-small", num_classes=1)


# --- the input-size adapter --------------------------------------------------------------------


def test_adapter_pads_bottom_right_and_crops_back() -> None:
    seen: list[tuple[int, ...]] = []

    class Echo(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape))
            return x

    x = torch.randn(2, 3, 48, 80)
    out = InputSizeAdapter(Echo(), multiple=32)(x)
    assert seen == [(2, 3, 64, 96)]
    assert torch.equal(out, x)  # pixel (0, 0) stays where it was


def test_adapter_upsamples_low_resolution_logits() -> None:
    core = nn.AvgPool2d(4)  # logits at 1/4, like SegFormer's or HRNet's heads
    x = torch.ones(1, 2, 30, 50)
    out = InputSizeAdapter(core, multiple=32)(x)
    assert out.shape == (1, 2, 30, 50)
    assert torch.allclose(out[..., :20, :20], torch.ones(1, 2, 20, 20))  # far from the zero padding


def test_adapter_exports_to_onnx_for_any_size(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = InputSizeAdapter(nn.Conv2d(3, 2, 3, stride=4, padding=1), multiple=32).eval()
    axes = {"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}}
    # exported at a size that needs no padding: the padding must still follow the input
    torch.onnx.export(model, (torch.randn(1, 3, 64, 96),), str(tmp_path / "m.onnx"), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes=axes)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for size in ((48, 80), (37, 64), (64, 64)):  # padding, resizing and cropping follow the input
        x = torch.randn(1, 3, *size)
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == want.shape == (1, 2, *size)
        assert abs(got - want).max() < 1e-4


# --- local weights -----------------------------------------------------------------------------


def _resnet18_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save(state, tmp_path / "resnet18.pth")
    return tmp_path / "resnet18.pth", state


@pytest.mark.parametrize("name", RESNET18_MODELS)
def test_timm_resnet18_checkpoint_loads_into_the_encoder(name: str, tmp_path: Path) -> None:
    path, state = _resnet18_file(tmp_path)
    model = create_model(name, num_classes=3, weights=path)
    encoder = model.get_submodule(model.encoder_path).state_dict()
    compared = [key for key in state if not key.startswith("fc.")]
    assert len(compared) == len(encoder)
    for key in compared:
        assert torch.equal(encoder[key], state[key]), key


def test_prefixed_and_wrapped_encoder_checkpoint(tmp_path: Path) -> None:
    _, state = _resnet18_file(tmp_path)
    torch.save({"epoch": 90, "state_dict": {f"module.backbone.{k}": v for k, v in state.items()}}, tmp_path / "w.pth")
    model = create_model("unet-small", num_classes=3, weights=tmp_path / "w.pth")
    assert torch.equal(model.core.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_rgb_stem_adapted_to_four_channels(tmp_path: Path) -> None:
    path, state = _resnet18_file(tmp_path)
    model = create_model("pspnet-r18", num_classes=3, in_channels=4, weights=path)
    stem = model.core.encoder.conv1.weight
    rgb = state["conv1.weight"]
    assert torch.allclose(stem[:, :3], rgb * 3 / 4) and torch.allclose(stem[:, 3], rgb[:, 0] * 3 / 4)


def test_timm_hrnet_checkpoint_loads_into_the_backbone(tmp_path: Path) -> None:
    state = timm.create_model("hrnet_w18_small_v2", pretrained=False).state_dict()
    torch.save(state, tmp_path / "hrnet.pth")
    model = create_model("hrnet-w18-small", num_classes=3, weights=tmp_path / "hrnet.pth")
    backbone = model.get_submodule(model.encoder_path).state_dict()
    assert len(backbone) > 500
    for key, value in backbone.items():
        assert torch.equal(value, state[key]), key


def test_mit_b0_checkpoint_with_its_classifier_loads(tmp_path: Path) -> None:
    source = create_model("segformer-mit-b0", num_classes=3).core.encoder.state_dict()
    torch.save({**source, "head.weight": torch.zeros(1000, 256), "head.bias": torch.zeros(1000)}, tmp_path / "b0.pth")
    model = create_model("segformer-mit-b0", num_classes=3, weights=tmp_path / "b0.pth")
    for key, value in model.core.encoder.state_dict().items():
        assert torch.equal(value, source[key]), key


def test_safetensors_file(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    _, state = _resnet18_file(tmp_path)
    safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "r18.safetensors"))
    model = create_model("deeplabv3plus-r18", num_classes=3, weights=tmp_path / "r18.safetensors")
    assert torch.equal(model.core.encoder.conv1.weight, state["conv1.weight"])


def test_unrelated_keys_refused(tmp_path: Path) -> None:
    torch.save({"alpha.weight": torch.zeros(3), "beta": torch.ones(2)}, tmp_path / "odd.pth")
    with pytest.raises(InputError, match=r"odd\.pth: 0 of \d+ tensors match .*resnet18"):
        create_model("unet-small", num_classes=3, weights=tmp_path / "odd.pth")


def test_deeper_variant_refused(tmp_path: Path) -> None:
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(InputError, match=r"r34\.pth: .*another variant"):
        create_model("unet-small", num_classes=3, weights=tmp_path / "r34.pth")


def test_wrong_encoder_family_refused(tmp_path: Path) -> None:
    path, _ = _resnet18_file(tmp_path)
    with pytest.raises(InputError, match=r"resnet18\.pth: \d+ of \d+ tensors match .*hrnet_w18_small_v2"):
        create_model("hrnet-w18-small", num_classes=3, weights=path)


def test_run_with_other_classes_refused(tmp_path: Path) -> None:
    torch.save(create_model("unet-small", num_classes=3).state_dict(), tmp_path / "run.pth")
    with pytest.raises(InputError, match=r"run\.pth: .*shape .*other classes"):
        create_model("unet-small", num_classes=5, weights=tmp_path / "run.pth")


def test_corrupt_file_refused(tmp_path: Path) -> None:
    path, _ = _resnet18_file(tmp_path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(InputError, match=r"truncated\.pth could not be read"):
        create_model("unet-small", num_classes=3, weights=truncated)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match=r"junk\.safetensors could not be read"):
        create_model("unet-small", num_classes=3, weights=tmp_path / "junk.safetensors")


def test_missing_file_and_non_state_dict_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"absent\.pth not found"):
        create_model("unet-small", num_classes=3, weights=tmp_path / "absent.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(InputError, match=r"list\.pth holds no state dict"):
        create_model("unet-small", num_classes=3, weights=tmp_path / "list.pth")


@pytest.mark.parametrize(("name", "stride"), [("pspnet-r18", 32), ("deeplabv3plus-r18", 8)])
def test_output_stride_option(name: str, stride: int) -> None:
    model = create_model(name, num_classes=2, output_stride=stride).eval()
    with torch.no_grad():
        features = model.core.encoder(torch.zeros(1, 3, 64, 64))
    assert features[-1].shape[-1] == 64 // stride
    with pytest.raises(InputError, match="output_stride must be"):
        create_model(name, num_classes=2, output_stride=4)


def test_hugging_face_mit_b0_checkpoint_gives_the_same_features(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    reference = transformers.SegformerModel(transformers.SegformerConfig()).eval()  # MiT-B0 sizes, random
    reference.save_pretrained(tmp_path)  # the layout of nvidia/mit-b0 on the hub
    model = create_model("segformer-mit-b0", num_classes=3, weights=tmp_path / "model.safetensors").eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = reference(x, output_hidden_states=True).hidden_states
        features = [f for f in model.core.encoder(x) if f.shape[1] > 0][-4:]
    for want, got in zip(expected, features):
        assert torch.allclose(got, want, atol=1e-4)  # eps of a few LayerNorms differ (1e-5 vs 1e-6)
