"""A click and its two encodings: disk maps for a model's input and the text `x,y,+` a user types.

```python
click = parse_click("120,45,+")             # x (column) 120, y (row) 45, positive
click.y, click.x, click.positive            # (45, 120, True)
positive, negative = click_maps((256, 256), [click], radius=5)   # float32 disk maps
```

A click's disk holds the pixels within `radius` of it (Euclidean, `dy² + dx² <= radius²`; radius 0
is the pixel alone), cut at the image border. RITM, FocalClick and SimpleClick feed these two maps
(radius 5) and the previous mask to the model as extra channels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from defectspectrum.errors import InputError

CLICK_RADIUS = 5  # the field's disk radius (RITM, FocalClick)
CLICK_EXAMPLE = "e.g. 120,45,+ (x column, y row, from 0; + positive, - negative)"
_SIGNS = {"+": True, "pos": True, "positive": True, "-": False, "neg": False, "negative": False}
_NUMBER = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Click:
    """One click at row `y`, column `x` (pixels from the top-left, 0-based); positive marks the object."""

    y: int
    x: int
    positive: bool

    def text(self) -> str:
        """The click as a user types it: `x,y,+` or `x,y,-`."""
        return f"{self.x},{self.y},{'+' if self.positive else '-'}"


def disk(shape: tuple[int, int], y: int, x: int, radius: int) -> np.ndarray:
    """Bool (H, W): the pixels within `radius` of (y, x), cut at the image border."""
    height, width = shape
    rows = np.arange(height)[:, None] - y
    cols = np.arange(width)[None, :] - x
    return np.asarray(rows * rows + cols * cols <= radius * radius)


def click_maps(shape: tuple[int, int], clicks: Iterable[Click], radius: int = CLICK_RADIUS) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
    """Two float32 (H, W) maps, positive and negative: 1.0 inside the disk of each click of that kind, else 0."""
    if radius < 0:
        raise InputError(f"click radius must be at least 0, got {radius}")
    positive = np.zeros(shape, np.float32)
    negative = np.zeros(shape, np.float32)
    for click in clicks:
        (positive if click.positive else negative)[disk(shape, click.y, click.x, radius)] = 1.0
    return positive, negative


def parse_click(text: str, shape: tuple[int, int] | None = None) -> Click:
    """`x,y,+` or `x,y,-` (x the column, y the row; `pos`/`neg` also read) as a Click; with the image's
    `shape` (H, W) a click outside it is an error too. Every error is one line with an example."""
    parts = [part.strip() for part in str(text).split(",")]
    if len(parts) != 3 or not all(_NUMBER.fullmatch(part) for part in parts[:2]) \
            or parts[2].lower() not in _SIGNS:
        raise InputError(f"click {text!r}: give x,y,+ or x,y,- with whole pixel numbers, {CLICK_EXAMPLE}")
    x, y = int(parts[0]), int(parts[1])
    if shape is not None:
        height, width = shape
        if x >= width or y >= height:
            raise InputError(f"click {text!r}: outside the {width}x{height} image (x must be below {width}, "
                             f"y below {height}), {CLICK_EXAMPLE}")
    return Click(y, x, _SIGNS[parts[2].lower()])


def parse_clicks(texts: Sequence[str], shape: tuple[int, int] | None = None) -> list[Click]:
    """Every text of `texts` through `parse_click`, in order."""
    return [parse_click(text, shape) for text in texts]
