"""Greedy batched generation: left padding, length-sorted batches, resumable JSONL output."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from dcr.dist import barrier, gather, is_main, rank, world_size
from dcr.fingerprint import short_hash
from dcr.greedy import Decoded, decode_rows, plain_argmax
from dcr.io import append_jsonl, read_json, read_jsonl, write_json
from dcr.models import BENIGN_HOOKS
from dcr.prompts import adds_special_tokens, format_prompt, stop_ids

log = logging.getLogger("dcr.generate")


def _as_row(rec: Any) -> dict[str, Any]:
    if isinstance(rec, dict):
        return dict(rec)
    if hasattr(rec, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(rec)
    raise TypeError(f"records must be dicts or dataclasses with id and prompt, got {type(rec).__name__}")


def fast_path(model: Any, longest: int, max_new_tokens: int) -> bool:
    """Whether :func:`dcr.greedy.greedy_decode` gives ``generate``'s tokens: greedy is a plain argmax, no
    sliding attention window is reached (its mask counts cache slots, which the shared prefix moves), and no
    module carries forward hooks (steering hooks such as SCANS' classify on ``generate``'s one prompt pass and
    expect its batch to stay whole). dcr's own hooks that change no value (``BENIGN_HOOKS``: the LM head's
    contiguous input, on every model :func:`dcr.models.load_model` returns) do not count."""
    window = getattr(model.config, "sliding_window", None) or getattr(
        getattr(model.config, "text_config", None), "sliding_window", None)
    hooked = any(h not in BENIGN_HOOKS for m in model.modules()
                 for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values()))
    return plain_argmax(model) and not hooked and (not window or longest + max_new_tokens <= window)


def cut_rows(tokenizer: Any, rows: Sequence[Sequence[int]], stops: set[int], max_new_tokens: int,
             done: Callable[[int, str], bool] | None, check_every: int = 4) -> list[Decoded]:
    """Whole continuations (token ids, padding after a stop id allowed) cut as :func:`dcr.greedy.decode_rows`
    cuts them while decoding: a row ends at its first stop id (``stop``), else at the first multiple of
    ``check_every`` tokens below ``max_new_tokens`` where ``done(i, text)`` holds (``done``), else ``length``."""
    out = []
    for i, row in enumerate(rows):
        ids = list(row)
        end = next((k + 1 for k, t in enumerate(ids) if t in stops), None)
        ids, ended = (ids[:end], "stop") if end is not None else (ids, "length")
        if done is not None:
            last = min(len(ids) - (ended == "stop"), max_new_tokens - 1)  # checked only while the row is live
            for step in range(check_every, last + 1, check_every):
                if done(i, tokenizer.decode(ids[:step], skip_special_tokens=True).strip()):
                    ids, ended = ids[:step], "done"
                    break
        out.append(Decoded(tokenizer.decode(ids, skip_special_tokens=True), ended))
    return out


@torch.no_grad()
def greedy_batch(model: Any, tokenizer: Any, texts: Sequence[str], max_new_tokens: int,
                 add_special_tokens: bool = False, eos_ids: list[int] | None = None,
                 done: Callable[[int, str], bool] | None = None) -> list[Decoded]:
    """Greedy continuations of one batch of full model inputs (template already applied); a row stops at any
    of ``eos_ids`` (default: the model's generation config) or, when given, once ``done(i, text)`` is True
    (``i``: the row's index in ``texts``).

    The shared-prefix, row-dropping loop of :mod:`dcr.greedy` where it gives ``generate``'s tokens
    (:func:`fast_path`), else ``transformers``' ``generate`` over left-padded rows, cut afterwards where the
    loop would have cut them (:func:`cut_rows`), so a steered model's answers are read as far as anyone's."""
    rows = [tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"] for t in texts]
    if fast_path(model, max((len(r) for r in rows), default=0), max_new_tokens):
        return decode_rows(model, tokenizer, rows, max_new_tokens, eos_ids, done)
    tokenizer.padding_side = "left"
    enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=add_special_tokens).to(
        model.device
    )
    out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=eos_ids, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
    new = out[:, enc["input_ids"].shape[1]:]
    return cut_rows(tokenizer, new.tolist(), set(eos_ids or []), max_new_tokens, done)


def generate_decoded(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 128,
                     template: str = "auto", done: Callable[[str, str], bool] | None = None) -> list[Decoded]:
    """Greedy completions (stripped) for one batch of user prompts formatted with ``template``; ``done(text,
    prompt)`` (a judge's :meth:`~dcr.judges.base.Judge.has_read`) ends a row early."""
    texts = [format_prompt(tokenizer, p, template) for p in prompts]
    row_done = (lambda i, text: done(text, prompts[i])) if done is not None else None
    outs = greedy_batch(model, tokenizer, texts, max_new_tokens, adds_special_tokens(tokenizer, template),
                        stop_ids(tokenizer, template, model), row_done)
    return [Decoded(d.text.strip(), d.ended) for d in outs]


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 128,
    template: str = "auto",
    done: Callable[[str, str], bool] | None = None,
) -> list[str]:
    """Greedy completions for one batch of user prompts (formatted with ``template``)."""
    return [d.text for d in generate_decoded(model, tokenizer, prompts, max_new_tokens, template, done)]


def plan_batches(tokenizer: Any, rows: Sequence[dict[str, Any]], batch_size: int) -> list[list[str]]:
    """The batches (lists of ids) of a generation: all rows sorted by prompt length (longest first, ties in input
    order), cut into ``batch_size`` chunks. A completion depends on its batch in bf16, so a resume keeps these."""
    order = sorted(rows, key=lambda r: -len(tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]))
    ids = [str(r["id"]) for r in order]
    return [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]


def _sync_plan(out_jsonl: Path, plan: dict[str, Any], description: str) -> None:
    """Keep cached rows only when they were generated under the same batch plan; else discard them."""
    path = out_jsonl.with_name(out_jsonl.name.removesuffix(".jsonl") + ".batches.json")
    saved = read_json(path) if path.exists() else None
    if saved == plan:
        return
    if saved is not None and out_jsonl.exists():
        log.info("%s: batch plan changed (batch size or prompts); regenerating %s", description, out_jsonl)
        out_jsonl.unlink()
    write_json(path, plan)


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
    reader_done: Callable[[str, str], bool] | None = None,
) -> list[dict[str, Any]]:
    """Greedy completions for ``records`` (each with ``id`` and ``prompt``); the result keeps input order.

    Rows are ``{**record, "completion": str}``. Batches come from :func:`plan_batches` over *all* records, so a
    completion is the same whether the run was interrupted or not. With ``out_jsonl``, each finished batch is
    appended and the plan saved beside it (``<name>.batches.json``); a resume skips finished batches and
    regenerates a partly written one whole (appending only its missing rows). Rows cached under another plan
    (another batch size or prompt set) are discarded, never mixed in.

    ``reader_done(completion, prompt)`` (the judge's :meth:`~dcr.judges.base.Judge.has_read`) ends a row once its reader
    has read all it reads; rows then carry ``truncated_for_judge`` (True where a row was cut there). The caller
    keys its cache on that policy (``dcr.evaluate``'s generation meta), so a whole-answer judge never reads
    a cut row.
    """
    rows = [_as_row(r) for r in records]
    ids = [str(r["id"]) for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("record ids must be unique for resumable generation")
    batches = plan_batches(tokenizer, rows, batch_size)
    done: dict[str, dict[str, Any]] = {}
    if out_jsonl is not None:
        out_jsonl = Path(out_jsonl)
        plan = {"batch_size": batch_size, "prompts": short_hash([r["prompt"] for r in rows]), "batches": batches}
        if is_main():
            _sync_plan(out_jsonl, plan, description)
        barrier()
        done = {str(r["id"]): r for r in read_jsonl(out_jsonl)}
    reused = sum(i in done for i in ids)
    if reused and is_main():
        log.info("%s: resumed: %d of %d rows reused from %s", description, reused, len(rows), out_jsonl)
    by_id = dict(zip(ids, rows))
    todo = [b for b in batches if any(i not in done for i in b)]
    ranks = world_size()
    with Progress(disable=not progress or not is_main(), transient=True) as bar:
        task = bar.add_task(description, total=sum(len(b) for b in todo))
        for start in range(0, len(todo), ranks):  # one round: batch start + r on rank r (the plan, sharded)
            round_ = todo[start:start + ranks]
            new_rows = _generate_round(model, tokenizer, round_, by_id, done, max_new_tokens, template,
                                       reader_done)
            for r in new_rows:
                done[str(r["id"])] = r
            if out_jsonl is not None and is_main():
                append_jsonl(out_jsonl, new_rows)
            bar.advance(task, sum(len(b) for b in round_))
    return [done[i] for i in ids]


def _generate_round(model: Any, tokenizer: Any, round_: list[list[str]], by_id: dict[str, dict[str, Any]],
                    done: dict[str, dict[str, Any]], max_new_tokens: int, template: str,
                    reader_done: Callable[[str, str], bool] | None) -> list[dict[str, Any]]:
    """The new rows of up to ``world_size`` planned batches, in plan order; rank r generates batch r."""
    mine: list[dict[str, Any]] = []
    if rank() < len(round_):
        batch = round_[rank()]
        outs = generate_decoded(model, tokenizer, [by_id[i]["prompt"] for i in batch], max_new_tokens, template,
                                reader_done)
        cut = (lambda d: {"truncated_for_judge": d.ended == "done"}) if reader_done else (lambda d: {})
        mine = [{**by_id[i], "completion": d.text, **cut(d)} for i, d in zip(batch, outs) if i not in done]
    if world_size() == 1:
        return mine
    return gather(mine)  # rank order = batch order within the round
