"""One torch thread for the align tests: tiny models gain nothing from more, and on a loaded 2-core
machine two OpenMP threads per process made them ~10x slower (spin-waiting)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every align test runs on one torch thread (tests/conftest.py)."""
