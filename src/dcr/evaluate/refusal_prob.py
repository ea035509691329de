"""Refusal probability (paper A.5): P_refuse(x) = sum over y in S of P(y | x), teacher-forced, batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dcr.prompts import adds_special_tokens, format_prompt
from dcr.refusal import PAPER_REFUSAL_SET
from dcr.scoring import continuation_logprobs, prefix_cached_logprobs_many


def refusal_prob(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    template: str = "auto",
    refusals: Sequence[str] = PAPER_REFUSAL_SET,
    batch_size: int = 16,
    prefix_cache: bool = False,
    log: bool = False,
) -> torch.Tensor:
    """P_refuse(x) per prompt, shape ``(N,)`` fp32: the sum of the sequence probabilities over ``refusals``.

    Each prompt is formatted with ``template`` (as for generation) and each refusal ``y`` is scored as the
    start of the assistant's answer. Rows are ordered prompt-major, so a batch shares few distinct contexts.
    With ``prefix_cache`` each prompt runs once and its KV cache is shared by all refusals (same sums).
    ``log`` returns log P_refuse (a logsumexp, exact where the probability underflows).

    As in the paper's definition, nested phrases ("I cannot" and "I cannot fulfill your request") are both
    counted, so the sum is a score rather than a probability of a disjoint event (it can exceed 1 in principle).
    """
    if not refusals:
        raise ValueError("refusals is empty; pass at least one refusal response")
    if not prompts:
        return torch.empty(0, dtype=torch.float32)
    contexts = [format_prompt(tokenizer, p, template) for p in prompts]
    special = adds_special_tokens(tokenizer, template)
    if prefix_cache:
        logp = prefix_cached_logprobs_many(model, tokenizer, contexts, list(refusals), special)
    else:
        ctx = [c for c in contexts for _ in refusals]
        cont = [y for _ in contexts for y in refusals]
        logp = continuation_logprobs(model, tokenizer, ctx, cont, batch_size=batch_size, add_special_tokens=special)
        logp = logp.view(len(prompts), len(refusals))
    out = torch.logsumexp(logp, dim=1)
    return out if log else out.exp()
