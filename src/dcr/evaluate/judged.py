"""Prompt benchmarks: cached generation, cached judgements, refusal probability, compliance / safety metrics.

Caches under the evaluate output directory:

- ``generations/<bench>.jsonl`` (one row per prompt, appended per batch, so a killed run resumes) and
  ``generations/<bench>.meta.json`` (model, steering, dtype, template, max_new_tokens). A changed meta discards
  that benchmark's generations and judgements; rows already generated for the same id and prompt under
  another benchmark with the same meta are reused (``safety`` reuses the five safety sets, ``xstest`` the
  ``xstest-safe`` rows, ...).
- ``judgements/<bench>__<judge>.jsonl``: ``{id, label, value, of}`` per judged completion; ``of`` (:func:`text_key`)
  names the prompt and completion the verdict read, so a completion generated again (another batch plan) is
  judged again instead of inheriting its predecessor's verdict.
- ``judgements/<bench>__refusal_prob.jsonl``: ``{id, refusal_prob}``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcr.data import PromptRecord
from dcr.evaluate.metrics import Metric, by_type, kind_of, mean, safe_metrics, split_groups, three_class, unsafe_metrics
from dcr.evaluate.refusal_prob import refusal_prob
from dcr.fingerprint import short_hash
from dcr.generate import generate
from dcr.io import append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from dcr.judges import Judge
from dcr.judges.base import outcome
from dcr.judges.record import judge_identity

JUDGE_CHUNK = 64


@dataclass
class Judges:
    """The refusal judge (None if the configured judge cannot measure refusals), the safety judge, and extra
    refusal judges whose disagreement with the refusal judge is reported."""

    refusal: Judge | None
    safety: Judge
    extra: list[Judge] = dataclasses.field(default_factory=list)


def slug(text: str) -> str:
    """A file-name-safe version of a judge name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "judge"


def sync_cache(cache: Path, meta: dict[str, Any]) -> bool:
    """Drop ``cache`` (a JSONL of per-item results) unless it was written under an equal ``meta``, kept beside it
    as ``<name>.meta.json`` (general-ability scores depend on the model and its dtype, not only on the item);
    True when it was dropped."""
    path = cache.with_name(cache.name.removesuffix(".jsonl") + ".meta.json")
    if path.exists() and read_json(path) == meta:
        return False
    cache.unlink(missing_ok=True)
    write_json(path, meta)
    return True


def sync_meta(gen_dir: Path, bench: str, meta: dict[str, Any]) -> None:
    """Drop ``bench``'s cached generations and judgements when they were made under another meta."""
    if sync_cache(gen_dir / f"{bench}.jsonl", meta):
        for stale in (gen_dir.parent / "judgements").glob(f"{bench}__*.jsonl"):
            stale.unlink()


def prefill(gen_dir: Path, bench: str, records: Sequence[PromptRecord], meta: dict[str, Any]) -> int:
    """Copy completions for the same (id, prompt) from other benchmarks' caches with an equal meta."""
    target = gen_dir / f"{bench}.jsonl"
    have = {str(r["id"]) for r in read_jsonl(target)}
    want = {r.id: r.prompt for r in records if r.id not in have}
    found: dict[str, dict[str, Any]] = {}
    for meta_path in sorted(gen_dir.glob("*.meta.json")):
        other = meta_path.name.removesuffix(".meta.json")
        if other == bench or read_json(meta_path) != meta:
            continue
        for row in read_jsonl(gen_dir / f"{other}.jsonl"):
            rid = str(row.get("id"))
            if rid in want and rid not in found and row.get("prompt") == want[rid]:
                found[rid] = row
    rows = [found[r.id] for r in records if r.id in found]
    if rows:
        append_jsonl(target, rows)
    return len(rows)


def judgement_file(jdir: Path, bench: str, judge: Judge) -> Path:
    """``judgements/<bench>__<judge>[@<rules fingerprint>].jsonl``: new rules never reuse old verdicts."""
    return jdir / f"{bench}__{slug(judge_identity(judge.name) or judge.name)}.jsonl"


def text_key(*texts: str) -> str:
    """What a cached verdict was computed on: a short hash of the texts its judge read."""
    return short_hash(list(texts))


def fresh_rows(path: Path, want: dict[str, str]) -> list[dict[str, Any]]:
    """The cached rows of ``path`` that still hold: those of ids outside ``want`` ({id: text_key}) and those whose
    ``of`` equals the id's key. Stale rows (their text changed, or written before ``of`` was kept) are removed
    from the file, so each id keeps one verdict."""
    cached = read_jsonl(path)
    fresh = [r for r in cached if str(r["id"]) not in want or r.get("of") == want[str(r["id"])]]
    if len(fresh) < len(cached):
        write_jsonl(path, fresh)
    return fresh


def judge_cached(judge: Judge, rows: Sequence[dict[str, Any]], path: Path) -> dict[str, tuple[str, bool]]:
    """``{id: (label, value)}`` for every row, judging only rows whose verdict on the same prompt and completion
    is not already in ``path`` (chunked, appended). A cached label's value is the judge's reading of it today
    (``judge.positive``), so a changed option such as ``unparsed_is_refusal`` applies to cached labels too."""
    want = {str(r["id"]): text_key(r["prompt"], r["completion"]) for r in rows}
    done = {str(r["id"]): (str(r["label"]), judge.positive(str(r["label"]))) for r in fresh_rows(path, want)}
    todo = [r for r in rows if str(r["id"]) not in done]
    for start in range(0, len(todo), JUDGE_CHUNK):
        chunk = todo[start:start + JUDGE_CHUNK]
        prompts = [r["prompt"] for r in chunk]
        completions = [r["completion"] for r in chunk]
        pairs = judge.judge_with_labels(prompts, completions)
        new = [{"id": str(r["id"]), "label": lab, "value": bool(v), "of": want[str(r["id"])]}
               for r, (lab, v) in zip(chunk, pairs)]
        append_jsonl(path, new)
        done.update({n["id"]: (n["label"], n["value"]) for n in new})
    return {str(r["id"]): done[str(r["id"])] for r in rows}


def refusal_prob_cached(model: Any, tok: Any, records: Sequence[PromptRecord], path: Path, template: str,
                        batch_size: int) -> dict[str, float]:
    """``{id: P_refuse}`` per record (A.5), computing only ids not already in ``path``."""
    done = {str(r["id"]): float(r["refusal_prob"]) for r in read_jsonl(path)}
    todo = [r for r in records if r.id not in done]
    chunk = 32
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        probs = refusal_prob(model, tok, [r.prompt for r in part], template, batch_size=batch_size,
                             prefix_cache=True).tolist()  # each prompt once, the phrases as a trie
        new = [{"id": r.id, "refusal_prob": p} for r, p in zip(part, probs)]
        append_jsonl(path, new)
        done.update({r.id: p for r, p in zip(part, probs)})
    return {r.id: done[r.id] for r in records}


def split_of(rec: PromptRecord, heldout: set[str], xstest_safe: set[str]) -> str:
    """``held-out`` / ``in-distribution`` for XSTest safe prompts, else ``""``."""
    if rec.id in heldout:
        return "held-out"
    return "in-distribution" if rec.id in xstest_safe else ""


def _refusal_prob_metrics(rows: Sequence[dict[str, Any]]) -> list[Metric]:
    out = []
    safe = [r for r in rows if r["label"] == "safe"]
    for split, group in (split_groups(safe).items() if safe else ()):
        out.append(Metric("over-refusal", split, "refusal_prob", mean([r["refusal_prob"] for r in group]), len(group)))
    unsafe = [r for r in rows if r["label"] == "unsafe"]
    if unsafe:
        out.append(Metric("safety", "all", "refusal_prob", mean([r["refusal_prob"] for r in unsafe]), len(unsafe)))
    return out


def run_prompt_benchmark(name: str, records: Sequence[PromptRecord], model: Any, tok: Any, cfg: Any, out: Path,
                         judges: Judges, meta: dict[str, Any],
                         split_ids: tuple[set[str], set[str]],
                         reader: Judge | None = None) -> tuple[list[Metric], dict[str, Any]]:
    """Generate (cached), judge (cached) and summarise one prompt benchmark. ``reader``: the judge whose
    ``has_read`` ends rows early (``dcr.evaluate.suite.reader``; the meta records it)."""
    gen_dir = out / "generations"
    sync_meta(gen_dir, name, meta)
    reused = prefill(gen_dir, name, records, meta)
    rows = generate(model, tok, [{"id": r.id, "prompt": r.prompt} for r in records], gen_dir / f"{name}.jsonl",
                    cfg.max_new_tokens, cfg.batch_size, cfg.template, description=name,
                    reader_done=reader.has_read if reader else None)
    table, metrics, notes = judge_rows(name, records, rows, judges, out, split_ids)
    if cfg.refusal_prob:
        probs = refusal_prob_cached(model, tok, records, out / "judgements" / f"{name}__refusal_prob.jsonl",
                                    cfg.template, cfg.score_batch_size)
        for r in table:
            r["refusal_prob"] = probs[r["id"]]
        metrics += _refusal_prob_metrics(table)
    unsafe = [r for r in table if r["label"] == "unsafe"]
    judged = [r for r in table if "refused" in r and (r["label"] == "safe" or "defended" in r)]
    detail = {"n_safe": len(table) - len(unsafe), "n_unsafe": len(unsafe), "reused_generations": reused,
              "truncated_for_judge": sum(bool(r.get("truncated_for_judge")) for r in table),
              "by_type": by_type(judged) if judges.refusal is not None else {},
              "three_class": three_class(table) if judges.refusal is not None else {}, "notes": notes}
    return metrics, detail


def judge_rows(name: str, records: Sequence[PromptRecord], rows: Sequence[dict[str, Any]], judges: Judges,
               out: Path, split_ids: tuple[set[str], set[str]]) -> tuple[list[dict[str, Any]], list[Metric], list[str]]:
    """(table, metrics, notes) of one prompt benchmark's completions ``rows`` (``{id, prompt, completion}``): each
    row with its record's label, type and XSTest split, judged (verdicts cached under ``out/judgements``), and the
    judged metrics (compliance, defense success, degenerate and disagreement rates). The evaluate stage runs it
    after generating; ``dcr report --rejudge`` runs it on an archive's completions under today's judge rules."""
    labels = {r.id: r for r in records}
    table = [{**row, "label": labels[row["id"]].label, "type": labels[row["id"]].type,
              "split": split_of(labels[row["id"]], *split_ids)} for row in rows]
    notes: list[str] = []
    disagreements = _apply_judges(table, judges, out / "judgements", name)
    return table, _judged_metrics(table, judges, notes) + disagreements, notes


def outcome_of(label: str, refused: bool) -> str:
    """A refusal judge's verdict as an outcome (:func:`dcr.judges.base.outcome`: refusal, degenerate, no verdict
    or compliance); judges disagree when these differ."""
    return outcome(label, refused)


def _apply_judges(table: list[dict[str, Any]], judges: Judges, jdir: Path, name: str) -> list[Metric]:
    """Mark each row ``refused`` / ``judge_label`` (refusal judge) and unsafe rows ``defended`` (safety judge);
    returns the disagreement rate of every other configured judge with the refusal judge (on the outcome:
    refusal, compliance or degenerate, :func:`outcome_of`)."""
    out: list[Metric] = []
    if judges.refusal is not None:
        verdicts = judge_cached(judges.refusal, table, judgement_file(jdir, name, judges.refusal))
        for r in table:
            r["judge_label"], r["refused"] = verdicts[r["id"]]
        for extra in judges.extra:
            other = judge_cached(extra, table, judgement_file(jdir, name, extra))
            flips = [outcome_of(*other[r["id"]]) != outcome_of(r["judge_label"], r["refused"]) for r in table]
            out.append(Metric(kind_of({r["label"] for r in table}), "all", "judge_disagreement", mean(flips),
                              len(flips), f"{judges.refusal.name} vs {extra.name}"))
    unsafe = [r for r in table if r["label"] == "unsafe"]
    if unsafe and judges.safety is judges.refusal:
        for r in unsafe:
            r["defended"] = r["refused"]
    elif unsafe:
        verdicts = judge_cached(judges.safety, unsafe, judgement_file(jdir, name, judges.safety))
        for r in unsafe:
            r["defended"] = verdicts[r["id"]][1]
        if judges.refusal is not None:  # refused vs judged safe: not the same question, but a useful signal
            flips = [r["defended"] != r["refused"] for r in unsafe]
            out.append(Metric("safety", "all", "judge_disagreement", mean(flips), len(flips),
                              f"{judges.refusal.name} vs {judges.safety.name}"))
    return out


def _judged_metrics(table: Sequence[dict[str, Any]], judges: Judges, notes: list[str]) -> list[Metric]:
    safe = [r for r in table if r["label"] == "safe"]
    unsafe = [r for r in table if r["label"] == "unsafe"]
    metrics: list[Metric] = []
    if safe and judges.refusal is None:
        notes.append(f"compliance not measured: judge {judges.safety.name!r} measures safe responses, not "
                     "refusals. Fix: pass a refusal judge (--judge keyword or http:...) and the guard as "
                     "--safety-judge")
    elif safe:
        metrics += safe_metrics(safe, judges.refusal.name)
    if unsafe and judges.refusal is not None:
        metrics += unsafe_metrics(unsafe, judges.refusal.name, judges.safety.name)
    elif unsafe:
        defended = [bool(r["defended"]) for r in unsafe]
        metrics.append(Metric("safety", "all", "defense_success_rate", mean(defended), len(defended),
                              judges.safety.name))
    return metrics
