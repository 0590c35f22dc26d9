"""Tiled (sliding-window) inference and the torch predictor."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from defectspectrum.errors import InputError  # noqa: E402
from defectspectrum.seg.infer import (  # noqa: E402
    Predictor,
    TorchPredictor,
    labels_from_logits,
    slide_logits,
    slide_numpy,
    stride_for,
    window_boxes,
    window_counts,
)
from defectspectrum.seg.preprocess import Preprocess  # noqa: E402


class TinyConvNet(nn.Module):
    """Two 3x3 convolutions with BatchNorm: spatial context, any input size."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, classes, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PixelNet(nn.Module):
    """A 1x1 convolution written as per-pixel products and sums: no spatial context, and each output
    pixel is computed by the same elementwise operations whatever the input size (bit for bit)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(classes, 3, generator=generator))
        self.bias = nn.Parameter(torch.randn(classes, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = []
        for c in range(self.weight.shape[0]):
            value = x[:, 0] * self.weight[c, 0] + self.bias[c]
            for k in range(1, 3):
                value = value + x[:, k] * self.weight[c, k]
            channels.append(value)
        return torch.stack(channels, dim=1)


class BatchRecorder(nn.Module):
    """Wraps a model and records the batch shape of every call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.model(x)


def mmseg_boxes(height: int, width: int, tile: int, stride: int) -> list[tuple[int, int, int, int]]:
    """mmsegmentation's EncoderDecoder.slide_inference loop, transcribed (crop = tile in both sides)."""
    h_grids = max(height - tile + stride - 1, 0) // stride + 1
    w_grids = max(width - tile + stride - 1, 0) // stride + 1
    boxes = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + tile, height), min(x1 + tile, width)
            y1, x1 = max(y2 - tile, 0), max(x2 - tile, 0)
            boxes.append((y1, y2, x1, x2))
    return boxes


def images(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


# -- window arithmetic -------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "tile", "stride"),
                         [(64, 64, 16, 12), (100, 37, 32, 24), (10, 10, 4, 3), (9, 9, 4, 2), (300, 2000, 256, 192),
                          (20, 50, 64, 48), (64, 64, 64, 48), (65, 64, 64, 1)])
def test_window_boxes_are_mmsegs_and_cover_every_pixel(height: int, width: int, tile: int, stride: int) -> None:
    boxes = window_boxes(height, width, tile, stride)
    assert boxes == mmseg_boxes(height, width, tile, stride)
    assert len(set(boxes)) == len(boxes)  # no window twice
    assert {(y2 - y1, x2 - x1) for y1, y2, x1, x2 in boxes} == {(min(tile, height), min(tile, width))}
    assert all(0 <= y1 < y2 <= height and 0 <= x1 < x2 <= width for y1, y2, x1, x2 in boxes)
    assert max(y2 for _, y2, _, _ in boxes) == height and max(x2 for _, _, _, x2 in boxes) == width
    counts = window_counts(height, width, boxes)
    assert counts.min() >= 1  # every pixel covered


def test_window_boxes_last_window_ends_at_the_border() -> None:
    assert window_boxes(10, 10, 4, 3) == [(y, y + 4, x, x + 4) for y in (0, 3, 6) for x in (0, 3, 6)]
    assert window_boxes(11, 4, 4, 4) == [(0, 4, 0, 4), (4, 8, 0, 4), (7, 11, 0, 4)]


def test_tile_larger_than_the_image_is_one_window_of_the_image() -> None:
    assert window_boxes(20, 30, 64, 48) == [(0, 20, 0, 30)]
    assert window_boxes(20, 300, 64, 48)[0] == (0, 20, 0, 64)  # short side: the image's height


def test_stride_from_overlap_and_refusals() -> None:
    assert stride_for(256) == 192
    assert stride_for(256, 0.0) == 256
    assert stride_for(16, 0.5) == 8
    assert stride_for(4, 0.99) == 1
    assert stride_for(64, stride=10) == 10
    for tile, overlap, stride in [(0, 0.25, None), (64, 1.0, None), (64, -0.1, None), (64, 0.25, 65),
                                  (64, 0.25, 0)]:
        with pytest.raises(InputError):
            stride_for(tile, overlap, stride)


# -- slide_logits ------------------------------------------------------------------------------------


@torch.inference_mode()
def test_image_that_fits_one_tile_equals_the_whole_image_forward() -> None:
    model = TinyConvNet().eval()
    x = images(2, 40, 56)
    whole = model(x)
    for tile in (56, 64, 1000):
        assert torch.equal(slide_logits(model, x, tile=tile), whole)


@torch.inference_mode()
def test_context_free_model_tiled_equals_whole_exactly_with_many_overlapping_windows() -> None:
    model = PixelNet().eval()
    x = images(2, 64, 64)
    whole = model(x)
    recorder = BatchRecorder(model)
    tiled = slide_logits(recorder, x, tile=16, overlap=0.5, batch_size=5)  # 7 x 7 windows per image
    assert sum(shape[0] for shape in recorder.shapes) == 2 * 49
    assert torch.equal(tiled, whole)
    # windows that overlap by 3 or more (sums rounded in float32, as mmseg's): equal within rounding
    shifted = slide_logits(model, images(1, 61, 47), tile=16, overlap=0.75)
    torch.testing.assert_close(shifted, model(images(1, 61, 47)), rtol=1e-6, atol=1e-6)


@torch.inference_mode()
def test_a_1x1_convolution_tiled_matches_whole() -> None:
    model = nn.Conv2d(3, 4, 1).eval()
    x = images(1, 50, 70)
    torch.testing.assert_close(slide_logits(model, x, tile=16, overlap=0.5), model(x), rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def test_tiling_really_cuts_windows_for_a_model_with_context() -> None:
    model = TinyConvNet().eval()
    x = images(1, 64, 64)
    tiled = slide_logits(model, x, tile=32, overlap=0.25)
    assert not torch.allclose(tiled, model(x), atol=1e-4)  # zero padding at window borders shows
    # and the middle of the first window (away from all window borders) equals the whole image's
    torch.testing.assert_close(tiled[..., 4:20, 4:20], model(x)[..., 4:20, 4:20])


@torch.inference_mode()
def test_windows_run_in_batches_of_batch_size() -> None:
    recorder = BatchRecorder(TinyConvNet().eval())
    x = images(1, 100, 100)
    out = slide_logits(recorder, x, tile=32, overlap=0.25, batch_size=3)  # 4 x 4 windows
    assert [shape[0] for shape in recorder.shapes] == [3, 3, 3, 3, 3, 1]
    assert {shape[2:] for shape in recorder.shapes} == {(32, 32)}
    one_by_one = slide_logits(recorder.model, x, tile=32, overlap=0.25, batch_size=1)
    torch.testing.assert_close(out, one_by_one, rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def test_slide_logits_matches_an_independent_mmseg_transcription() -> None:
    model = TinyConvNet().eval()
    x = images(2, 70, 45)
    preds = torch.zeros(2, 3, 70, 45)
    count = torch.zeros(2, 1, 70, 45)
    for y1, y2, x1, x2 in mmseg_boxes(70, 45, 32, 24):
        preds += nn.functional.pad(model(x[:, :, y1:y2, x1:x2]), (x1, 45 - x2, y1, 70 - y2))
        count[:, :, y1:y2, x1:x2] += 1
    torch.testing.assert_close(slide_logits(model, x, tile=32, stride=24), preds / count, rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def test_a_long_strip_of_2000_by_300_pixels() -> None:
    model = PixelNet().eval()
    recorder = BatchRecorder(model)
    x = images(1, 300, 2000)
    out = slide_logits(recorder, x, tile=256, batch_size=4)
    assert out.shape == (1, 3, 300, 2000)
    assert {shape[2:] for shape in recorder.shapes} == {(256, 256)}
    assert max(shape[0] for shape in recorder.shapes) <= 4
    torch.testing.assert_close(out, model(x), rtol=1e-6, atol=1e-6)


def test_a_model_returning_the_wrong_size_is_refused() -> None:
    class Downsampling(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, ::4, ::4]

    with torch.inference_mode(), pytest.raises(InputError, match="input resolution"):
        slide_logits(Downsampling(), images(1, 64, 64), tile=32)
    with pytest.raises(InputError, match="input resolution"):
        TorchPredictor(Downsampling()).logits(np.zeros((8, 8, 3), np.uint8))


# -- slide_numpy: the same arithmetic around any runtime -------------------------------------------------


@torch.inference_mode()
def test_slide_numpy_equals_slide_logits() -> None:
    model = TinyConvNet().eval()
    x = images(1, 70, 45)

    def run(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch)).numpy()

    expected = slide_logits(model, x, tile=32, overlap=0.25, batch_size=2)[0].numpy()
    np.testing.assert_array_equal(slide_numpy(run, x[0].numpy(), tile=32, overlap=0.25, batch_size=2), expected)
    np.testing.assert_array_equal(slide_numpy(run, x[0].numpy(), tile=None), model(x)[0].numpy())


def test_slide_numpy_pads_windows_for_a_fixed_size_model() -> None:
    seen: list[tuple[int, ...]] = []

    def run(batch: np.ndarray) -> np.ndarray:
        assert batch.shape[2:] == (32, 32)
        seen.append(batch.shape)
        return batch[:, :2] * 2.0

    image = np.random.default_rng(0).standard_normal((3, 20, 70)).astype(np.float32)
    out = slide_numpy(run, image, tile=32, overlap=0.25, pad_to=(32, 32))
    assert out.shape == (2, 20, 70)
    np.testing.assert_allclose(out, image[:2] * 2.0, rtol=1e-6)
    with pytest.raises(InputError, match="fixed input"):
        slide_numpy(run, image, tile=64, pad_to=(32, 32))


# -- TorchPredictor ----------------------------------------------------------------------------------


def test_torch_predictor_from_raw_image_to_mask() -> None:
    model = TinyConvNet(classes=4)
    model.train()  # the predictor must switch BatchNorm to its running statistics
    image = np.random.default_rng(1).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    predictor = TorchPredictor(model, Preprocess())
    assert isinstance(predictor, Predictor)
    assert not model.training
    logits = predictor.logits(image)
    assert logits.dtype == np.float32 and logits.shape == (4, 48, 40)
    with torch.inference_mode():
        expected = model(torch.from_numpy(Preprocess()(image))[None])[0].numpy()
    np.testing.assert_array_equal(logits, expected)
    np.testing.assert_array_equal(predictor.logits(image), logits)  # running statistics unchanged
    mask = predictor.predict(image)
    assert mask.dtype == np.uint8 and mask.shape == (48, 40)
    np.testing.assert_array_equal(mask, logits.argmax(axis=0))
    assert len(np.unique(mask)) > 1


def test_torch_predictor_tiled_equals_whole_where_the_image_fits_and_tiles_otherwise() -> None:
    model = TinyConvNet()
    image = np.random.default_rng(2).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    whole = TorchPredictor(model).logits(image)
    np.testing.assert_array_equal(TorchPredictor(model, tile=64).logits(image), whole)
    tiled = TorchPredictor(model, tile=32, overlap=0.5, batch_size=2).logits(image)
    assert tiled.shape == whole.shape and not np.allclose(tiled, whole, atol=1e-4)


def test_torch_predictor_refuses_bad_settings_and_images() -> None:
    with pytest.raises(InputError):
        TorchPredictor(TinyConvNet(), tile=32, overlap=1.5)
    with pytest.raises(InputError):
        TorchPredictor(TinyConvNet(), batch_size=0)
    with pytest.raises(InputError, match="RGB"):
        TorchPredictor(TinyConvNet()).predict(np.zeros((8, 8), np.uint8))


def test_labels_from_logits_takes_the_first_maximum() -> None:
    logits = np.array([[[1.0, 2.0]], [[1.0, 3.0]], [[0.5, 3.0]]], dtype=np.float32)
    np.testing.assert_array_equal(labels_from_logits(logits), [[0, 1]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_predictor_runs_on_the_models_device() -> None:
    model = TinyConvNet().cuda()
    image = np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    predictor = TorchPredictor(model, tile=32)
    assert predictor.device.type == "cuda"
    on_gpu = predictor.logits(image)
    on_cpu = TorchPredictor(copy.deepcopy(model).cpu(), tile=32).logits(image)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-4)
