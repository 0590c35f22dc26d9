"""Checkpoint files of a run: written atomically, read with `weights_only=True` (no code in a
file is ever run), and any damaged or foreign file is one clear error naming it."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from defectspectrum.errors import InputError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """`torch.save` to a hidden file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    torch.save(state, partial)
    partial.replace(path)


def load_checkpoint(path: Path, keys: Sequence[str], fix: str) -> dict[str, Any]:
    """The dict saved at `path`, holding `keys`; InputError naming the file and `fix` for a missing,
    damaged or foreign file (also a pickle that asks to run code: `weights_only` refuses it)."""
    if not path.is_file():
        raise InputError(f"{path}: missing; {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, zipfile.BadZipFile, OSError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        if "weights_only" in reason or "Weights only" in reason:
            reason = "it holds objects other than tensors and numbers, which are never loaded"
        raise InputError(f"{path}: not a readable checkpoint ({reason}); {fix}") from None
    if not isinstance(state, dict) or any(key not in state for key in keys):
        raise InputError(f"{path}: not a checkpoint of this toolkit (needs {', '.join(keys)}); {fix}")
    return state


def restore_states(path: Path, state: Mapping[str, Any], targets: Mapping[str, Any], fix: str) -> None:
    """`targets[key].load_state_dict(state[key])` for each key (model, optimizer, schedule, ...); one
    InputError naming `path` and `fix` where a saved state does not fit its target."""
    try:
        for key, target in targets.items():
            target.load_state_dict(state[key])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: does not fit this run ({str(exc).splitlines()[0][:120]}); {fix}") from None
