"""Shared fixtures: the real data in ../shared/data (skipped with a reason where absent)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DEFECTSPECTRUM_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("DEFECTSPECTRUM_NO_PROGRESS", "1")


ModuleTmp = Callable[[str], Path]


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleTmp]:
    """Makes folders for files a whole test module shares, and removes them when the module ends: a
    run then holds one module's shared files at a time, not all of them (CI's disk may be small)."""
    made: list[Path] = []

    def make(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder, or skip: it exists beside a developer's checkout and in CI only."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set DEFECTSPECTRUM_SHARED_DATA to its path)")
    return SHARED_DATA


def real_dataset(shared: Path, name: str) -> Path:
    """One data set inside the shared folder, or skip naming it."""
    path = shared / name
    if not path.is_dir():
        pytest.skip(f"real data set {name} not found in {shared}")
    return path


@pytest.fixture
def sigint_default() -> Iterator[None]:
    """SIGINT as an interactive Python has it (KeyboardInterrupt), for tests of Ctrl-C handling. A
    process started in the background (`cmd &`, nohup) inherits SIGINT ignored, and Python then
    keeps it ignored; these tests must not depend on how the suite was launched."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every socket connection fails: what runs in the test may not reach the network."""
    import socket

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
