"""ClickNet for onnxruntime: `export_click_onnx` writes it, `OnnxClickNet` runs it inside `ClickPredictor`.

```python
export_click_onnx(model, config, Path("click.onnx"))                  # click.onnx + click.onnx.json
predictor = ClickPredictor(OnnxClickNet(Path("click.onnx")), config)   # same focus-crop rules, no torch model
```

The file takes "input" float32 (N, 6, H, W), any H and W (the `click_input` channels: normalised RGB,
positive and negative click disks, previous mask) and gives "logits" (N, 1, H, W). It is exported
with the segmentation zoo's exporter (TorchScript, dynamic batch, height and width), checked with
`onnx.checker` and against torch in onnxruntime at two sizes. The sidecar `click.onnx.json` holds the
model config (click radius), the preprocessing and the file's sha256; a file changed after export is
refused. Written atomically; an existing file is replaced only with `overwrite`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from defectspectrum.click.model import IN_CHANNELS, ClickModelConfig
from defectspectrum.errors import InputError
from defectspectrum.io import read_json
from defectspectrum.seg.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    check_export,
    export_staging,
    file_sha256,
    ort_session,
    probe_inputs,
    publish_export,
    sidecar_path,
    torch_export,
    written_opset,
)
from defectspectrum.seg.preprocess import Preprocess

CLICK_ONNX_FORMAT = "defectspectrum-click-onnx"
CLICK_ONNX_VERSION = 1


@dataclass(frozen=True)
class ClickOnnxExport:
    """What `export_click_onnx` wrote and how closely onnxruntime matched torch."""

    path: Path
    sidecar: Path
    opset: int
    max_abs_diff: float


def export_click_onnx(model: nn.Module, config: ClickModelConfig, path: Path, *, size: int = 256,
                      opset: int = 17, overwrite: bool = False) -> ClickOnnxExport:
    """Export ClickNet to `path` and its sidecar (module docstring); InputError where no checked export results."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise InputError(f"--onnx {path}: give a file name ending in .onnx")
    with export_staging(model, path, overwrite) as temps:
        probes = probe_inputs(size, "dynamic", torch.Generator().manual_seed(0), IN_CHANNELS)
        try:
            torch_export(model, probes[0], temps[0], opset, "dynamic")
            diff = check_export(model, temps[0], probes, 1)
        except InputError:
            raise
        except Exception as exc:  # the exporter and onnxruntime raise many types
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: the click model could not be exported to ONNX ({reason})") from None
        opset_written = written_opset(temps[0])
        sidecar = {"format": CLICK_ONNX_FORMAT, "version": CLICK_ONNX_VERSION, "model_file": path.name,
                   "sha256": file_sha256(temps[0]), "opset": opset_written,
                   "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "channels": IN_CHANNELS,
                             "order": ["R", "G", "B", "positive clicks", "negative clicks", "previous mask"]},
                   "output": {"name": OUTPUT_NAME, "layout": "NCHW", "channels": 1, "meaning": "logits"},
                   "model_config": config.to_json(), "preprocess": Preprocess().to_json(),
                   "export": {"torch": torch.__version__, "max_abs_diff": diff}}
        publish_export(temps, sidecar, path, overwrite)
    return ClickOnnxExport(path, sidecar_path(path), opset_written, diff)


def read_click_sidecar(path: Path) -> tuple[ClickModelConfig, dict[str, Any]]:
    """The model config and sidecar of an exported click model, checked against the file's sha256."""
    path = Path(path)
    side = sidecar_path(path)
    fix = "export it again with `defectspectrum click export`"
    if not path.is_file():
        raise InputError(f"{path}: ONNX file not found; {fix}")
    if not side.is_file():
        raise InputError(f"{side}: sidecar not found; a click model's .onnx needs the {side.name} written beside it; "
                         f"{fix}")
    data = read_json(side)
    if not isinstance(data, dict) or data.get("format") != CLICK_ONNX_FORMAT or data.get("version") != \
            CLICK_ONNX_VERSION:
        raise InputError(f"{side}: not a version {CLICK_ONNX_VERSION} Defect-Click ONNX sidecar; {fix}")
    config = ClickModelConfig.from_json(data.get("model_config"), str(side))
    if file_sha256(path) != data.get("sha256"):
        raise InputError(f"{path}: its sha256 does not match {side.name}: the file changed after export; {fix}")
    return config, data


class OnnxClickNet:
    """An exported ClickNet in onnxruntime (CPU), called like the torch model: (N, 6, H, W) -> (N, 1, H, W)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.config, self.sidecar = read_click_sidecar(Path(path))
        try:
            self.session = ort_session(Path(path), threads)
        except Exception as exc:  # onnxruntime's own error types
            raise InputError(f"{path}: onnxruntime cannot load it ({str(exc)[:100]}); export it again") from None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])
