"""Determinism on the real SmolLM2 in bf16 (integration): the same command gives byte-identical generations
and metrics; killed and resumed gives the same bytes; another batch size regenerates instead of mixing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import dcr.generate
from dcr.evaluate import EvaluateConfig, evaluate
from dcr.io import read_json, read_jsonl

pytestmark = pytest.mark.integration


def _cfg(model: Path, data: Path, **kw: Any) -> EvaluateConfig:
    base = dict(model=str(model), data_dir=str(data), benchmarks=["xstest"], limit=12, max_new_tokens=16,
                batch_size=4, dtype="bf16")
    return EvaluateConfig(**{**base, **kw})


def _numbers(out: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(out / "results.jsonl")]


def test_same_command_same_bytes_and_resume(smollm2_dir: Path, data_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    a = evaluate(_cfg(smollm2_dir, data_dir), tmp_path / "a")
    b = evaluate(_cfg(smollm2_dir, data_dir), tmp_path / "b")
    gen_a = (a / "generations" / "xstest.jsonl").read_bytes()
    assert gen_a == (b / "generations" / "xstest.jsonl").read_bytes()
    assert _numbers(a) == _numbers(b)
    assert read_json(a / "metrics.json")["benchmarks"] == read_json(b / "metrics.json")["benchmarks"]

    real, calls = dcr.generate.generate_decoded, []

    def killed_in_batch_three(*args: Any, **kw: Any) -> list[str]:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(dcr.generate, "generate_decoded", killed_in_batch_three)
    with pytest.raises(KeyboardInterrupt):
        evaluate(_cfg(smollm2_dir, data_dir), tmp_path / "c")
    assert read_json(tmp_path / "c" / "manifest.json")["status"] == "interrupted"
    monkeypatch.setattr(dcr.generate, "generate_decoded", real)
    c = evaluate(_cfg(smollm2_dir, data_dir), tmp_path / "c")
    assert (c / "generations" / "xstest.jsonl").read_bytes() == gen_a
    assert _numbers(c) == _numbers(a)


def test_other_batch_size_regenerates_everything(smollm2_dir: Path, data_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = evaluate(_cfg(smollm2_dir, data_dir, max_new_tokens=8), tmp_path / "a")
    real, prompts = dcr.generate.generate_decoded, []

    def counting(model: Any, tok: Any, batch: list[str], *args: Any, **kw: Any) -> list[str]:
        prompts.extend(batch)
        return real(model, tok, batch, *args, **kw)

    monkeypatch.setattr(dcr.generate, "generate_decoded", counting)
    evaluate(_cfg(smollm2_dir, data_dir, max_new_tokens=8, batch_size=16), out)
    assert len(prompts) == 12  # a cache miss: all rows from the new batches, none kept from the old ones
    assert read_json(out / "generations" / "xstest.meta.json")["batch_size"] == 16
