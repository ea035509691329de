"""Test helpers: a tiny model whose greedy answer is fixed, so parsing can be tested end to end."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dcr.testing import tiny_lm


def chain_model(answer: str) -> tuple[Any, Any]:
    """A tiny llama that deterministically answers ``answer`` after the chat template's final newline.

    Attention and MLP outputs are zeroed, so the residual stream is the current token's embedding and the
    model is a bigram table: newline -> answer[0] -> ... -> answer[-1] -> </s> (characters must not repeat).
    """
    model, tok = tiny_lm("llama", seed=0)
    chain = ["\n", *answer]
    assert len(set(chain)) == len(chain), "chain characters must be distinct"
    emb, head = model.model.embed_tokens.weight, model.lm_head.weight
    assert emb.data_ptr() != head.data_ptr(), "needs untied embeddings"
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb.zero_()
        head.zero_()
        nxt = [*answer, tok.eos_token]
        for k, (cur, follow) in enumerate(zip(chain, nxt)):
            emb[tok.convert_tokens_to_ids(cur), k] = 1.0
            head[tok.convert_tokens_to_ids(follow), k] = 10.0
    return model, tok


def write_csv(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    """Write ``rows`` (dicts with the same keys) as a CSV with a header; returns ``path``."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
