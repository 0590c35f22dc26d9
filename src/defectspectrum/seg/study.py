"""Grids of training runs and their tables: `seg benchmark` (the paper's Table 2: models x objects or
data sets, mean +/- std over seeds) and `seg aug-study` (Table 3 / Fig. 9: mIoU against the share of
synthetic pairs added at the same training budget).

Each cell is an ordinary run folder under `OUT/runs/`, so any of them can be evaluated, exported or
repeated; a grid that was interrupted continues with `resume=True`, keeping the runs that finished.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.errors import InputError
from defectspectrum.io import csv_text, read_json, write_json_atomic, write_text_atomic
from defectspectrum.paths import safe_name
from defectspectrum.seg.run import LAST, RUN_JSON, RunConfig, read_history, read_run

SCOPES = ("object", "global")
PICKS = ("last", "best")


@dataclass(frozen=True)
class Cell:
    """One run of a grid: its row (model or ratio), column (object or data set), seed and settings."""

    row: str
    column: str
    seed: int
    config: RunConfig

    @property
    def folder(self) -> str:
        return f"{safe_name(self.row)}/{safe_name(self.column)}/seed{self.seed}"


def final_scores(run_dir: Path, pick: str = "last") -> dict[str, Any]:
    """A finished run's val scores: those of its last validation (`last`) or its best (`best`)."""
    if pick == "best":
        chosen = read_run(run_dir).results.get("best") or {}
    else:
        chosen = next((r for r in reversed(read_history(run_dir)) if "mIoU" in r), {})
    return {key: chosen.get(key) for key in ("mIoU", "aAcc", "mAcc", "step")}


def _finished(run_dir: Path, steps: int) -> bool:
    if not (run_dir / RUN_JSON).is_file():
        return False
    return int(read_run(run_dir).results.get("last_step") or 0) >= steps


def run_grid(cells: Sequence[Cell], out: Path, *, resume: bool = False, pick: str = "last",
             on_cell: Callable[[Cell, int, int], None] | None = None,
             on_event: Callable[[Any], None] | None = None) -> list[dict[str, Any]]:
    """Train every cell into `out/runs/<row>/<column>/seed<k>` and collect its val scores.
    `resume`: finished runs are kept, unfinished ones continue from their checkpoint."""
    from defectspectrum.seg.models.registry import model_info
    from defectspectrum.seg.train import prepare_data, train

    if pick not in PICKS:
        raise InputError(f"--pick {pick!r}: choose one of {', '.join(PICKS)}")
    folders = [cell.folder for cell in cells]
    repeated = sorted({name for name in folders if folders.count(name) > 1})
    if repeated:
        raise InputError(f"the grid holds the same run twice ({', '.join(repeated)}); name each model and data "
                         "set once")
    for cell in cells:  # every cell's model and data checked before the first one trains
        model_info(cell.config.model)
        prepare_data(cell.config)
    results = []
    for number, cell in enumerate(cells, start=1):
        run_dir = out / "runs" / cell.folder
        if on_cell is not None:
            on_cell(cell, number, len(cells))
        if not (resume and _finished(run_dir, cell.config.steps)):
            partial = resume and (run_dir / LAST).is_file()
            if not partial and run_dir.exists() and resume:
                import shutil

                shutil.rmtree(run_dir)  # a run that died before its first checkpoint: start it again
            train(cell.config, run_dir, resume=partial, on_event=on_event)
        info = read_run(run_dir)
        results.append({"row": cell.row, "column": cell.column, "seed": cell.seed, "run": str(run_dir),
                        "seconds": info.results.get("train_seconds"), "steps": cell.config.steps,
                        **final_scores(run_dir, pick)})
    return results


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the defined values, and their count."""
    defined = [v for v in values if v is not None and not math.isnan(v)]
    if not defined:
        return math.nan, math.nan, 0
    std = float(np.std(defined, ddof=1)) if len(defined) > 1 else 0.0
    return float(np.mean(defined)), std, len(defined)


def cell_text(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "n/a"
    return f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f}"


@dataclass
class Table:
    """Rows x columns of mean +/- std, with a `mean` column over the columns (per seed, then averaged)."""

    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], tuple[float, float, int]]
    row_means: dict[str, tuple[float, float, int]]
    row_title: str = "model"

    def header(self) -> list[str]:
        return [self.row_title, *self.columns, *(["mean"] if len(self.columns) > 1 else [])]

    def text_rows(self) -> list[list[str]]:
        rows = []
        for row in self.rows:
            line = [row, *(cell_text(*self.cells[(row, column)]) for column in self.columns)]
            if len(self.columns) > 1:
                line.append(cell_text(*self.row_means[row]))
            rows.append(line)
        return rows

    def markdown(self) -> str:
        header = self.header()
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.text_rows()]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        rows = []
        for row in self.rows:
            for column in [*self.columns, *(["mean"] if len(self.columns) > 1 else [])]:
                mean, std, n = self.cells[(row, column)] if column != "mean" else self.row_means[row]
                rows.append([row, column, "" if n == 0 else f"{mean:.4f}", "" if n == 0 else f"{std:.4f}", n])
        return csv_text([self.row_title, "column", "mIoU_mean", "mIoU_std", "seeds"], rows)

    def to_json(self) -> dict[str, Any]:
        def entry(value: tuple[float, float, int]) -> dict[str, Any]:
            mean, std, n = value
            return {"mean": None if n == 0 else mean, "std": None if n == 0 else std, "n": n}

        return {"row_title": self.row_title, "rows": self.rows, "columns": self.columns,
                "cells": {f"{r}|{c}": entry(v) for (r, c), v in self.cells.items()},
                "row_means": {r: entry(v) for r, v in self.row_means.items()}}


def build_table(results: Sequence[dict[str, Any]], row_title: str = "model") -> Table:
    """Mean +/- std over seeds per (row, column); the `mean` column averages each seed's columns first."""
    rows = list(dict.fromkeys(r["row"] for r in results))
    columns = list(dict.fromkeys(r["column"] for r in results))
    cells = {(row, column): mean_std([r["mIoU"] for r in results if r["row"] == row and r["column"] == column])
             for row in rows for column in columns}
    row_means = {}
    for row in rows:
        per_seed = []
        for seed in sorted({r["seed"] for r in results if r["row"] == row}):
            values = [r["mIoU"] for r in results if r["row"] == row and r["seed"] == seed]
            per_seed.append(None if any(v is None for v in values) else float(np.mean(values)))
        row_means[row] = mean_std(per_seed)
    return Table(rows, columns, cells, row_means, row_title)


def benchmark_cells(data: Sequence[Path], models: Sequence[str], seeds: int, base: RunConfig,
                    scope: str = "object", objects: Sequence[str] | None = None) -> list[Cell]:
    """The grid of `seg benchmark`: per model, per object (scope object) or per data set (scope global,
    one model over all objects), per seed."""
    if scope not in SCOPES:
        raise InputError(f"--scope {scope!r}: choose one of {', '.join(SCOPES)}")
    if seeds < 1:
        raise InputError(f"--seeds {seeds}: use at least 1")
    cells = []
    for path in data:
        folder = DSFolder.open(path)
        chosen = list(objects) if objects else list(folder.objects)
        for name in chosen:
            folder.classes(name)  # unknown object: one line listing the folder's objects
        many = len(data) > 1
        columns: list[tuple[str, tuple[str, ...] | None, str]] = (
            [(f"{folder.name}/{o}" if many else o, (o,), "object") for o in chosen] if scope == "object"
            else [(folder.name, tuple(chosen), "global")])
        for model in models:
            for column, names, labels in columns:
                for seed in range(seeds):
                    config = base.replace(data=str(Path(path).absolute()), model=model, objects=names, labels=labels,
                                          seed=base.seed + seed)
                    cells.append(Cell(model, column, base.seed + seed, config))
    return cells


def parse_ratios(text: str) -> list[float]:
    """`0,20,50,100` (percent of the real training pairs) -> [0.0, 20.0, ...]; InputError otherwise."""
    try:
        ratios = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--ratios {text!r}: give percentages separated by commas, e.g. 0,20,50,100") from None
    if not ratios or any(r < 0 or math.isnan(r) for r in ratios):
        raise InputError(f"--ratios {text!r}: give non-negative percentages, e.g. 0,20,50,100")
    return sorted(set(ratios))


def aug_study_cells(data: Path, synthetic: Path, ratios: Sequence[float], seeds: int, base: RunConfig) -> list[Cell]:
    """The grid of `seg aug-study`: the same run with round(p% x real) synthetic pairs added, per ratio
    and seed; the step budget is the same for every ratio."""
    if seeds < 1:
        raise InputError(f"--seeds {seeds}: use at least 1")
    cells = []
    for ratio in ratios:
        for seed in range(seeds):
            config = base.replace(data=str(Path(data).absolute()), extra_synthetic=str(Path(synthetic).absolute()),
                                  synthetic_ratio=ratio / 100.0, seed=base.seed + seed)
            cells.append(Cell(f"{ratio:g}%", "mIoU", base.seed + seed, config))
    return cells


def write_study(out: Path, kind: str, results: list[dict[str, Any]], table: Table,
                settings: dict[str, Any]) -> dict[str, Path]:
    """`OUT/<kind>.json` (every run's scores, the table, the settings), `table.md` and `table.csv`."""
    paths = {"json": out / f"{kind}.json", "markdown": out / "table.md", "csv": out / "table.csv"}
    write_json_atomic(paths["json"], {"kind": kind, "settings": settings, "results": results,
                                      "table": table.to_json()})
    write_text_atomic(paths["markdown"], table.markdown())
    write_text_atomic(paths["csv"], table.csv())
    return paths


def read_study(path: Path) -> dict[str, Any]:
    """A study JSON written by `write_study` (for the report)."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("kind") not in ("benchmark", "aug-study"):
        raise InputError(f"{path}: not a seg benchmark or aug-study result")
    return data
