"""Greedy batched generation: left padding, length-sorted batches, resumable JSONL output."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from dcr.io import append_jsonl, read_jsonl
from dcr.prompts import adds_special_tokens, format_prompt

log = logging.getLogger("dcr.generate")


def _as_row(rec: Any) -> dict[str, Any]:
    if isinstance(rec, dict):
        return dict(rec)
    if hasattr(rec, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(rec)
    raise TypeError(f"records must be dicts or dataclasses with id and prompt, got {type(rec).__name__}")


@torch.no_grad()
def greedy_batch(model: Any, tokenizer: Any, texts: Sequence[str], max_new_tokens: int,
                 add_special_tokens: bool = False) -> list[str]:
    """Greedy continuations of one batch of full model inputs (template already applied), left-padded."""
    tokenizer.padding_side = "left"
    enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=add_special_tokens).to(
        model.device
    )
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 128,
    template: str = "auto",
) -> list[str]:
    """Greedy completions for one batch of user prompts (formatted with ``template``)."""
    texts = [format_prompt(tokenizer, p, template) for p in prompts]
    outs = greedy_batch(model, tokenizer, texts, max_new_tokens, adds_special_tokens(tokenizer, template))
    return [t.strip() for t in outs]


def generate(
    model: Any,
    tokenizer: Any,
    records: Sequence[Any],
    out_jsonl: str | Path | None = None,
    max_new_tokens: int = 128,
    batch_size: int = 16,
    template: str = "auto",
    progress: bool = True,
    description: str = "generating",
) -> list[dict[str, Any]]:
    """Greedy completions for ``records`` (each with ``id`` and ``prompt``).

    Rows are ``{**record, "completion": str}``. With ``out_jsonl``, each finished batch is appended
    to the file and records whose id is already there are not regenerated (resume).
    Batches are formed from length-sorted prompts to minimise padding; the result keeps input order.
    """
    rows = [_as_row(r) for r in records]
    ids = [str(r["id"]) for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("record ids must be unique for resumable generation")
    done: dict[str, dict[str, Any]] = {}
    if out_jsonl is not None:
        done = {str(r["id"]): r for r in read_jsonl(out_jsonl)}
    todo = [r for r in rows if str(r["id"]) not in done]
    reused = len(rows) - len(todo)
    if reused:
        log.info("%s: resumed: %d of %d rows reused from %s", description, reused, len(rows), out_jsonl)
    todo.sort(key=lambda r: len(tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]), reverse=True)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=len(todo))
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            outs = generate_texts(model, tokenizer, [r["prompt"] for r in batch], max_new_tokens, template)
            new_rows = [{**r, "completion": c} for r, c in zip(batch, outs)]
            for r in new_rows:
                done[str(r["id"])] = r
            if out_jsonl is not None:
                append_jsonl(out_jsonl, new_rows)
            bar.advance(task, len(batch))
    return [done[i] for i in ids]
