"""Tiled (sliding-window) inference, the torch predictor, and predictions written as a DS folder."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from seg_helpers import TinyConvNet  # noqa: E402
from torch import nn  # noqa: E402

from defectspectrum.data.classes import ClassMap  # noqa: E402
from defectspectrum.data.dsfolder import DSFolder  # noqa: E402
from defectspectrum.data.validate import validate  # noqa: E402
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
from defectspectrum.seg.labels import LabelSpace  # noqa: E402
from defectspectrum.seg.predict import OVERLAY_FOLDER, predict_to_ds  # noqa: E402
from defectspectrum.seg.preprocess import Preprocess  # noqa: E402


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


# -- predict_to_ds -----------------------------------------------------------------------------------

PILL = ClassMap.from_defects(["scratch", "hole"])
SCREW = ClassMap.from_defects(["thread"])


class RedChannelPredictor:
    """Predicts the label index written in each pixel's red value (60 per label, so that a JPEG's
    small changes do not alter it): known answers for the label mapping."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.seen: list[tuple[int, ...]] = []

    def logits(self, image: np.ndarray) -> np.ndarray:
        labels = np.clip(np.round(image[..., 0] / 60.0), 0, self.num_classes - 1).astype(np.int64)
        return np.eye(self.num_classes, dtype=np.float32)[labels].transpose(2, 0, 1)

    def predict(self, image: np.ndarray) -> np.ndarray:
        self.seen.append(image.shape)
        return labels_from_logits(self.logits(image))


def label_image(labels: np.ndarray, seed: int) -> np.ndarray:
    """An RGB image whose red channel encodes `labels` (the rest noise, so images differ)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*labels.shape, 3), dtype=np.uint8)
    image[..., 0] = labels * 60
    return image


def make_ds(root: Path, objects: dict[str, ClassMap], samples: list[tuple[str, str, np.ndarray, dict]]) -> DSFolder:
    folder = DSFolder.create(root, objects=objects)
    for object_name, name, image, fields in samples:
        folder.add_sample(object_name, name, image, np.zeros(image.shape[:2], np.uint8), **fields)
    folder.save()
    return folder


def test_predict_a_ds_folder_keeps_ids_and_maps_global_labels_back_to_object_indices(tmp_path: Path) -> None:
    space = LabelSpace.build({"pill": PILL, "screw": SCREW}, mode="global")
    assert space.names == ("background", "pill/scratch", "pill/hole", "screw/thread")
    labels = np.array([[0, 1, 2, 3]] * 4, dtype=np.uint8)
    source = make_ds(tmp_path / "ds", {"pill": PILL, "screw": SCREW}, [
        ("pill", "p1", label_image(labels, 0), {"split": "val", "defect_type": "hole", "caption": "a pill"}),
        ("pill", "p2", label_image(labels.T, 1), {"split": "train", "defect_type": "good"}),
        ("screw", "s1", label_image(labels, 2), {"split": "val", "defect_type": "thread", "synthetic": True}),
    ])
    out = predict_to_ds(RedChannelPredictor(4), space, source.root, tmp_path / "pred")
    assert out.root == tmp_path / "pred"
    reopened = DSFolder.open(tmp_path / "pred")
    assert [s.id for s in reopened] == ["pill/p1", "pill/p2", "screw/s1"]
    assert dict(reopened.objects) == {"pill": PILL, "screw": SCREW}
    for sample in reopened:
        original = source[sample.id]
        assert (sample.split, sample.defect_type, sample.caption, sample.synthetic) == \
            (original.split, original.defect_type, original.caption, original.synthetic)
        assert sample.source == str(source.image_path(original).absolute())
        assert reopened.image_path(sample).read_bytes() == source.image_path(original).read_bytes()
    # pill: global 1, 2 are its classes 1, 2; global 3 (screw/thread) is background in a pill mask
    np.testing.assert_array_equal(reopened.load_mask(reopened["pill/p1"]), [[0, 1, 2, 0]] * 4)
    np.testing.assert_array_equal(reopened.load_mask(reopened["pill/p2"]), np.array([[0, 1, 2, 0]] * 4).T)
    np.testing.assert_array_equal(reopened.load_mask(reopened["screw/s1"]), [[0, 0, 0, 1]] * 4)
    for sample_id in ("pill/p1", "pill/p2", "screw/s1"):
        drawn = np.asarray(Image.open(tmp_path / "pred" / OVERLAY_FOLDER / f"{sample_id}.png"))
        assert drawn.shape == (4, 4, 3)
    assert reopened.meta["prediction"]["labels"] == space.to_json()
    report = validate(reopened)
    assert report.ok, report.errors


def test_predict_a_ds_folder_with_a_torch_model_in_object_mode(tmp_path: Path) -> None:
    space = LabelSpace.build({"pill": PILL})
    rng = np.random.default_rng(3)
    source = make_ds(tmp_path / "ds", {"pill": PILL}, [
        ("pill", f"img{i}", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), {"split": "val"}) for i in range(2)])
    torch.manual_seed(0)
    predictor = TorchPredictor(TinyConvNet(classes=3), tile=32)
    out = predict_to_ds(predictor, space, source, tmp_path / "pred", overlays=False)
    for sample in out:
        expected = predictor.predict(source.load_image(source[sample.id]))
        np.testing.assert_array_equal(out.load_mask(sample), expected)
    assert not (tmp_path / "pred" / OVERLAY_FOLDER).exists()
    assert validate(DSFolder.open(tmp_path / "pred")).ok


def test_predict_a_folder_of_images(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    labels = np.array([[0, 1], [2, 0]], dtype=np.uint8)
    for relative, seed in (("a.png", 0), ("sub/a.png", 1), ("b.bmp", 2)):
        Image.fromarray(label_image(labels, seed)).save(images / relative)
    Image.new("RGB", (2, 2), (60, 60, 60)).save(images / "a.jpg")
    space = LabelSpace.build({"pill": PILL})
    predictor = RedChannelPredictor(3)
    out = predict_to_ds(predictor, space, images, tmp_path / "pred")
    assert sorted(s.id for s in out) == ["pill/a", "pill/a-2", "pill/b", "pill/sub_a"]
    assert len(predictor.seen) == 4
    png = out["pill/a-2"]  # sorted paths: a.jpg took the name first
    assert png.split is None and png.source == str((images / "a.png").absolute())
    np.testing.assert_array_equal(out.load_mask(png), labels)
    assert out.image_path(png).read_bytes() == (images / "a.png").read_bytes()
    assert out.image_path(out["pill/b"]).suffix == ".bmp"
    assert (tmp_path / "pred" / OVERLAY_FOLDER / "pill" / "sub_a.png").is_file()
    assert validate(DSFolder.open(tmp_path / "pred")).ok
    # several objects: the images' object must be named, and be one trained on
    both = LabelSpace.build({"pill": PILL, "screw": SCREW}, mode="global")
    with pytest.raises(InputError, match="needs --object"):
        predict_to_ds(RedChannelPredictor(4), both, images, tmp_path / "p2")
    with pytest.raises(InputError, match="'nut' was not trained on"):
        predict_to_ds(RedChannelPredictor(4), both, images, tmp_path / "p2", object_name="nut")
    screws = predict_to_ds(RedChannelPredictor(4), both, images, tmp_path / "p2", object_name="screw")
    assert {s.object for s in screws} == {"screw"} and dict(screws.objects) == {"screw": SCREW}
    np.testing.assert_array_equal(screws.load_mask(screws["screw/a-2"]), np.zeros((2, 2)))  # pill labels: background


def test_predict_refuses_objects_whose_class_maps_differ_naming_each(tmp_path: Path) -> None:
    space = LabelSpace.build({"pill": PILL, "screw": SCREW}, mode="global")
    image = label_image(np.zeros((4, 4), np.uint8), 0)
    source = make_ds(tmp_path / "ds", {"pill": ClassMap.from_defects(["scratch"]), "nut": SCREW, "screw": SCREW},
                     [("pill", "a", image, {}), ("nut", "b", image, {}), ("screw", "c", image, {})])
    with pytest.raises(InputError) as caught:
        predict_to_ds(RedChannelPredictor(4), space, source, tmp_path / "pred")
    message = str(caught.value)
    assert "'pill' has classes ['background', 'scratch']" in message
    assert "'screw'" not in message and "'nut'" not in message and "\n" not in message  # nut: not trained, left out
    assert not (tmp_path / "pred").exists()
    predicted = predict_to_ds(RedChannelPredictor(4), space, source, tmp_path / "screws", object_name="screw")
    assert [s.id for s in predicted] == ["screw/c"]


def test_predict_refuses_empty_inputs_unreadable_images_and_outputs_inside_the_input(tmp_path: Path) -> None:
    space = LabelSpace.build({"pill": PILL})
    empty_ds = DSFolder.create(tmp_path / "empty", objects={"pill": PILL})
    with pytest.raises(InputError, match="no samples"):
        predict_to_ds(RedChannelPredictor(3), space, empty_ds, tmp_path / "pred")
    (tmp_path / "no_images").mkdir()
    (tmp_path / "no_images" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no images found"):
        predict_to_ds(RedChannelPredictor(3), space, tmp_path / "no_images", tmp_path / "pred")
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(label_image(np.zeros((4, 4), np.uint8), 0)).save(broken / "fine.png")
    (broken / "zbad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError) as caught:
        predict_to_ds(RedChannelPredictor(3), space, broken, tmp_path / "pred")
    assert "zbad.png" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "pred").exists()  # nothing half-written
    with pytest.raises(InputError, match="outside the source"):
        predict_to_ds(RedChannelPredictor(3), space, broken, broken / "pred")
    with pytest.raises(InputError, match="not found"):
        predict_to_ds(RedChannelPredictor(3), space, tmp_path / "absent", tmp_path / "pred")


def test_predict_replaces_an_earlier_prediction_only_when_told(tmp_path: Path) -> None:
    space = LabelSpace.build({"pill": PILL})
    source = make_ds(tmp_path / "ds", {"pill": PILL}, [
        ("pill", "a", label_image(np.ones((4, 4), np.uint8), 0), {}),
        ("pill", "b", label_image(np.zeros((4, 4), np.uint8), 1), {})])
    out = tmp_path / "pred"
    predict_to_ds(RedChannelPredictor(3), space, source, out)
    with pytest.raises(InputError, match="overwrite"):
        predict_to_ds(RedChannelPredictor(3), space, source, out)
    (out / "notes.txt").write_text("mine")
    (out / OVERLAY_FOLDER / "pill" / "stale.png").write_bytes(b"old overlay")
    kept: list[str] = []
    twos = label_image(np.full((4, 4), 2, np.uint8), 0)
    only_a = make_ds(tmp_path / "ds2", {"pill": PILL}, [("pill", "a", twos, {})])
    result = predict_to_ds(RedChannelPredictor(3), space, only_a, out, overwrite=True, kept=kept)
    assert [s.id for s in result] == ["pill/a"]
    np.testing.assert_array_equal(result.load_mask(result["pill/a"]), np.full((4, 4), 2))
    assert kept == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (out / OVERLAY_FOLDER / "pill").iterdir()) == ["a.png"]  # the old ones went
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not a DS folder"):
        predict_to_ds(RedChannelPredictor(3), space, source, tmp_path / "other", overwrite=True)
