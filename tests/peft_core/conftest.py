"""Fixtures for engine tests."""

from __future__ import annotations

import types

import pytest


@pytest.fixture
def peft() -> types.ModuleType:
    """The `peft` package as a test oracle; tests that use it are skipped where it is not installed."""
    return pytest.importorskip("peft")
