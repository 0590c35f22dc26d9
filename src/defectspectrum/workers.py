"""Worker processes for per-sample work (`-j N`): results in input order, workers that end with their parent.

```python
for result in ordered_map(check_one, samples, workers=4, context=view, setup=set_limits):
    ...                                    # check_one(view, sample) ran in a worker; same order as samples
```

`function(context, item)` runs on every item; `context` is sent once to each worker (pickled), where
`setup(context)` runs first. Workers take this process's pixel limit (`io.max_pixels`). With
`workers <= 1` everything runs here, in this process. Workers are
killed when this process ends, even by SIGKILL (`exit_with_parent`), so none is left running.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from defectspectrum.io import max_pixels, set_max_pixels
from defectspectrum.staging import process_alive

T = TypeVar("T")
R = TypeVar("R")
C = TypeVar("C")

_CONTEXT: list[Any] = []  # the context, in each worker process
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_parent(parent_pid: int) -> None:
    """Make this worker process end as soon as its parent ends (also when the parent is SIGKILLed and
    cannot stop it): the kernel's parent-death signal on Linux, else a thread watching the parent."""
    parent = os.getppid()
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), name="exit-with-parent", daemon=True).start()
    if not process_alive(parent_pid) or (parent != parent_pid and not process_alive(parent)):
        os._exit(1)  # the parent ended before the signal was armed


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _start_worker(context: Any, setup: Callable[[Any], None] | None, parent_pid: int, pixels: int) -> None:
    exit_with_parent(parent_pid)
    set_max_pixels(pixels)
    _CONTEXT[:] = [context]
    if setup is not None:
        setup(context)


def _call(function: Callable[[Any, Any], Any], item: Any) -> Any:
    return function(_CONTEXT[0], item)


def ordered_map(function: Callable[[C, T], R], items: Sequence[T], workers: int, context: C,
                setup: Callable[[C], None] | None = None) -> Iterator[R]:
    """`function(context, item)` for each item, in order, in `workers` processes (here where <= 1).
    `function` and `setup` must be module-level functions (they are pickled by name)."""
    if workers <= 1 or len(items) < 2:
        for item in items:
            yield function(context, item)
        return
    chunksize = max(1, min(64, len(items) // (workers * 4)))
    with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker,
                             initargs=(context, setup, os.getpid(), max_pixels())) as pool:
        yield from pool.map(_call, [function] * len(items), items, chunksize=chunksize)
