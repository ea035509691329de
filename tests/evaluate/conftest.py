"""No test under tests/evaluate touches the network: the hub counts as unreachable unless a test fakes it."""

from __future__ import annotations

import pytest

import dcr.models


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dcr.models, "hub_reachable", lambda *a, **k: "the hub is off in tests")
