"""The response-side regulariser (``anchor_weight``): its NLL is the model's own loss on the answer tokens, its
pairs are seeded Alpaca instructions (never AlpacaEval) answered by the base model, and the stage uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcr.io import read_jsonl
from dcr.refine import RefineConfig, refine
from dcr.refine.anchor import Anchor, anchor_prompts, answer_nll, encode_pairs
from dcr.refine.train import setup_full
from dcr.testing import tiny_lm

ROWS = [{"prompt": "Name a colour.", "response": "Blue is a colour."},
        {"prompt": "Write a haiku about rain on a tin roof, please.", "response": "Tin drums in the night"}]


def test_answer_nll_is_the_models_own_loss_on_the_answer_tokens() -> None:
    model, tok = tiny_lm("qwen2", seed=0, tie_word_embeddings=True)
    setup_full(model, 1)
    batch = encode_pairs(tok, ROWS, "auto", 64)
    assert (batch["labels"] != -100).sum() < batch["attention_mask"].sum()  # the prompts carry no label
    ref = model(**batch, use_cache=False).loss
    ref.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    got = answer_nll(model, batch, None, chunk=5)
    got.backward()
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    for name, g in want.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, g, rtol=1e-5, atol=1e-6, msg=name)


def test_rows_cycle_through_the_pairs_in_a_fixed_order() -> None:
    anchor = Anchor([{"prompt": str(i), "response": "r"} for i in range(5)], 1.0, 2)
    assert [[r["prompt"] for r in anchor.rows_for(s)] for s in range(3)] == [["0", "1"], ["2", "3"], ["4", "0"]]


def test_anchor_prompts_are_seeded_and_never_alpaca_eval(data_dir: Path) -> None:
    from dcr.align.data import normalize_prompt
    from dcr.data import load_alpaca_eval

    a, b = anchor_prompts(str(data_dir), 50, 0), anchor_prompts(str(data_dir), 50, 1)
    assert a == anchor_prompts(str(data_dir), 50, 0) and a != b and len(set(a)) == 50
    banned = {normalize_prompt(r.prompt) for r in load_alpaca_eval(str(data_dir))}
    assert not banned & {normalize_prompt(p) for p in a + b}


def test_the_stage_trains_with_the_anchor_term(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    fast = dict(limit=6, epochs=1, batch_size=6, eval_batch_size=64, xstest_heldout_frac=0.05, retention_n=0)
    out = refine(RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), anchor_weight=1.0, anchor_n=4,
                              anchor_batch=2, anchor_max_new_tokens=8, **fast), tmp_path / "a")
    pairs = read_jsonl(out / "anchor.jsonl")
    assert 0 < len(pairs) <= 4 and all(set(p) == {"prompt", "response"} for p in pairs)
    header = (out / "loss.csv").read_text().splitlines()[0].split(",")
    assert "anchor" in header
    with pytest.raises(Exception, match="anchor_weight"):
        RefineConfig(model=str(tiny_dir), anchor_weight=-1.0)


def test_an_anchor_without_answers_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    import dcr.generate
    from dcr.errors import DcrError
    from dcr.refine.anchor import build_anchor

    model, tok = tiny_lm("qwen2", seed=0)
    monkeypatch.setattr(dcr.generate, "generate_texts", lambda m, t, prompts, *a, **k: [""] * len(prompts))
    cfg = RefineConfig(model="m", data_dir=str(data_dir), anchor_weight=1.0, anchor_n=4)
    with pytest.raises(DcrError, match="answered none of the 4 anchor instructions"):
        build_anchor(model, tok, cfg, None, None)
    with pytest.raises(DcrError, match="no pair keeps an answer token"):
        encode_pairs(tok, ROWS[:1], "auto", 2)
