"""Load a local weights file into a zoo model: a whole model, or an encoder checkpoint.

```python
load_weights(model, Path("run/best.pth"))        # a state dict of this very model (our own runs)
load_weights(model, Path("resnet18.pth"))        # timm/torchvision ImageNet weights -> model's encoder
load_weights(model, Path("mit_b0.safetensors"))  # .safetensors works too
```

Nothing is ever downloaded. A file is read with `torch.load(weights_only=True)` (or safetensors);
its state dict may sit under "state_dict" or "model", and DDP's "module." / torch.compile's
"_orig_mod." prefixes are dropped. If the keys are exactly the model's, the whole model is loaded.
Otherwise the file must cover the model's encoder: the file's keys are matched to the encoder's
after stripping one common prefix from the file ("backbone.", "encoder.", ...) and adding one the
encoder uses ("model." for timm-wrapped encoders); a classifier head in the file ("fc.", "head.")
has nothing to match and is skipped. A Hugging Face SegFormer/MiT file (nvidia/mit-b0's
model.safetensors, names like "segformer.encoder.block.0.0.attention.self.query.weight") is
renamed to the original MiT names first. Every encoder tensor must be found with its shape, except
that an RGB input convolution is adapted to another `in_channels` (repeated and rescaled, as smp
does). Anything less is an InputError saying how much matched and which checkpoint fits.

A model says where its encoder is with `encoder_path` (a dotted submodule path, set by
`InputSizeAdapter(..., encoder=...)`) and which checkpoint fits with `encoder_checkpoint`;
without them a submodule named encoder or backbone is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defectspectrum.errors import InputError

StateDict = dict[str, torch.Tensor]

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_ENCODER_NAMES = ("encoder", "backbone", "core.encoder", "core.backbone")
_ENCODER_ADDED_PREFIXES = ("", "model.")
_HEAD_PREFIXES = ("fc.", "head.", "classifier.")


def load_weights(model: nn.Module, path: Path, *, name: str | None = None) -> str:
    """Load `path` into `model` in place (whole model or its encoder); returns what was loaded,
    e.g. "encoder core.encoder (100 tensors)". `name` (the zoo name) is only used in messages."""
    label = name or type(getattr(model, "core", model)).__name__
    state = read_state_dict(path)
    own = model.state_dict()
    if _required(own) <= state.keys() <= own.keys():
        _check_shapes(state, own, path, label)
        _load_into(model, state)
        return f"whole model ({len(_required(state))} tensors)"
    return _load_encoder(model, state, path, label)


def read_state_dict(path: Path) -> StateDict:
    """The tensors of a local .pth/.pt/.bin/.safetensors file, wrappers and DDP prefixes removed."""
    if not path.is_file():
        raise InputError(f"weights file {path} not found; pass a local .pth, .pt, .bin or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for unreadable files
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if "weights_only" in reason or "Weights only" in reason:  # torch suggests an unsafe retry: never
            reason = "it holds objects other than tensors and numbers, which are never loaded"
        raise InputError(f"weights file {path} could not be read as a torch or safetensors state dict "
                         f"({reason}); is it a complete checkpoint file?") from None
    state = _unwrap(loaded)
    if state is None:
        raise InputError(f"weights file {path} holds no state dict (a mapping of names to tensors, "
                         f"possibly under one of {', '.join(_WRAPPER_KEYS)})")
    for prefix in _WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def _unwrap(loaded: Any) -> StateDict | None:
    if not isinstance(loaded, Mapping) or not loaded:
        return None
    if all(isinstance(value, torch.Tensor) for value in loaded.values()):
        return dict(loaded)
    for key in _WRAPPER_KEYS:
        inner = loaded.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return dict(inner)
    return None


def _required(state: Mapping[str, torch.Tensor]) -> set[str]:
    """Keys a file must supply: all but BatchNorm's step counters, which older files lack."""
    return {key for key in state if not key.endswith("num_batches_tracked")}


def _check_shapes(state: StateDict, own: StateDict, path: Path, label: str) -> None:
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise InputError(f"weights {path}: {key} has shape {tuple(value.shape)} in the file but "
                             f"{tuple(own[key].shape)} in model {label}; was it trained with other classes "
                             f"or input channels?")


def _load_into(module: nn.Module, state: StateDict) -> None:
    """Copy `state` into `module`; BatchNorm counters absent from `state` keep their values."""
    full = dict(module.state_dict())
    full.update(state)
    # nn.Module's own loader: some encoders override load_state_dict with other signatures.
    nn.Module.load_state_dict(module, full, strict=True)


def _encoder(model: nn.Module) -> tuple[str, nn.Module] | None:
    path = getattr(model, "encoder_path", None)
    for candidate in [path] if isinstance(path, str) else _ENCODER_NAMES:
        try:
            return candidate, model.get_submodule(candidate)
        except AttributeError:
            continue
    return None


@dataclass
class _Match:
    """The file's tensors renamed to encoder keys under one (strip, add) prefix pair."""

    mapped: StateDict = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)  # name matches whose shape does not fit
    extra: list[str] = field(default_factory=list)  # file tensors inside the encoder's modules it lacks


def _load_encoder(model: nn.Module, state: StateDict, path: Path, label: str) -> str:
    found = _encoder(model)
    if found is None:
        raise InputError(f"weights {path} are not a state dict of model {label}, and {label} has no "
                         f"encoder to load an encoder checkpoint into")
    where, encoder = found
    own = encoder.state_dict()
    state = _from_hf_segformer(state)
    required = {key for key in _required(own) if not key.startswith(_HEAD_PREFIXES)}
    match = max((_match(state, own, stripped, added) for added in _ENCODER_ADDED_PREFIXES
                 for stripped in _candidate_prefixes(state, own, added)),
                key=lambda m: (len(required & m.mapped.keys()), -len(m.mismatched) - len(m.extra)))
    missing = sorted(required - match.mapped.keys())
    hint = getattr(model, "encoder_checkpoint", "") or "a checkpoint of this model's encoder"
    if missing:
        example = match.mismatched[0] if match.mismatched else f"no tensor for {missing[0]}"
        raise InputError(f"weights {path}: {len(required) - len(missing)} of {len(required)} tensors match "
                         f"model {label}'s encoder ({example}); expected {hint}, or a whole-model state dict "
                         f"of {label}")
    if match.extra:
        raise InputError(f"weights {path}: {len(match.extra)} tensors in the file have no place in model "
                         f"{label}'s encoder (e.g. {match.extra[0]}), so it is another variant of the network; "
                         f"expected {hint}")
    _load_into(encoder, match.mapped)
    return f"encoder {where} ({len(required)} tensors)"


def _match(state: StateDict, own: StateDict, stripped: str, added: str) -> _Match:
    """Rename file key `stripped + rest` to encoder key `added + rest` and check each fits."""
    modules = {key[len(added):].split(".")[0] for key in own if key.startswith(added)}
    match = _Match()
    for key, value in state.items():
        if not key.startswith(stripped):
            continue
        rest = key[len(stripped):]
        target = added + rest
        if target not in own:
            if rest.split(".")[0] in modules and not rest.startswith(_HEAD_PREFIXES):
                match.extra.append(key)
            continue
        fitted = _fit(value, own[target])
        if fitted is None:
            match.mismatched.append(f"{key}: {tuple(value.shape)} in the file, {tuple(own[target].shape)} in the model")
        else:
            match.mapped[target] = fitted
    return match


def _candidate_prefixes(state: StateDict, own: StateDict, added: str) -> set[str]:
    """File prefixes that turn some file key into an encoder key (after `added` is removed)."""
    suffixes = {key[len(added):] for key in own if key.startswith(added)}
    prefixes = {""}
    for key in state:
        parts = key.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[i:]) in suffixes:
                prefixes.add(".".join(parts[:i]) + ".")
                break
    return prefixes


def _fit(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """`value` if its shape is the target's; an RGB input convolution adapted to the target's
    input channels (summed for one channel, else repeated and scaled by 3/C, as smp does);
    None otherwise."""
    if value.shape == target.shape:
        return value
    adaptable = (value.ndim == 4 and target.ndim == 4 and value.shape[1] == 3
                 and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:])
    if not adaptable:
        return None
    channels = target.shape[1]
    if channels == 1:
        return value.sum(dim=1, keepdim=True)
    return value[:, [i % 3 for i in range(channels)]] * (3 / channels)


_HF_SEGFORMER_PARTS = (
    (r"patch_embeddings\.(\d)\.proj\.", "patch_embed{}.proj."),
    (r"patch_embeddings\.(\d)\.layer_norm\.", "patch_embed{}.norm."),
    (r"layer_norm\.(\d)\.", "norm{}."),
    (r"block\.(\d)\.", "block{}."),
)
_HF_SEGFORMER_NAMES = {"layer_norm_1": "norm1", "layer_norm_2": "norm2", "attention.self.query": "attn.q",
                       "attention.self.sr": "attn.sr", "attention.self.layer_norm": "attn.norm",
                       "attention.output.dense": "attn.proj", "mlp.dense1": "mlp.fc1", "mlp.dense2": "mlp.fc2"}


def _from_hf_segformer(state: StateDict) -> StateDict:
    """A Hugging Face SegFormer/MiT checkpoint (e.g. nvidia/mit-b0's model.safetensors) renamed to
    the original MiT names smp uses, key and value joined into `kv`; other files pass unchanged."""
    marker = "encoder.patch_embeddings.0.proj.weight"
    encoder = next((key[: -len(marker)] + "encoder." for key in state if key.endswith(marker)), None)
    if encoder is None:
        return state
    out: StateDict = {}
    for key, value in state.items():
        if not key.startswith(encoder) or ".attention.self.value." in key:  # value joins key below
            continue
        rest = key[len(encoder):]
        for pattern, name in _HF_SEGFORMER_PARTS:
            match = re.match(pattern, rest)
            if match:
                rest = name.format(int(match.group(1)) + 1) + rest[match.end():]
                break
        for hf_name, name in _HF_SEGFORMER_NAMES.items():
            rest = rest.replace(f".{hf_name}.", f".{name}.")
        if ".attention.self.key." in rest:  # MiT's kv projection is key then value in one matrix
            partner = state.get(key.replace(".attention.self.key.", ".attention.self.value."))
            if partner is None:
                continue
            value = torch.cat([value, partner])
            rest = rest.replace(".attention.self.key.", ".attn.kv.")
        out[rest] = value
    return out
