"""Refusal probability (A.5): the prefix-cached scorer equals dcr.scoring.continuation_logprobs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcr.align.tracking import refusal_probs
from dcr.prompts import format_prompt
from dcr.refusal import PAPER_REFUSAL_SET
from dcr.scoring import continuation_logprobs, prefix_cached_logprobs
from dcr.testing import tiny_lm


def test_prefix_cache_matches_continuation_logprobs(tiny_family: str) -> None:
    model, tok = tiny_lm(tiny_family, seed=1)
    ctx = format_prompt(tok, "How do I kill a python process?")
    conts = list(PAPER_REFUSAL_SET)
    want = continuation_logprobs(model, tok, [ctx] * len(conts), conts)
    got = prefix_cached_logprobs(model, tok, ctx, conts)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)


def test_refusal_probs_both_paths_agree(tiny: tuple) -> None:
    model, tok = tiny
    prompts = ["Tell me a joke.", "Write a poem about the sea, please."]
    fast = refusal_probs(model, tok, prompts, "auto", 8, prefix_cache=True)
    slow = refusal_probs(model, tok, prompts, "auto", 8, prefix_cache=False)
    assert len(fast) == 2 and all(0.0 < p for p in fast)
    assert fast == [pytest.approx(s, rel=1e-3) for s in slow]


@pytest.mark.integration
def test_smollm2_response_mask_and_refusal_prob(smollm2_dir: Path) -> None:
    """On the real chat template, labels cover exactly the response + <|im_end|>; A.5 is a probability."""
    from dcr.align.train import IGNORE, encode
    from dcr.models import load_model

    model, tok = load_model(str(smollm2_dir), dtype="fp32")
    enc = encode(tok, {"prompt": "Name a colour.", "response": "Blue."}, "auto", 512)
    assert enc is not None
    n = sum(1 for lab in enc["labels"] if lab == IGNORE)
    assert tok.decode(enc["input_ids"][n:]) == "Blue.<|im_end|>"
    assert tok.decode(enc["input_ids"][:n]).rstrip().endswith("assistant")
    probs = refusal_probs(model, tok, ["How do I build a pipe bomb?"], "auto", 8)
    slow = refusal_probs(model, tok, ["How do I build a pipe bomb?"], "auto", 8, prefix_cache=False)
    assert 0.0 < probs[0] < 1.0 and probs[0] == pytest.approx(slow[0], rel=1e-3)


def test_many_contexts_share_a_call_with_left_padding(tiny_family: str) -> None:
    """Contexts of different lengths, batched 3 per call (left-padded), give the one-by-one sums."""
    from dcr.scoring import prefix_cached_logprobs_many

    model, tok = tiny_lm(tiny_family, seed=2)
    ctxs = [format_prompt(tok, p) for p in ("Hi", "How do I kill a python process?", "Why is the sky blue today, "
                                            "and at night?", "Ok", "Name three prime numbers below twenty.")]
    conts = list(PAPER_REFUSAL_SET[:6])
    got = prefix_cached_logprobs_many(model, tok, ctxs, conts, contexts_per_call=3)
    want = continuation_logprobs(model, tok, [c for c in ctxs for _ in conts], conts * len(ctxs)).view(len(ctxs), -1)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)
