"""Fixtures of the Defect-Click tests."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every socket connection fails: what runs in the test may not reach the network."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
