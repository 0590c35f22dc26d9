"""A training run on disk: `run.json` (every setting, the label space, preprocessing, the data
split) and its checkpoints, so a run can be evaluated, exported or repeated without guessing.

```
RUN_DIR/
  run.json              RunConfig + labels + preprocess + data (split rule, ids) + results
  history.jsonl         one line per logged step: loss, lr, and val scores where evaluated
  best.pt               model weights with the best val mIoU (or the last, without a val split)
  checkpoints/last.pt   model, optimiser, LR schedule, RNG states and step: exact resume
```
Numpy/stdlib only: reading a run's settings needs no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from defectspectrum.errors import InputError
from defectspectrum.io import read_json
from defectspectrum.seg.labels import LABEL_MODES, LabelSpace
from defectspectrum.seg.preprocess import Preprocess

RUN_FORMAT = "defectspectrum-seg-run"
MAX_CROP = 4096
RUN_VERSION = 1
RUN_JSON = "run.json"
HISTORY = "history.jsonl"
BEST = "best.pt"
LAST = "checkpoints/last.pt"
RUN_FILES = (RUN_JSON, HISTORY, BEST, LAST)
OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("no", "fp16", "bf16")
SYNTHETIC = ("include", "exclude", "only")


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a training run (`seg train` options map one to one)."""

    data: str  # the DS folder, absolute
    model: str
    objects: tuple[str, ...] | None = None  # None: every object of the folder
    labels: str = "object"  # "object": the objects' shared class map; "global": (object, class) pairs
    train_split: str = "train"
    val_split: str | None = "val"
    synthetic: str = "include"  # synthetic samples of the data folder in training: include|exclude|only
    extra_synthetic: str | None = None  # another DS folder of synthetic pairs (aug-study)
    synthetic_ratio: float = 0.0  # pairs drawn from extra_synthetic, as a fraction of the real training pairs
    include_good: bool = True
    weights: str | None = None  # a local checkpoint to start from
    crop_size: int = 256
    scale: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    vflip: bool = False
    rotate90: bool = False
    defect_crop: float = 0.5
    batch_size: int = 8
    steps: int = 2000
    val_every: int = 200
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    poly_power: float = 0.9
    dice_weight: float = 0.0
    class_weights: str | tuple[float, ...] | None = None  # None, "auto" (from train masks) or one per class
    mixed_precision: str = "no"
    num_workers: int = 2
    seed: int = 0
    tile_overlap: float = 0.25

    def __post_init__(self) -> None:
        for name in ("objects", "scale", "class_weights"):  # JSON gives lists
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        checks = [
            (self.labels in LABEL_MODES, f"--labels {self.labels!r}: choose one of {', '.join(LABEL_MODES)}"),
            (self.synthetic in SYNTHETIC, f"--synthetic {self.synthetic!r}: choose one of {', '.join(SYNTHETIC)}"),
            (self.optimizer in OPTIMIZERS, f"--optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}"),
            (self.mixed_precision in PRECISIONS,
             f"--mixed-precision {self.mixed_precision!r}: choose one of {', '.join(PRECISIONS)}"),
            (16 <= self.crop_size <= MAX_CROP, f"--crop-size {self.crop_size}: use 16 to {MAX_CROP} pixels"),
            (0 <= self.seed < 2**32, f"--seed {self.seed}: use a whole number from 0 to 2^32 - 1"),
            (self.batch_size >= 2, f"--batch-size {self.batch_size}: BatchNorm layers need at least 2 images "
                                   "per step; use 2 or more"),
            (self.steps >= 1, f"--steps {self.steps}: use at least 1"),
            (self.val_every >= 1, f"--val-every {self.val_every}: use at least 1"),
            (math.isfinite(self.lr) and self.lr > 0, f"--lr {self.lr}: must be a positive finite number"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"--weight-decay {self.weight_decay}: must be >= 0"),
            (self.warmup_steps >= 0, f"--warmup-steps {self.warmup_steps}: must be >= 0"),
            (math.isfinite(self.dice_weight) and self.dice_weight >= 0,
             f"--dice-weight {self.dice_weight}: must be >= 0"),
            (self.num_workers >= 0, f"--workers {self.num_workers}: must be >= 0"),
            (0 <= self.defect_crop <= 1, f"--defect-crop {self.defect_crop}: a probability in [0, 1]"),
            (0 <= self.tile_overlap < 1, f"--tile-overlap {self.tile_overlap}: a fraction in [0, 1)"),
            (math.isfinite(self.synthetic_ratio) and self.synthetic_ratio >= 0,
             f"synthetic ratio {self.synthetic_ratio}: must be >= 0"),
            (math.isfinite(self.poly_power) and self.poly_power >= 0, f"poly power {self.poly_power}: must be >= 0"),
            (len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1],
             f"--scale {self.scale}: two factors, 0 < low <= high"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        weights = self.class_weights
        if weights is not None and weights != "auto" and not (
                isinstance(weights, tuple) and all(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0
                                                   for w in weights) and sum(weights) > 0):
            raise InputError(f"--class-weights {weights!r}: 'auto' or one non-negative number per class, "
                             "not all zero")

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> RunConfig:
        """Parse a run.json `config`: unknown settings, missing ones and wrong types are named (InputError)."""
        if not isinstance(data, Mapping):
            raise InputError(f"{where}: 'config' must be an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{where}: unknown settings {', '.join(unknown)} (written by a newer version?)")
        missing = sorted(name for name in ("data", "model") if name not in data)
        if missing:
            raise InputError(f"{where}: 'config' lacks {', '.join(missing)}")
        for name, value in data.items():
            if not _json_type_ok(_FIELD_TYPES[name], value):
                raise InputError(f"{where}: config.{name} = {str(value)[:60]!r} has the wrong type "
                                 f"(expected {_FIELD_TYPES[name]})")
        try:
            return cls(**data)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None


_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(RunConfig)}


def _json_type_ok(declared: str, value: Any) -> bool:
    """Whether a JSON value fits a RunConfig field's declared type (as written in the class)."""
    alternatives = [part.strip() for part in declared.split("|")]
    if value is None or isinstance(value, bool):
        return ("None" if value is None else "bool") in alternatives
    if isinstance(value, str):
        return "str" in alternatives
    if isinstance(value, int):
        return "int" in alternatives or "float" in alternatives
    if isinstance(value, float):
        return "float" in alternatives
    if isinstance(value, list):
        if any(a.startswith("tuple[str") for a in alternatives):
            return all(isinstance(v, str) for v in value)
        if any(a.startswith("tuple[float") for a in alternatives):
            return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return False


@dataclass
class RunInfo:
    """What run.json holds besides the settings."""

    config: RunConfig
    labels: LabelSpace
    preprocess: Preprocess
    data: dict[str, Any] = field(default_factory=dict)  # folder name, split rule, sample ids per split
    results: dict[str, Any] = field(default_factory=dict)  # best step and scores, last step
    environment: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": RUN_FORMAT, "version": RUN_VERSION, "config": self.config.to_json(),
                "labels": self.labels.to_json(), "preprocess": self.preprocess.to_json(), "data": self.data,
                "results": self.results, "environment": self.environment}

    @classmethod
    def from_json(cls, data: Any, where: str) -> RunInfo:
        if not isinstance(data, Mapping) or data.get("format") != RUN_FORMAT:
            raise InputError(f"{where}: not a defectspectrum segmentation run (no \"format\": \"{RUN_FORMAT}\")")
        if data.get("version") != RUN_VERSION:
            raise InputError(f"{where}: run version {data.get('version')!r}; this version reads {RUN_VERSION}")
        return cls(config=RunConfig.from_json(data.get("config"), where),
                   labels=LabelSpace.from_json(data.get("labels"), where),
                   preprocess=Preprocess.from_json(data.get("preprocess"), where),
                   data=dict(data.get("data") or {}), results=dict(data.get("results") or {}),
                   environment=dict(data.get("environment") or {}))


def run_json_path(run: Path) -> Path:
    """`run` itself when it names a run.json, else `run/run.json`."""
    run = Path(run)
    return run if run.name.endswith(".json") and not run.is_dir() else run / RUN_JSON


def read_run(run: Path) -> RunInfo:
    """Read and check RUN_DIR/run.json (or a run.json path); one-line InputError otherwise."""
    path = run_json_path(run)
    if not path.is_file():
        raise InputError(f"{path}: no run.json here; give the folder `seg train --out` wrote")
    return RunInfo.from_json(read_json(path), str(path))


def read_history(run: Path) -> list[dict[str, Any]]:
    """The records of RUN_DIR/history.jsonl, in order (none where the file is missing)."""
    path = Path(run) / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ids_digest(ids: Sequence[str]) -> str:
    """A short digest of a sample-id list, to tell whether two runs saw the same split."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
