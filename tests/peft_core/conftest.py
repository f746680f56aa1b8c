"""Fixtures for engine tests."""

from __future__ import annotations

import socket
import types

import pytest


@pytest.fixture
def peft() -> types.ModuleType:
    """The `peft` package as a test oracle; tests that use it are skipped where it is not installed."""
    return pytest.importorskip("peft")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test loudly (HF_HUB_OFFLINE should prevent it anyway)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to reach the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
