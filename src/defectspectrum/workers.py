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
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sized
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain, islice
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


def _call_chunk(function: Callable[[Any, Any], Any], chunk: list[Any]) -> list[Any]:
    return [function(_CONTEXT[0], item) for item in chunk]


def ordered_map(function: Callable[[C, T], R], items: Iterable[T], workers: int, context: C,
                setup: Callable[[C], None] | None = None) -> Generator[R, None, None]:
    """`function(context, item)` for each item, in order, in `workers` processes (here where <= 1).
    `function` and `setup` must be module-level functions (they are pickled by name).

    `items` is read as the results are taken, a bounded window ahead (`2 * workers` chunks of at most
    64 items), so a stream of any length is never held whole. An error raised by `items` itself
    comes where it stands in the stream, after the results of the items before it, as it would in
    one process."""
    iterator = iter(items)
    first = list(islice(iterator, 2))
    if workers <= 1 or len(first) < 2:
        for item in chain(first, iterator):
            yield function(context, item)
        return
    known = len(items) if isinstance(items, Sized) else None
    with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker,
                             initargs=(context, setup, os.getpid(), max_pixels())) as pool:
        pending: deque[Future[list[R]]] = deque()
        stream = chain(first, iterator)
        read, ended = 0, False
        failure: Exception | None = None
        try:
            while True:
                while not ended and len(pending) < 2 * workers:
                    # chunks as pool.map's for a known length; for a stream, as if it ended here
                    size = max(1, min(64, (known if known is not None else read) // (workers * 4)))
                    chunk: list[T] = []
                    try:
                        chunk.extend(islice(stream, size))
                    except Exception as exc:  # the stream's own error: raised once the items before it are done
                        failure = exc
                    ended = failure is not None or len(chunk) < size
                    if chunk:
                        read += len(chunk)
                        pending.append(pool.submit(_call_chunk, function, chunk))
                if not pending:
                    break
                yield from pending.popleft().result()
            if failure is not None:
                raise failure
        finally:
            for future in pending:
                future.cancel()
