"""Where a ClickNet comes from: a `click train` run, a compact weights file, the shipped default or ONNX.

```python
model, config = load_click_model("default")                 # shipped in the package: nothing is downloaded
model, config = load_click_model(Path("runs/click"))        # a run folder (its checkpoints/last.pt)
save_weights(model, config, Path("click.safetensors"))      # fp16 safetensors, the config in its header
```

A weights file (`.safetensors`) holds the model's floating-point tensors in float16 (half the size of a
checkpoint; predictions are made in float32 after loading) and, in its header, the model config and
what the run was trained on. It never holds code: safetensors stores tensors and text only.
The shipped default (`DEFAULT_WEIGHTS`, see `weights/MODEL_CARD.md`) is such a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defectspectrum.click.model import ClickModelConfig, build_click_model
from defectspectrum.errors import InputError

if TYPE_CHECKING:
    from torch import nn

DEFAULT_NAME = "default"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default.safetensors"
WEIGHTS_FORMAT = "defectspectrum-click-weights"
_RUN_FIX = "give a run folder of `defectspectrum click train`, its checkpoints/last.pt, a .safetensors file of " \
           "`click export --weights` or --model default"


def model_source(name: str | Path) -> Path:
    """The file behind `--model`: the shipped weights for `default`, a run folder's last checkpoint, or the file."""
    if str(name) == DEFAULT_NAME:
        if not DEFAULT_WEIGHTS.is_file():
            raise InputError(f"{DEFAULT_WEIGHTS}: the shipped default model is missing from this installation; "
                             "reinstall defectspectrum or give a run folder of `click train`")
        return DEFAULT_WEIGHTS
    path = Path(name)
    if path.is_dir():
        return path / "checkpoints" / "last.pt"
    return path


def load_click_model(name: str | Path) -> tuple[nn.Module, ClickModelConfig]:
    """ClickNet (eval mode, float32) and its config from `default`, a run folder, a checkpoint or a weights file."""
    path = model_source(name)
    if path.suffix.lower() == ".onnx":
        raise InputError(f"{path}: an ONNX file runs in onnxruntime, not torch; load it with "
                         "`click.onnx_export.OnnxClickNet` (the CLI does so for .onnx)")
    if path.suffix.lower() == ".safetensors":
        state, config = read_weights(path)
    else:
        from defectspectrum.seg.checkpoint import load_checkpoint

        saved = load_checkpoint(path, ["model", "model_config"], _RUN_FIX)
        state, config = saved["model"], ClickModelConfig.from_json(saved["model_config"], str(path))
    model = build_click_model(config)
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: weights do not fit its model ({str(exc).splitlines()[0][:100]}); "
                         f"{_RUN_FIX}") from None
    return model.float().eval(), config


def read_weights(path: Path) -> tuple[dict[str, Any], ClickModelConfig]:
    """The state dict (float32) and config of a weights file; InputError naming it for anything else."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise InputError(f"{path}: missing; {_RUN_FIX}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({str(exc)[:100]}); {_RUN_FIX}") from None
    if meta.get("format") != WEIGHTS_FORMAT:
        raise InputError(f"{path}: not a Defect-Click weights file (its header lacks format={WEIGHTS_FORMAT}); "
                         f"{_RUN_FIX}")
    try:
        config_json = json.loads(meta.get("model_config", ""))
    except json.JSONDecodeError:
        raise InputError(f"{path}: its model config is not JSON; export the weights again") from None
    config = ClickModelConfig.from_json(config_json, str(path))
    return {key: value.float() if value.is_floating_point() else value for key, value in state.items()}, config


def weights_info(path: Path) -> dict[str, Any]:
    """The `info` JSON saved in a weights file's header (what it was trained on), {} where there is none."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        text = (handle.metadata() or {}).get("info", "{}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def save_weights(model: nn.Module, config: ClickModelConfig, path: Path, info: dict[str, Any] | None = None,
                 overwrite: bool = False) -> Path:
    """Write `model` as a float16 weights file with `config` and `info` in its header; atomic, never replacing
    an existing file unless `overwrite`."""
    import torch
    from safetensors.torch import save_file

    from defectspectrum.seg.onnx_export import publish_file, temp_beside

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise InputError(f"--weights {path}: give a file name ending in .safetensors")
    if path.is_dir() or (os.path.lexists(path) and not overwrite):
        raise InputError(f"{path}: exists; pass --overwrite to replace it or choose another file")
    state = {key: (value.detach().to(torch.float16) if value.is_floating_point() else value.detach()).contiguous()
             for key, value in model.state_dict().items()}
    meta = {"format": WEIGHTS_FORMAT, "model_config": json.dumps(config.to_json()),
            "info": json.dumps(info or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_beside(path)
    try:
        save_file(state, str(temp), metadata=meta)
        os.chmod(temp, 0o644)  # safetensors creates its files readable by their owner only
        publish_file(temp, path, overwrite)
    finally:
        temp.unlink(missing_ok=True)
    return path
