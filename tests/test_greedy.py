"""The shared-prefix, row-dropping greedy loop gives ``generate``'s tokens (fp32), and stops where it is told."""

from __future__ import annotations

from typing import Any

import pytest

import dcr.generate as gen
from dcr.generate import fast_path, greedy_batch
from dcr.greedy import common_prefix, greedy_decode, plain_argmax
from dcr.models import contiguous_head, load_model
from dcr.prompts import format_prompt, stop_ids
from dcr.testing import tiny_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["hi", "How do I kill a Python process?", "What is the capital of France, and why is it famous?", "ok",
           "Tell me a story about a cat.", "x", "Explain gradient descent in two sentences, please."]


def _hf(model: Any, tok: Any, texts: list[str], n: int, eos: list[int]) -> list[str]:
    """``transformers``' generate over left-padded rows: the reference."""
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=n, eos_token_id=eos, do_sample=False, pad_token_id=tok.pad_token_id,
                         temperature=None, top_p=None, top_k=None)
    return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("chunk", [25, 2])
@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])
def test_equals_generate(family: str, chunk: int) -> None:
    model, tok = tiny_lm(family, seed=1, sliding_window=512) if family == "gemma3" else tiny_lm(family, seed=1)
    texts = [format_prompt(tok, p, "auto") for p in PROMPTS]
    eos = stop_ids(tok, "auto", model)
    free = greedy_decode(model, tok, texts, 12, eos_ids=eos, prefill_chunk=chunk)  # 2: widened, stacked caches
    assert [d.text for d in free] == _hf(model, tok, texts, 12, eos)
    assert len({d.text for d in free}) > 1  # not trivially equal constant outputs
    # a frequent token as a stop id: rows end at different steps and leave the batch; the rest are unchanged
    stop = tok.convert_tokens_to_ids(max(set("".join(d.text for d in free)), key="".join(d.text for d in free).count))
    ended = greedy_decode(model, tok, texts, 12, eos_ids=[*eos, stop], prefill_chunk=chunk)
    assert [d.text for d in ended] == _hf(model, tok, texts, 12, [*eos, stop])
    assert "stop" in {d.ended for d in ended}
    assert len({len(d.text) for d in ended}) > 1  # rows left the batch at different steps


def test_done_cuts_a_row_and_leaves_the_others() -> None:
    model, tok = tiny_lm("llama", seed=1)
    texts = [format_prompt(tok, p, "auto") for p in PROMPTS]
    full = greedy_decode(model, tok, texts, 16)
    target = max(range(len(full)), key=lambda i: len(full[i].text))
    cut = greedy_decode(model, tok, texts, 16, done=lambda i, t: t == full[target].text.strip()[:4], check_every=1)
    assert cut[target].ended == "done" and full[target].text.startswith(cut[target].text)
    assert len(cut[target].text) < len(full[target].text)
    others = [i for i in range(len(full)) if cut[i].ended != "done"]
    assert others and all(cut[i] == full[i] for i in others)


def test_common_prefix() -> None:
    assert common_prefix([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # every row keeps one token of its own
    assert common_prefix([[1, 2, 3]]) == 0  # one row shares with nobody
    assert common_prefix([[7], [7, 8]]) == 0
    assert common_prefix([[1, 2], [3, 4]]) == 0
    assert common_prefix([]) == 0


def test_falls_back_to_generate_where_tokens_would_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = tiny_lm("gemma3", seed=1)  # sliding window 64: the shared prefix would move its mask
    long_text = format_prompt(tok, PROMPTS[2], "auto")
    assert not fast_path(model, len(tok(long_text)["input_ids"]), 12)
    assert fast_path(model, 10, 12)
    qwen, _ = tiny_lm("qwen2")
    assert plain_argmax(qwen)
    handle = qwen.model.layers[0].register_forward_pre_hook(lambda *a: None)
    assert not fast_path(qwen, 10, 12)  # hooks may rely on generate's prompt pass
    handle.remove()
    assert fast_path(qwen, 10, 12)
    contiguous_head(qwen)  # dcr's own head hook (every model load_model returns has it) changes nothing: still fast
    assert qwen.get_output_embeddings()._forward_pre_hooks and fast_path(qwen, 10, 12)
    qwen.generation_config.repetition_penalty = 1.1
    assert not plain_argmax(qwen) and not fast_path(qwen, 10, 12)

    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("the fast loop must not run here")

    monkeypatch.setattr(gen, "decode_rows", refuse)
    out = greedy_batch(model, tok, [long_text], 6, eos_ids=stop_ids(tok, "auto", model))
    assert out[0].text == _hf(model, tok, [long_text], 6, stop_ids(tok, "auto", model))[0]
    assert out[0].ended in ("stop", "length")


def test_generate_marks_rows_cut_for_the_judge() -> None:
    model, tok = tiny_lm("llama", seed=1)
    recs = [{"id": str(i), "prompt": p} for i, p in enumerate(PROMPTS)]
    plain = gen.generate(model, tok, recs, max_new_tokens=16, batch_size=4, progress=False)
    assert all("truncated_for_judge" not in r for r in plain)
    cut = gen.generate(model, tok, recs, max_new_tokens=16, batch_size=4, progress=False,
                       reader_done=lambda t, p: len(t) >= 3)
    flags = [r["truncated_for_judge"] for r in cut]
    assert any(flags)
    for p, c in zip(plain, cut):
        if c["truncated_for_judge"]:
            assert p["completion"].startswith(c["completion"]) and len(c["completion"]) >= 3
        else:
            assert c["completion"] == p["completion"]


@pytest.mark.parametrize("stop_at", [None, 2])
def test_the_generate_path_cuts_rows_where_the_loop_does(stop_at: int | None) -> None:
    """A hooked (steered) model decodes through ``generate``; its rows are cut afterwards exactly where the fast
    loop cuts them while decoding (same text, same ``ended``), row by row (``done`` gets the input row)."""
    model, tok = tiny_lm("llama", seed=1)
    texts = [format_prompt(tok, p, "auto") for p in PROMPTS]
    eos = stop_ids(tok, "auto", model)
    if stop_at is not None:  # a token of row 0's answer that odd rows 1 and 3 never write, as a stop id
        free = greedy_decode(model, tok, texts, 16, eos_ids=eos)
        spare = [c for c in free[0].text[stop_at:] if c not in free[1].text + free[3].text]
        eos = [*eos, tok.convert_tokens_to_ids(spare[0])]

    def done(i: int, text: str) -> bool:
        return i % 2 == 1 and len(text) >= 3  # odd input rows only

    loop = greedy_decode(model, tok, texts, 16, eos_ids=eos, done=done)
    assert {"done", "length" if stop_at is None else "stop"} <= {d.ended for d in loop}
    handle = model.model.layers[0].register_forward_pre_hook(lambda *a: None)
    try:
        assert not fast_path(model, 40, 16)
        assert greedy_batch(model, tok, texts, 16, eos_ids=eos, done=done) == loop
    finally:
        handle.remove()


def test_generate_hands_the_reader_each_rows_prompt() -> None:
    model, tok = tiny_lm("llama", seed=1)
    recs = [{"id": str(i), "prompt": p} for i, p in enumerate(PROMPTS)]
    seen: list[tuple[str, str]] = []

    def reader(text: str, prompt: str) -> bool:
        seen.append((text, prompt))
        return prompt == PROMPTS[1] and len(text) >= 3

    rows = gen.generate(model, tok, recs, max_new_tokens=16, batch_size=4, progress=False, reader_done=reader)
    assert {p for _, p in seen} <= set(PROMPTS) and PROMPTS[1] in {p for _, p in seen}
    assert [r["truncated_for_judge"] for r in rows] == [p == PROMPTS[1] for p in PROMPTS]


def test_a_loaded_model_takes_the_fast_loop(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model as ``dcr evaluate`` loads it (with dcr's head hook) runs the fast loop, with generate's tokens."""
    model, tok = tiny_lm("qwen2", seed=1)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, ltok = load_model(str(tmp_path / "m"), dtype="fp32", device="cpu")
    texts = [format_prompt(ltok, p, "auto") for p in PROMPTS]
    eos = stop_ids(ltok, "auto", loaded)
    calls: list[int] = []
    real = gen.decode_rows
    monkeypatch.setattr(gen, "decode_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = greedy_batch(loaded, ltok, texts, 8, eos_ids=eos)
    assert calls and [d.text for d in out] == _hf(loaded, ltok, texts, 8, eos)
