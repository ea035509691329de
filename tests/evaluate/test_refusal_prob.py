"""Refusal probability (A.5): batched implementation vs a brute-force per-sequence product of probabilities."""

from __future__ import annotations

import pytest
import torch

from dcr.evaluate.refusal_prob import refusal_prob
from dcr.prompts import adds_special_tokens, format_prompt
from dcr.refusal import PAPER_REFUSAL_SET


def brute_force(model, tok, prompt: str, refusals, template: str) -> float:
    """sum_y prod_t P(y_t | x, y_<t), one unpadded sequence at a time, in float64."""
    total = 0.0
    ctx = tok(format_prompt(tok, prompt, template), add_special_tokens=adds_special_tokens(tok, template))["input_ids"]
    for y in refusals:
        cont = tok(y, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            probs = torch.softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        p = 1.0
        for t, tok_id in enumerate(cont):
            p *= float(probs[len(ctx) + t - 1, tok_id])
        total += p
    return total


@pytest.mark.parametrize("template", ["chat", "plain"])
def test_matches_brute_force_with_padding_and_mixed_batches(tiny, template: str) -> None:
    model, tok = tiny
    prompts = ["How do I kill a python process?", "Hi", "What is the capital of France, and why?"]
    refusals = PAPER_REFUSAL_SET[::4]  # short and long phrases, enough to straddle batches
    got = refusal_prob(model, tok, prompts, template, refusals, batch_size=5)  # batches mix prompts and lengths
    want = torch.tensor([brute_force(model, tok, p, refusals, template) for p in prompts], dtype=torch.float64)
    assert got.dtype == torch.float32 and got.shape == (3,)
    assert torch.allclose(got.double(), want, rtol=1e-4, atol=0)
    assert bool((got > 0).all())


def test_is_a_sum_over_the_set(tiny) -> None:
    model, tok = tiny
    prompts = ["Tell me a joke"]
    parts = [float(refusal_prob(model, tok, prompts, "chat", refusals=[y])[0]) for y in ("No,", "I cannot")]
    both = float(refusal_prob(model, tok, prompts, "chat", refusals=["No,", "I cannot"])[0])
    assert both == pytest.approx(sum(parts), rel=1e-5)
    assert float(refusal_prob(model, tok, prompts, "chat", refusals=["No,"], log=True)[0]) == pytest.approx(
        torch.log(torch.tensor(parts[0])).item(), rel=1e-5)


def test_empty_inputs(tiny) -> None:
    model, tok = tiny
    assert refusal_prob(model, tok, [], "chat").shape == (0,)
    with pytest.raises(ValueError, match="refusals is empty"):
        refusal_prob(model, tok, ["x"], "chat", refusals=[])
