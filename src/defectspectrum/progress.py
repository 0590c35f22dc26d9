"""The one progress helper: library code reports long work through `track` and nothing else."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_enabled() -> bool:
    """Bars are shown on a terminal unless DEFECTSPECTRUM_NO_PROGRESS is set."""
    return sys.stderr.isatty() and not os.environ.get("DEFECTSPECTRUM_NO_PROGRESS")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield `items`, drawing a progress bar on stderr when it is a terminal."""
    if not progress_enabled():
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


@contextmanager
def progress(total: int, description: str, completed: int = 0) -> Iterator[Callable[..., None]]:
    """A bar for work that is not one loop over items (training steps): yields
    `update(advance=1, status="")`, where `status` is shown beside the bar (e.g. loss and mIoU)."""
    if not progress_enabled():
        yield lambda advance=1, status="": None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total, completed=completed, status="")

        def update(advance: int = 1, status: str = "") -> None:
            bar.update(task, advance=advance, status=status)

        yield update
