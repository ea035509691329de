"""Greedy batched generation: batching/padding does not change outputs; resume generates only what is missing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import dcr.generate as gen
from dcr.generate import generate, generate_texts
from dcr.greedy import Decoded
from dcr.io import read_jsonl
from dcr.testing import tiny_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [
    "hi",
    "How do I kill a Python process?",
    "What is the capital of France, and why is it famous?",
    "ok",
    "Tell me a story about a cat.",
    "Explain gradient descent in two sentences, please.",
    "x",
]


def _records() -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "prompt": p, "extra": i} for i, p in enumerate(PROMPTS)]


@pytest.mark.parametrize(("family", "template"),
                         [("llama", "auto"), ("llama", "plain"), ("qwen2", "auto"), ("gemma3", "plain")])
def test_batched_equals_one_at_a_time(family: str, template: str) -> None:
    model, tok = tiny_lm(family, seed=0, chat_template=True)
    single = [generate_texts(model, tok, [p], max_new_tokens=8, template=template)[0] for p in PROMPTS]
    assert len(set(single)) > 1  # the check below is not trivially satisfied by constant outputs
    rows = generate(model, tok, _records(), max_new_tokens=8, batch_size=3, template=template, progress=False)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(len(PROMPTS))]  # input order kept
    assert [r["completion"] for r in rows] == single
    assert [r["extra"] for r in rows] == list(range(len(PROMPTS)))  # record fields carried through


def test_batches_are_length_sorted(monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = tiny_lm("llama")
    batches: list[list[str]] = []

    def fake(model: Any, tok: Any, prompts: list[str], *a: Any, **k: Any) -> list[Decoded]:
        batches.append(list(prompts))
        return [Decoded(f"out:{p}", "length") for p in prompts]

    monkeypatch.setattr(gen, "generate_decoded", fake)
    rows = generate(model, tok, _records(), batch_size=2, progress=False)
    flat = [p for b in batches for p in b]
    assert sorted(flat) == sorted(PROMPTS)
    assert [len(p) for p in flat] == sorted((len(p) for p in PROMPTS), reverse=True)
    assert all(len(b) <= 2 for b in batches)
    assert [r["completion"] for r in rows] == [f"out:{p}" for p in PROMPTS]


def test_resume_continues_at_batch_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed mid-run (and mid-line) and resumed: byte-identical to an uninterrupted run, same batches."""
    model, tok = tiny_lm("llama")
    recs = _records()
    whole = tmp_path / "whole.jsonl"
    generate(model, tok, recs, out_jsonl=whole, batch_size=2, max_new_tokens=4, progress=False)
    real = gen.generate_decoded
    seen: list[list[str]] = []

    def killed_after_two(model: Any, tok: Any, prompts: list[str], *a: Any, **k: Any) -> list[Decoded]:
        if len(seen) == 2:
            raise KeyboardInterrupt
        seen.append(list(prompts))
        return real(model, tok, prompts, *a, **k)

    part = tmp_path / "part.jsonl"
    monkeypatch.setattr(gen, "generate_decoded", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        generate(model, tok, recs, out_jsonl=part, batch_size=2, max_new_tokens=4, progress=False)
    lines = part.read_text().splitlines(keepends=True)
    assert len(lines) == 4
    part.write_text("".join(lines[:3]) + lines[3][:10])  # the last row torn mid-line: batch 2 is incomplete
    resumed: list[list[str]] = []

    def counting(model: Any, tok: Any, prompts: list[str], *a: Any, **k: Any) -> list[Decoded]:
        resumed.append(list(prompts))
        return real(model, tok, prompts, *a, **k)

    monkeypatch.setattr(gen, "generate_decoded", counting)
    generate(model, tok, recs, out_jsonl=part, batch_size=2, max_new_tokens=4, progress=False)
    assert resumed[0] == seen[1]  # the torn batch is regenerated whole, with the same composition
    assert len(resumed) == 3  # 4 batches (2, 2, 2, 1): the first finished, the other three run
    assert part.read_bytes() == whole.read_bytes()


def test_other_batch_size_is_a_cache_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = tiny_lm("llama")
    out = tmp_path / "gen.jsonl"
    generate(model, tok, _records(), out_jsonl=out, batch_size=2, max_new_tokens=3, progress=False)
    calls: list[str] = []
    real = gen.generate_decoded

    def counting(model: Any, tok: Any, prompts: list[str], *a: Any, **k: Any) -> list[Decoded]:
        calls.extend(prompts)
        return real(model, tok, prompts, *a, **k)

    monkeypatch.setattr(gen, "generate_decoded", counting)
    generate(model, tok, _records(), out_jsonl=out, batch_size=2, max_new_tokens=3, progress=False)
    assert calls == []
    generate(model, tok, _records(), out_jsonl=out, batch_size=3, max_new_tokens=3, progress=False)
    assert sorted(calls) == sorted(PROMPTS)  # every row regenerated: no mix of two batch compositions
    assert json.loads(out.with_name("gen.batches.json").read_text())["batch_size"] == 3


def test_resume_file_written_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash in a later batch keeps the rows of the finished batches on disk."""
    model, tok = tiny_lm("llama")
    out = tmp_path / "gen.jsonl"
    n = {"calls": 0}

    def flaky(model: Any, tok: Any, prompts: list[str], *a: Any, **k: Any) -> list[Decoded]:
        n["calls"] += 1
        if n["calls"] == 3:
            raise RuntimeError("killed")
        return [Decoded("c", "length")] * len(prompts)

    monkeypatch.setattr(gen, "generate_decoded", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        generate(model, tok, _records(), out_jsonl=out, batch_size=2, progress=False)
    assert len(read_jsonl(out)) == 4


def test_duplicate_ids_rejected() -> None:
    model, tok = tiny_lm("llama")
    recs = [{"id": 1, "prompt": "a"}, {"id": "1", "prompt": "b"}]
    with pytest.raises(ValueError, match="unique"):
        generate(model, tok, recs, progress=False)


def test_dataclass_records_and_bad_records(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass
    class Rec:
        id: str
        prompt: str

    model, tok = tiny_lm("llama")
    monkeypatch.setattr(gen, "generate_decoded", lambda m, t, prompts, *a, **k: [Decoded("y", "length")] * len(prompts))
    rows = generate(model, tok, [Rec("a", "p1"), Rec("b", "p2")], progress=False)
    assert rows == [{"id": "a", "prompt": "p1", "completion": "y"}, {"id": "b", "prompt": "p2", "completion": "y"}]
    with pytest.raises(TypeError, match="records must be dicts"):
        generate(model, tok, ["just a string"], progress=False)


def test_generate_texts_stops_at_max_new_tokens() -> None:
    model, tok = tiny_lm("qwen2")
    out = generate_texts(model, tok, ["abc", "a much longer prompt here"], max_new_tokens=5)
    assert len(out) == 2
    assert all(len(tok(o, add_special_tokens=False)["input_ids"]) <= 5 for o in out)
