"""The evaluate stage's bookkeeping: generation cache key, resume message, transient hub failures."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dcr.evaluate import EvaluateConfig, evaluate
from dcr.io import read_json, read_jsonl, write_jsonl


def _cfg(tiny_dir: Path, data_dir: Path, benchmarks: list[str], **kw) -> EvaluateConfig:
    base = dict(model=str(tiny_dir), data_dir=str(data_dir), benchmarks=benchmarks, limit=6, max_new_tokens=3,
                batch_size=4, dtype="fp32")
    return EvaluateConfig(**{**base, **kw})


def test_generation_meta_holds_batch_size_and_versions(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = evaluate(_cfg(tiny_dir, data_dir, ["oktest"]), tmp_path / "ev")
    meta = read_json(out / "generations" / "oktest.meta.json")
    assert meta["batch_size"] == 4 and meta["max_new_tokens"] == 3 and meta["dtype"] == "torch.float32"
    assert set(meta["versions"]) == {"dcr", "torch", "transformers"} and meta["device"] == "cpu"
    out = evaluate(_cfg(tiny_dir, data_dir, ["oktest"], batch_size=2), out)  # another batch size: regenerated
    assert read_json(out / "generations" / "oktest.meta.json")["batch_size"] == 2


def test_resume_says_how_many_rows_it_reused(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(tiny_dir, data_dir, ["oktest"])
    out = evaluate(cfg, tmp_path / "ev")
    gen = out / "generations" / "oktest.jsonl"
    write_jsonl(gen, read_jsonl(gen)[:4])  # as if killed after four prompts
    (out / "manifest.json").unlink()
    with caplog.at_level(logging.INFO, logger="dcr"):
        evaluate(cfg, out)
    assert "oktest: resumed: 4 of 6 rows reused" in caplog.text
    assert "resumed: 4 of 6 rows reused" in (out / "stage.log").read_text()


def test_unreachable_hub_benchmark_is_not_cached_as_done(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    cfg = _cfg(tiny_dir, data_dir, ["oktest", "hf:someone/prompts"])
    out = evaluate(cfg, tmp_path / "ev")
    manifest = read_json(out / "manifest.json")
    assert manifest["status"] == "incomplete" and "hf:someone/prompts" in manifest["transient"]
    assert "no network" in read_json(out / "metrics.json")["missing"]["hf:someone/prompts"]
    before = (out / "manifest.json").stat().st_mtime_ns
    evaluate(cfg, out)  # retried, not skipped (oktest's generations are reused from the cache)
    assert (out / "manifest.json").stat().st_mtime_ns != before
