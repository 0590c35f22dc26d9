"""Prediction with a model: whole-image or sliding-window (tiled) logits, and the `Predictor` interface.

Tiling is mmsegmentation's `EncoderDecoder.slide_inference`: windows of `tile` x `tile` pixels start
every `stride` pixels; the last window in each direction is moved back to end at the border (so
every window has the same size and lies inside the image), each window's logits are added into a
full-size map, and the sum is divided by how many windows cover each pixel. A side shorter than the
tile gets one window of that side's length (the models take any size); an image that fits one tile
is one forward pass of the whole image, bit for bit.

`window_boxes` is the one place the windows are computed; the torch path (`slide_logits`,
`TorchPredictor`) and the numpy path around onnxruntime (`slide_numpy`, `OnnxPredictor`) both use
it and add the windows up in the same order. Windows run in batches of `batch_size`, so a
4000 x 4000 image at tile 256 holds one full-size logit map and a few windows, never all windows.

Torch is imported only where a torch function runs: the ONNX path needs numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import numpy as np

from defectspectrum.errors import InputError
from defectspectrum.seg.preprocess import Preprocess

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_OVERLAP = 0.25
DEFAULT_BATCH_SIZE = 4

Box = tuple[int, int, int, int]  # (y1, y2, x1, x2): rows y1..y2-1, columns x1..x2-1
T = TypeVar("T")


@runtime_checkable
class Predictor(Protocol):
    """What `seg predict` needs of a model, whatever runs it (torch, onnxruntime)."""

    def logits(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB image -> (C, H, W) float32 per-pixel logits."""
        ...

    def predict(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB image -> (H, W) uint8 label indices (argmax of the logits)."""
        ...


def stride_for(tile: int, overlap: float = DEFAULT_OVERLAP, stride: int | None = None) -> int:
    """The window step: `stride` where given, else `tile * (1 - overlap)` rounded (at least 1 pixel).
    InputError for a tile below 1, an overlap outside [0, 1), or a stride outside 1..tile (gaps)."""
    if tile < 1:
        raise InputError(f"tile size {tile}: must be at least 1 pixel")
    if stride is None:
        if not 0.0 <= overlap < 1.0:
            raise InputError(f"tile overlap {overlap}: must lie in [0, 1) (0.25 = a quarter of a tile)")
        stride = max(1, round(tile * (1.0 - overlap)))
    if not 1 <= stride <= tile:
        raise InputError(f"tile stride {stride}: must lie in 1..{tile} (the tile size), or windows leave gaps")
    return stride


def window_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of the windows along one side of `size` pixels (mmseg's grid, last window at the border)."""
    window = min(tile, size)
    grids = max(size - tile + stride - 1, 0) // stride + 1
    return [max(min(i * stride + tile, size) - window, 0) for i in range(grids)]


def window_boxes(height: int, width: int, tile: int, stride: int) -> list[Box]:
    """Every window (y1, y2, x1, x2) of an image, rows outer, columns inner (mmseg's order). All
    windows have the size (min(tile, height), min(tile, width)) and together cover every pixel."""
    if height < 1 or width < 1:
        raise InputError(f"cannot tile an empty image ({height}x{width})")
    rows, cols = min(tile, height), min(tile, width)
    return [(y, y + rows, x, x + cols)
            for y in window_starts(height, tile, stride) for x in window_starts(width, tile, stride)]


def window_counts(height: int, width: int, boxes: Sequence[Box]) -> np.ndarray:
    """(H, W) float32: how many of `boxes` cover each pixel."""
    counts = np.zeros((height, width), dtype=np.float32)
    for y1, y2, x1, x2 in boxes:
        counts[y1:y2, x1:x2] += 1
    return counts


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    if size < 1:
        raise InputError(f"batch size {size}: must be at least 1")
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _check_logits(out_shape: Sequence[int], expected: Sequence[int]) -> None:
    """InputError unless a model returned (N, C, h, w) logits at its input's resolution."""
    if len(out_shape) != 4 or tuple(out_shape[:1]) + tuple(out_shape[2:]) != tuple(expected):
        raise InputError(f"the model returned logits of shape {tuple(out_shape)} for input batch, height and width "
                         f"{tuple(expected)}; a segmentation model must return (N, classes, H, W) at input resolution")


def slide_logits(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, tile: int,
                 overlap: float = DEFAULT_OVERLAP, stride: int | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """(N, C, H, W) logits of `model` over `images` (N, 3, H, W), window by window (see the module
    docstring). Windows go to the model's device in batches of `batch_size`; the sums stay on the
    images' device. Call it under `torch.inference_mode()` with the model in eval mode."""
    import torch

    step = stride_for(tile, overlap, stride)
    count, _, height, width = images.shape
    boxes = window_boxes(height, width, tile, step)
    device = _model_device(model, images.device)
    if len(boxes) == 1:  # the whole image: one forward pass, exactly
        out = model(images.to(device))
        _check_logits(out.shape, (count, height, width))
        return out.to(images.device)
    pairs = [(n, box) for n in range(count) for box in boxes]  # image outer: sums in window order per image
    sums: torch.Tensor | None = None
    for chunk in _batches(pairs, batch_size):
        crops = torch.stack([images[n, :, y1:y2, x1:x2] for n, (y1, y2, x1, x2) in chunk]).to(device)
        out = model(crops)
        _check_logits(out.shape, (len(chunk), *crops.shape[2:]))
        out = out.to(images.device)
        if sums is None:
            sums = out.new_zeros((count, out.shape[1], height, width))
        for (n, (y1, y2, x1, x2)), window in zip(chunk, out):
            sums[n, :, y1:y2, x1:x2] += window
    assert sums is not None
    counts = torch.from_numpy(window_counts(height, width, boxes)).to(sums.device, sums.dtype)
    return sums / counts


def slide_numpy(run: Callable[[np.ndarray], np.ndarray], image: np.ndarray, *, tile: int | None,
                overlap: float = DEFAULT_OVERLAP, stride: int | None = None,
                batch_size: int = DEFAULT_BATCH_SIZE, pad_to: tuple[int, int] | None = None) -> np.ndarray:
    """(C, H, W) float32 logits of `run` (a (B, 3, h, w) float32 batch -> (B, C, h, w)) over one
    preprocessed image (3, H, W), the numpy twin of `slide_logits` (same windows, same order of sums).
    `tile=None`: the whole image in one call. `pad_to` (h, w): a model of fixed input size; windows
    smaller than it are padded with zeros at the bottom and right and their logits cut back."""
    _, height, width = image.shape
    if tile is None:
        boxes: list[Box] = [(0, height, 0, width)]
    else:
        boxes = window_boxes(height, width, tile, stride_for(tile, overlap, stride))
    sums: np.ndarray | None = None
    for chunk in _batches(boxes, batch_size):
        crops = np.stack([image[:, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])
        rows, cols = crops.shape[2:]
        if pad_to is not None and (rows, cols) != tuple(pad_to):
            if rows > pad_to[0] or cols > pad_to[1]:
                raise InputError(f"windows of {cols}x{rows} pixels do not fit the model's fixed input of "
                                 f"{pad_to[1]}x{pad_to[0]}; tile with that size")
            crops = np.pad(crops, ((0, 0), (0, 0), (0, pad_to[0] - rows), (0, pad_to[1] - cols)))
        out = np.asarray(run(np.ascontiguousarray(crops, dtype=np.float32)))
        _check_logits(out.shape, crops.shape[:1] + crops.shape[2:])
        out = out[:, :, :rows, :cols]
        if len(boxes) == 1:
            return np.ascontiguousarray(out[0], dtype=np.float32)
        if sums is None:
            sums = np.zeros((out.shape[1], height, width), dtype=np.float32)
        for (y1, y2, x1, x2), window in zip(chunk, out):
            sums[:, y1:y2, x1:x2] += window
    assert sums is not None
    return sums / window_counts(height, width, boxes)


def labels_from_logits(logits: np.ndarray) -> np.ndarray:
    """(C, H, W) logits -> (H, W) uint8 label indices (the first of equal maxima, as np.argmax)."""
    if logits.shape[0] > 256:
        raise InputError(f"{logits.shape[0]} classes do not fit a uint8 label mask")
    return np.argmax(logits, axis=0).astype(np.uint8)


def _model_device(model: object, default: torch.device) -> torch.device:
    """The device of the model's first parameter (or buffer); `default` for a model with neither."""
    for tensors in ("parameters", "buffers"):
        found = getattr(model, tensors, None)
        if found is not None:
            for tensor in found():
                return tensor.device
    return default


class TorchPredictor:
    """A torch model as a `Predictor`: raw uint8 image in, logits or label mask out.

    The model is put in eval mode (BatchNorm uses its running statistics) and runs under
    `torch.inference_mode` on the device its parameters are on. `tile=None` predicts the whole
    image in one pass; `tile=N` slides N x N windows with `overlap` (or `stride`).
    """

    def __init__(self, model: nn.Module, preprocess: Preprocess | None = None, *, tile: int | None = None,
                 overlap: float = DEFAULT_OVERLAP, stride: int | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        import torch

        if tile is not None:
            stride_for(tile, overlap, stride)  # checks the numbers now, not at the first image
        if batch_size < 1:
            raise InputError(f"batch size {batch_size}: must be at least 1")
        self.model = model.eval()
        self.preprocess = preprocess or Preprocess()
        self.tile, self.overlap, self.stride, self.batch_size = tile, overlap, stride, batch_size
        self.device = _model_device(model, torch.device("cpu"))

    def logits(self, image: np.ndarray) -> np.ndarray:
        import torch

        tensor = torch.from_numpy(self.preprocess(image))[None].to(self.device)
        with torch.inference_mode():
            if self.tile is None:
                out = self.model(tensor)
                _check_logits(out.shape, (1, *tensor.shape[2:]))
            else:
                out = slide_logits(self.model, tensor, tile=self.tile, overlap=self.overlap, stride=self.stride,
                                   batch_size=self.batch_size)
        return np.ascontiguousarray(out[0].float().cpu().numpy())

    def predict(self, image: np.ndarray) -> np.ndarray:
        return labels_from_logits(self.logits(image))

