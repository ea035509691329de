"""A response-side regulariser for refine (``anchor_weight``): the NLL of general answers, added at every step.

The paper's NLL term (A.2, lambda 0.001) is computed here on the contrastive prompts, so it never asks the model
to keep *answering*. On Qwen2.5-Coder the refined model stopped writing while that term barely moved (issue
28). This term anchors the model to its own behaviour on ordinary instructions: before training, the base model
answers ``anchor_n`` seeded Alpaca instructions greedily (never an AlpacaEval prompt: retention and the
``heldout-nll`` benchmark score those), and every step adds ``anchor_weight`` x the mean per-token NLL of
``anchor_batch`` of those answers given their instructions (self-distillation on the model's own greedy
outputs, response tokens only). The answers are written to ``OUT/anchor.jsonl``.

Gradients flow through the frozen tail into blocks ``0..l`` as the prompt NLL's do; the LM head runs on the
answer tokens only, in chunks, its gradient taken in the forward (:func:`dcr.chunked.chunked_cross_entropy`).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dcr.chunked import chunked_cross_entropy, head_frozen
from dcr.io import write_jsonl

ANCHOR_FILE = "anchor.jsonl"


@dataclass
class Anchor:
    """The general (instruction, answer) pairs and the regulariser's settings."""

    pairs: list[dict[str, str]]
    weight: float
    batch: int

    def rows_for(self, step: int) -> list[dict[str, str]]:
        """The pairs of one step: the next ``batch`` of them, cycling in a fixed order."""
        n = len(self.pairs)
        return [self.pairs[(step * self.batch + i) % n] for i in range(min(self.batch, n))]


def anchor_prompts(data_dir: str | None, n: int, seed: int) -> list[str]:
    """``n`` seeded Alpaca instructions (empty input), none of them one of the 805 AlpacaEval prompts."""
    from dcr.align.data import sample_outside_alpaca_eval
    from dcr.data import load_alpaca_instructions

    records = sample_outside_alpaca_eval(load_alpaca_instructions(data_dir), n, data_dir, seed + 2, "anchor_n")
    return [r.prompt for r in records]


def build_anchor(model: Any, tok: Any, cfg: Any, autocast: torch.dtype | None, out: Path | None) -> Anchor | None:
    """The base model's greedy answers to the anchor instructions (None when ``anchor_weight`` is 0)."""
    if cfg.anchor_weight == 0:
        return None
    from dcr.generate import generate_texts

    prompts = anchor_prompts(cfg.data_dir, cfg.anchor_n, cfg.seed)
    was_training = model.training
    model.eval()
    ctx = torch.autocast(next(model.parameters()).device.type, dtype=autocast) if autocast else nullcontext()
    answers: list[str] = []
    with torch.no_grad(), ctx:
        for start in range(0, len(prompts), cfg.eval_batch_size):
            answers += generate_texts(model, tok, prompts[start:start + cfg.eval_batch_size],
                                      cfg.anchor_max_new_tokens, cfg.template)
    model.train(was_training)
    pairs = [{"prompt": p, "response": a} for p, a in zip(prompts, answers) if a.strip()]
    if not pairs:
        from dcr.errors import DcrError

        raise DcrError(f"anchor: the base model answered none of the {len(prompts)} anchor instructions (all "
                       "empty). Fix: raise anchor_max_new_tokens, or set anchor_weight 0")
    if out is not None:
        write_jsonl(out / ANCHOR_FILE, pairs)
    return Anchor(pairs, cfg.anchor_weight, cfg.anchor_batch)


def encode_pairs(tok: Any, rows: list[dict[str, str]], template: str, max_length: int) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask and labels (answer tokens only; -100 elsewhere) of (prompt, answer)
    rows, as align encodes its SFT pairs (the answer is not closed with an end-of-turn: it may be cut off)."""
    from dcr.align.train import Collator, encode

    feats = [f for f in (encode(tok, {**r, "complete": False}, template, max_length) for r in rows) if f]
    if not feats:
        from dcr.errors import DcrError

        raise DcrError(f"anchor: no pair keeps an answer token within {max_length} tokens. Fix: raise max_length")
    return Collator(tok.pad_token_id if tok.pad_token_id is not None else 0)(feats)


def answer_nll(model: Any, batch: dict[str, torch.Tensor], autocast: torch.dtype | None,
               chunk: int = 256) -> torch.Tensor:
    """Mean per-token NLL of the labelled (answer) tokens, with its graph; the LM head in chunks."""
    from dcr.align.train import IGNORE
    from dcr.refine.step import cast_head

    device_type = batch["input_ids"].device.type
    with torch.autocast(device_type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        hidden = model.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     use_cache=False)[0]
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    head = cast_head(model, autocast)

    def logits_of(h: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            return head(h)

    total = chunked_cross_entropy(logits_of, hidden[:, :-1][keep], labels[keep], chunk, frozen=head_frozen(model))
    return total / keep.sum().clamp_min(1)


def anchor_backward(model: Any, tok: Any, anchor: Anchor, step: int, cfg: Any,
                    autocast: torch.dtype | None) -> float:
    """Add ``weight x`` the answer NLL of this step's anchor pairs to the gradients; returns the NLL."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in encode_pairs(tok, anchor.rows_for(step), cfg.template,
                                                        cfg.max_length + cfg.anchor_max_new_tokens).items()}
    nll = answer_nll(model, batch, autocast, getattr(cfg, "nll_chunk", 256))
    (anchor.weight * nll).backward()
    return float(nll.detach())
