"""`ClickSession`: one image being segmented by clicks; the API the annotation app drives.

```python
session = ClickSession(load_predictor(Path("runs/click")), image)        # or initial_mask=mask to fix a mask
mask = session.add_click(120, 80, positive=True)    # bool (H, W); x is the column, y the row
mask = session.add_click(60, 40, positive=False)
mask = session.undo()                               # exactly the mask before the last click
session.reset()                                     # no clicks; back to the initial mask
```

The image's tensors (normalised at full and coarse resolution) are computed once, when the session
starts. The first click on an empty mask runs the coarse pass; every later click (and the first
click on a given mask) only looks at the target and focus boxes (see `predictor`), so a click on a
large image costs about as much as one on a small one. Each click's mask is kept, so `undo` is free
and returns the earlier mask unchanged.
"""

from __future__ import annotations

import numpy as np

from defectspectrum.click.clicks import Click
from defectspectrum.click.predictor import ClickPredictor
from defectspectrum.errors import InputError


class ClickSession:
    """Clicks on one (H, W, 3) uint8 RGB `image`, from an empty mask or `initial_mask` (bool H x W)."""

    def __init__(self, predictor: ClickPredictor, image: np.ndarray, initial_mask: np.ndarray | None = None) -> None:
        self.predictor = predictor
        self.features = predictor.features(np.asarray(image))
        shape = self.features.shape
        if initial_mask is None:
            initial = np.zeros(shape, bool)
        else:
            initial = np.asarray(initial_mask).astype(bool)
            if initial.shape != shape:
                raise InputError(f"initial mask is {initial.shape[1]}x{initial.shape[0]} but the image is "
                                 f"{shape[1]}x{shape[0]}; give a mask of the image's size")
        self._initial = initial
        self._initial.setflags(write=False)
        self._clicks: list[Click] = []
        self._masks: list[np.ndarray] = []  # the mask after each click

    @property
    def shape(self) -> tuple[int, int]:
        """The image's (H, W)."""
        return self.features.shape

    @property
    def mask(self) -> np.ndarray:
        """The current mask (bool H x W, a copy)."""
        return (self._masks[-1] if self._masks else self._initial).copy()

    @property
    def clicks(self) -> tuple[Click, ...]:
        """The clicks so far, oldest first."""
        return tuple(self._clicks)

    def add_click(self, x: int, y: int, positive: bool = True) -> np.ndarray:
        """Click at column `x`, row `y` (positive: part of the defect); returns the new mask."""
        height, width = self.shape
        if not (0 <= int(x) < width and 0 <= int(y) < height):
            raise InputError(f"click ({x}, {y}) is outside the {width}x{height} image")
        click = Click(int(y), int(x), bool(positive))
        mask = self.predictor.step(self.features, [*self._clicks, click], self.mask)
        mask.setflags(write=False)
        self._clicks.append(click)
        self._masks.append(mask)
        return mask.copy()

    def undo(self) -> np.ndarray:
        """Drop the last click; returns the mask as it was before it (the initial mask after the first)."""
        if self._clicks:
            self._clicks.pop()
            self._masks.pop()
        return self.mask

    def reset(self) -> np.ndarray:
        """Drop every click; returns the initial mask."""
        self._clicks.clear()
        self._masks.clear()
        return self.mask
