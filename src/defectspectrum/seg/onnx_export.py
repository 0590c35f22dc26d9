"""ONNX export of a segmentation model with its preprocessing, and `OnnxPredictor` (onnxruntime, CPU).

`export_onnx(model, "model.onnx", preprocess=..., labels=...)` writes two files:

```
model.onnx         input "image" float32 (N, 3, H, W) preprocessed; output "logits" (N, C, H, W)
model.onnx.json    the sidecar: preprocessing (mean, std, scale, RGB, NCHW), input size policy,
                   class names (and the label space), opset read from the file, sha256 of model.onnx
```

The sidecar's `input` holds `dynamic_batch`, `dynamic_size` and `size`: the side the model requires
where `dynamic_size` is false, else the side it was exported and checked at. `tile` is the tile
size used in training (or null), for prediction to default to.

The legacy TorchScript exporter (`dynamo=False`; the dynamo path needs onnxscript and fails on
some of the zoo, reference.md section 7) is tried with dynamic batch, height and width first; each
export is checked with `onnx.checker` and run in onnxruntime against torch, also at a second batch
size and image size, and where that fails the next policy is tried: dynamic batch at a fixed size,
then everything fixed. The sidecar records which one holds. A fixed-size model is tiled at that
size by `OnnxPredictor`; windows of an image smaller than it are padded with zeros (the mean colour
after normalisation) and cut back, so its results match torch's only on images at least that large.

Files appear complete or not at all (written to temporary names beside them, renamed into place),
and an existing file is never replaced unless `overwrite=True`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defectspectrum.errors import InputError
from defectspectrum.io import read_json
from defectspectrum.seg.infer import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, labels_from_logits, slide_numpy, stride_for
from defectspectrum.seg.labels import LabelSpace
from defectspectrum.seg.preprocess import Preprocess
from defectspectrum.staging import rename_noreplace

if TYPE_CHECKING:
    import torch
    from torch import nn

SIDECAR_FORMAT = "defectspectrum-onnx"
SIDECAR_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
# Export policies, tried in this order: which axes of the input stay free.
POLICIES: dict[str, dict[int, str]] = {
    "dynamic": {0: "batch", 2: "height", 3: "width"},
    "dynamic-batch": {0: "batch"},
    "fixed": {},
}
_TEMP_NUMBERS = itertools.count()


def sidecar_path(path: Path) -> Path:
    """The sidecar of an ONNX file: `model.onnx` -> `model.onnx.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class OnnxExport:
    """What `export_onnx` wrote and how the export was checked."""

    path: Path
    sidecar: Path
    policy: str  # a key of POLICIES
    opset: int
    size: int  # side of the square example input; the fixed input size unless policy is "dynamic"
    max_abs_diff: float  # onnxruntime vs torch logits over the checked inputs


@dataclass(frozen=True)
class OnnxModelInfo:
    """A parsed sidecar."""

    path: Path
    preprocess: Preprocess
    class_names: tuple[str, ...]
    labels: LabelSpace | None
    dynamic_batch: bool
    dynamic_size: bool
    size: int
    tile: int | None
    opset: int
    sha256: str

    @property
    def fixed_size(self) -> int | None:
        """The input side the model requires, None where any size is taken."""
        return None if self.dynamic_size else self.size


def read_sidecar(path: Path) -> OnnxModelInfo:
    """The sidecar of the ONNX file `path`, checked (InputError naming it, with the fix), including
    that `path` is the very file it was written for (sha256)."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise InputError(f"{path}: ONNX file not found; check the path or export the model with `seg export`")
    if not side.is_file():
        raise InputError(f"{side}: sidecar not found; an ONNX model needs the {side.name} that `seg export` writes "
                         "beside it (preprocessing and class names): export the model again")
    data = read_json(side)
    where = str(side)
    try:
        if data["format"] != SIDECAR_FORMAT or data["version"] != SIDECAR_VERSION:
            raise InputError(f"{where}: not a version {SIDECAR_VERSION} {SIDECAR_FORMAT} sidecar; export the model "
                             "again with this defectspectrum")
        model_input = data["input"]
        names = tuple(str(name) for name in data["classes"])
        labels = LabelSpace.from_json(data["labels"], where) if data.get("labels") is not None else None
        tile = data.get("tile")
        info = OnnxModelInfo(
            path=path, preprocess=Preprocess.from_json(data["preprocess"], where), class_names=names, labels=labels,
            dynamic_batch=_flag(model_input["dynamic_batch"]), dynamic_size=_flag(model_input["dynamic_size"]),
            size=_positive(model_input["size"]), tile=None if tile is None else _positive(tile),
            opset=_positive(data["opset"]), sha256=str(data["sha256"]))
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{where}: malformed sidecar ({type(exc).__name__}: {exc}); export the model again") from None
    if len(names) < 2:
        raise InputError(f"{where}: 'classes' must name background and at least one defect class")
    if labels is not None and labels.names != names:
        raise InputError(f"{where}: 'classes' {list(names)} differ from the label space's {list(labels.names)}")
    if file_sha256(path) != info.sha256:
        raise InputError(f"{path}: its sha256 does not match the one in {side.name}: the model file was changed or "
                         "replaced after export; export the model again")
    return info


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _positive(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive whole number, got {value!r}")
    return value


# -- export ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send what is written to file descriptor 1 (the TorchScript exporter dumps its whole graph there
    when an export fails) to nowhere while the block runs: library code prints nothing."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedded interpreter): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def torch_export(model: nn.Module, example: torch.Tensor, target: Path, opset: int, policy: str) -> None:
    import torch

    axes = POLICIES[policy]
    dynamic_axes = {INPUT_NAME: axes, OUTPUT_NAME: axes} if axes else None
    from defectspectrum.seg.models.common import static_export

    fixed = static_export() if policy == "fixed" else contextlib.nullcontext()
    with warnings.catch_warnings(), _quiet_stdout(), torch.no_grad(), fixed:
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(target), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)
    import onnx

    graph = onnx.load(str(target))
    if any(node.op_type == "GridSample" for node in graph.graph.node):  # Mask2Former's deformable attention
        from defectspectrum.seg.models.mask2former import onnx_grid_sample_float

        onnx.save(onnx_grid_sample_float(graph), str(target))


def ort_session(path: Path, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings on stderr
    # no busy-waiting threads between runs: they would take the CPU from torch and other sessions
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def probe_inputs(size: int, policy: str, generator: torch.Generator, channels: int = 3) -> list[torch.Tensor]:
    """The inputs an export under `policy` is checked on: the example, then a second batch size and
    (for dynamic sizes) a second, non-square image size; `channels` input channels."""
    import torch

    shapes = [(1, size, size)]
    if policy == "dynamic":
        shapes.append((2, size + 32, size + 64))
    elif policy == "dynamic-batch":
        shapes.append((2, size, size))
    return [torch.randn(n, channels, h, w, generator=generator) for n, h, w in shapes]


def check_export(model: nn.Module, target: Path, probes: Sequence[torch.Tensor], num_classes: int) -> float:
    """Run the exported file in onnxruntime on every probe and compare with torch; the largest
    absolute logit difference, or ValueError where the export is wrong."""
    import onnx
    import torch

    onnx.checker.check_model(str(target))
    session = ort_session(target)
    device = next(iter(model.parameters()), torch.empty(0)).device
    worst = 0.0
    for probe in probes:
        with torch.no_grad():
            expected = model(probe.to(device)).float().cpu().numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: probe.numpy()})[0]
        if got.shape != expected.shape:
            raise ValueError(f"onnxruntime gave shape {got.shape} for input {tuple(probe.shape)}, "
                             f"torch {expected.shape}")
        if expected.shape[1] != num_classes:
            raise InputError(f"the model predicts {expected.shape[1]} classes but {num_classes} class names were "
                             "given; pass the label space the model was trained with")
        diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
        if not diff <= 1e-3 * max(1.0, float(np.max(np.abs(expected)))):
            raise ValueError(f"onnxruntime and torch logits differ by {diff:.3g} at input {tuple(probe.shape)}")
        worst = max(worst, diff)
    return worst


def written_opset(path: Path) -> int:
    """The default-domain opset an ONNX file declares (which may differ from the one asked for)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    versions = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    if not versions:
        raise InputError(f"{path}: declares no ONNX opset; export again")
    return int(versions[0])


def temp_beside(path: Path) -> Path:
    """A temporary name beside `path` of the form `data clean` recognises (`.NAME.PID.N.tmp`)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{next(_TEMP_NUMBERS)}.tmp")


def publish_file(temp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp, target)
        return
    try:
        rename_noreplace(temp, target)
    except FileExistsError:
        raise InputError(f"{target}: appeared while the model was exported; nothing was replaced: choose another "
                         "file or pass --overwrite") from None


def check_target(path: Path, overwrite: bool) -> None:
    for target in (path, sidecar_path(path)):
        if target.is_dir():
            raise InputError(f"{target}: is a folder; give the path of the .onnx file to write")
        if os.path.lexists(target) and not overwrite:
            raise InputError(f"{target}: exists; pass --overwrite to replace it or choose another file")


@contextlib.contextmanager
def export_staging(model: nn.Module, path: Path, overwrite: bool) -> Iterator[tuple[Path, Path]]:
    """Check `path` and its sidecar may be written, put `model` in eval mode and yield the temporary model
    and sidecar files beside them; afterwards the model's mode is restored and the temporaries removed."""
    check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    temps = temp_beside(path), temp_beside(sidecar_path(path))
    try:
        yield temps
    finally:
        model.train(was_training)
        for temp in temps:
            temp.unlink(missing_ok=True)


def publish_export(temps: tuple[Path, Path], sidecar: dict[str, Any], path: Path, overwrite: bool) -> None:
    """Write `sidecar` to its temporary file, then publish the model and the sidecar at `path` (the model is
    removed again where its sidecar cannot be published: without it, it is of no use)."""
    temp_model, temp_sidecar = temps
    temp_sidecar.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    publish_file(temp_model, path, overwrite)
    try:
        publish_file(temp_sidecar, sidecar_path(path), overwrite)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def export_onnx(model: nn.Module, path: Path, *, preprocess: Preprocess, labels: LabelSpace | Sequence[str],
                size: int = 256, tile: int | None = None, opset: int = DEFAULT_OPSET,
                overwrite: bool = False) -> OnnxExport:
    """Export `model` (put in eval mode for the export, its mode restored after) to `path` and its
    sidecar; see the module docstring. `size`: side of the example input, and the input size where
    the model exports only at a fixed size; `tile`: the tile size used in training, recorded for
    prediction. InputError naming what failed where no policy gives a checked export."""
    import torch

    path = Path(path)
    names = tuple(labels.names) if isinstance(labels, LabelSpace) else tuple(str(name) for name in labels)
    if len(names) < 2:
        raise InputError("an exported model needs class names for background and at least one defect class")
    if size < 1:
        raise InputError(f"export size {size}: must be at least 1 pixel")
    failures: list[str] = []
    with export_staging(model, path, overwrite) as temps:
        temp_model = temps[0]
        for policy in POLICIES:
            probes = probe_inputs(size, policy, torch.Generator().manual_seed(0))
            device = next(iter(model.parameters()), torch.empty(0)).device
            try:
                torch_export(model, probes[0].to(device), temp_model, opset, policy)
                diff = check_export(model, temp_model, probes, len(names))
            except InputError:
                raise
            except Exception as exc:  # the exporter and onnxruntime raise many types; each is one reason
                failures.append(f"{policy}: {_first_line(exc)[:90]}")
                continue
            break
        else:
            raise InputError(f"{path}: the model could not be exported to ONNX ({'; '.join(failures)}); try another "
                             "--size (e.g. a multiple of 192 for PSPNet's pooling) or another model")
        written = written_opset(temp_model)
        sidecar = {
            "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "model_file": path.name,
            "sha256": file_sha256(temp_model), "opset": written,
            "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "channels": "RGB",
                      "dynamic_batch": policy != "fixed", "dynamic_size": policy == "dynamic", "size": size,
                      "policy": policy},
            "output": {"name": OUTPUT_NAME, "layout": "NCHW", "classes": len(names)},
            "preprocess": preprocess.to_json(),
            "tile": tile,
            "classes": list(names),
            "labels": labels.to_json() if isinstance(labels, LabelSpace) else None,
            "export": {"exporter": "torch.onnx (TorchScript, dynamo=False)", "torch": torch.__version__,
                       "opset_requested": opset, "max_abs_diff": diff, "tried": failures},
        }
        publish_export(temps, sidecar, path, overwrite)
    return OnnxExport(path, sidecar_path(path), policy, written, size, diff)


# -- prediction --------------------------------------------------------------------------------------


class OnnxPredictor:
    """An exported model as a `Predictor` (onnxruntime, CPUExecutionProvider), from the .onnx file and
    its sidecar: same preprocessing, tiling and argmax as `TorchPredictor`. A fixed-size model is
    always tiled at its size (`tile` must then be None or that size)."""

    def __init__(self, path: Path, *, tile: int | None = None, overlap: float = DEFAULT_OVERLAP,
                 stride: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE, threads: int | None = None) -> None:
        self.info = read_sidecar(Path(path))
        fixed = self.info.fixed_size
        if fixed is not None:
            if tile not in (None, fixed):
                raise InputError(f"{path}: the model takes {fixed}x{fixed} inputs only (see "
                                 f"{sidecar_path(path).name}); tile with {fixed}, not {tile}")
            tile = fixed
        if tile is not None:
            stride_for(tile, overlap, stride)
        if batch_size < 1:
            raise InputError(f"batch size {batch_size}: must be at least 1")
        self.tile, self.overlap, self.stride = tile, overlap, stride
        self.batch_size = batch_size if self.info.dynamic_batch else 1
        try:
            self.session = ort_session(Path(path), threads)
        except Exception as exc:  # onnxruntime's own error types
            raise InputError(f"{path}: onnxruntime cannot load it ({_first_line(exc)}); export the model again") \
                from None
        classes = self.session.get_outputs()[0].shape[1]
        if isinstance(classes, int) and classes != len(self.info.class_names):
            raise InputError(f"{sidecar_path(Path(path))}: names {len(self.info.class_names)} classes but the model "
                             f"outputs {classes}; export the model again")
        self._run: Callable[[np.ndarray], np.ndarray] = \
            lambda batch: self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    @property
    def preprocess(self) -> Preprocess:
        return self.info.preprocess

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    def logits(self, image: np.ndarray) -> np.ndarray:
        fixed = self.info.fixed_size
        return slide_numpy(self._run, self.preprocess(image), tile=self.tile, overlap=self.overlap,
                           stride=self.stride, batch_size=self.batch_size,
                           pad_to=None if fixed is None else (fixed, fixed))

    def predict(self, image: np.ndarray) -> np.ndarray:
        return labels_from_logits(self.logits(image))
