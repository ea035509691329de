"""One torch thread for the align tests: tiny models gain nothing from more, and on a loaded 2-core
machine two OpenMP threads per process made them ~10x slower (spin-waiting)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
