"""What every CLI sub-app shares: the consoles, the one-line error wrapper and option parsers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from defectspectrum.errors import DefectSpectrumError

F = TypeVar("F", bound=Callable[..., Any])

out = Console()
err = Console(stderr=True)


def friendly(command: F) -> F:
    """Turn the toolkit's errors (and a missing file) into one red line and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (DefectSpectrumError, FileNotFoundError, FileExistsError, NotADirectoryError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def parse_csv(value: str | None) -> list[str] | None:
    """`a, b,c` as ["a", "b", "c"]; None for no value."""
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def parse_size(value: str) -> tuple[int, int]:
    """`N` or `HxW` (also `H,W`) as (height, width) of at least 16 px, else typer.BadParameter."""
    try:
        parts = [int(p) for p in value.lower().replace("x", ",").split(",")]
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give a size as N or HxW, e.g. 256 or 192x256") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 16:
        raise typer.BadParameter(f"{value!r}: give a size as N or HxW of at least 16 px, e.g. 256 or 192x256")
    return parts[0], parts[1]
