"""The STL / STL-aug training mix: general pairs + toxic prompts with safe responses (+ XSTest safe prompts).

* safety pairs: Safety-Tuned LLaMAs refusal pairs, minus any prompt ``dcr refine`` used (``exclude_from``);
* general pairs: Alpaca instructions (never the 805 AlpacaEval prompts) answered greedily by a teacher model,
  cached in ``OUT/teacher/`` so an interrupted run resumes, or a user JSONL (``general_file``), or, with
  ``general_source: alpaca-hub``, ``tatsu-lab/alpaca``'s own outputs (the teacher when the hub is unreachable);
* STL-aug: the in-distribution part of ``xstest_split`` only, answered by the teacher.
"""

from __future__ import annotations

import gc
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

from dcr.align.config import AlignConfig
from dcr.data import (
    ALPACA_HUB,
    BenchmarkMissing,
    PromptRecord,
    load_alpaca_eval,
    load_alpaca_hub,
    load_alpaca_instructions,
    load_refusal_pairs,
    readers,
    xstest_split,
)
from dcr.errors import ConfigError, DataError
from dcr.fingerprint import short_hash
from dcr.io import file_lock, read_json, read_jsonl, write_json

log = logging.getLogger("dcr.align")
_SPACE = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    """Case-, whitespace- and end-punctuation-insensitive key used for overlap checks."""
    return _SPACE.sub(" ", text.strip().lower()).strip(" .?!\"'")


def excluded_toxic(exclude_from: str | None) -> set[str]:
    """Normalised ``toxic_prompts`` of a refine output dir's split.json (empty when not given)."""
    if exclude_from is None:
        return set()
    path = Path(exclude_from).expanduser() / "split.json"
    if not path.exists():
        raise DataError(path, "not found", "pass a finished `dcr refine` output directory as exclude_from")
    obj = readers.read_json(path)
    prompts = obj.get("toxic_prompts") if isinstance(obj, dict) else None
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise DataError(path, "field 'toxic_prompts' missing or not a list of strings",
                        "re-run `dcr refine` (it writes split.json with toxic_prompts)")
    return {normalize_prompt(p) for p in prompts}


def split_counts(parts: dict[str, int], limit: int | None) -> dict[str, int]:
    """Scale ``parts`` so they sum to at most ``limit`` (largest-remainder rounding, order kept)."""
    total = sum(parts.values())
    if limit is None or limit >= total or total == 0:
        return dict(parts)
    raw = {k: v * limit / total for k, v in parts.items()}
    out = {k: int(v) for k, v in raw.items()}
    order = sorted(parts, key=lambda k: raw[k] - out[k], reverse=True)
    for k in order[: limit - sum(out.values())]:
        out[k] += 1
    return out


def safety_pairs(cfg: AlignConfig, n: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """``n`` seeded refusal pairs whose prompts refine did not use; stats record what was dropped."""
    pairs = load_refusal_pairs(cfg.data_dir)
    banned = excluded_toxic(cfg.exclude_from)
    kept = [p for p in pairs if normalize_prompt(p.prompt) not in banned]
    dropped = len(pairs) - len(kept)
    if n > len(kept):
        log.warning("asked for %d safety pairs but only %d remain after exclusion; using all", n, len(kept))
        n = len(kept)
    chosen = random.Random(cfg.seed).sample(kept, n) if n else []
    rows = [{"id": p.id, "prompt": p.prompt, "response": p.response, "kind": "safety", "source": p.source,
             "complete": True} for p in chosen]
    return rows, {"safety_available": len(pairs), "safety_excluded_overlap": dropped, "n_safety": len(rows)}


def sample_outside_alpaca_eval(records: list[Any], n: int, data_dir: str | None, seed: int,
                               field_name: str) -> list[Any]:
    """``n`` records (with a ``prompt``) drawn with ``random.Random(seed)``, never one of the 805 AlpacaEval
    prompts (which heldout-nll and refine's retention score). ``field_name`` names the setting in the error."""
    banned = {normalize_prompt(p.prompt) for p in load_alpaca_eval(data_dir)}
    pool = [r for r in records if normalize_prompt(r.prompt) not in banned]
    if n > len(pool):
        raise ConfigError(f"{field_name}={n} but only {len(pool)} Alpaca instructions are available. Fix: lower it")
    return random.Random(seed).sample(pool, n)


def _sample_general(cfg: AlignConfig, records: list[Any], n: int) -> list[Any]:
    """``n`` seeded records (with a ``prompt``), never one of the 805 AlpacaEval prompts."""
    return sample_outside_alpaca_eval(records, n, cfg.data_dir, cfg.seed + 1, "n_general")


def general_prompts(cfg: AlignConfig, n: int) -> list[PromptRecord]:
    """``n`` seeded Alpaca instructions, never one of the 805 AlpacaEval prompts."""
    return _sample_general(cfg, load_alpaca_instructions(cfg.data_dir), n) if n else []


def general_from_hub(cfg: AlignConfig, n: int) -> tuple[list[dict[str, Any]] | None, str]:
    """``n`` seeded ``tatsu-lab/alpaca`` pairs (instruction + input -> the dataset's output), never an AlpacaEval
    prompt; ``(None, reason)`` when the hub cannot be reached or the load fails (the caller falls back)."""
    try:
        pairs = load_alpaca_hub()
    except BenchmarkMissing as exc:
        return None, exc.reason
    return [{"id": p.id, "prompt": p.prompt, "response": p.response, "kind": "general", "source": p.source,
             "complete": True} for p in _sample_general(cfg, pairs, n)], ""


def aug_prompts(cfg: AlignConfig, n: int | None) -> list[PromptRecord]:
    """STL-aug: seemingly toxic XSTest safe prompts from the in-distribution part only."""
    in_dist, _ = xstest_split(cfg.xstest_heldout_frac, cfg.split_seed, cfg.data_dir)
    if n is None or n >= len(in_dist):
        return list(in_dist)
    return random.Random(cfg.seed + 2).sample(in_dist, n)


def general_from_file(path_str: str, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` seeded pairs of a user JSONL (string fields prompt and response; optional id)."""
    path = Path(path_str).expanduser()
    out = []
    for i, row in enumerate(readers.read_jsonl(path), start=1):
        prompt, response = readers.require_str(path, row, "prompt", i), readers.require_str(path, row, "response", i)
        ident = row.get("id", f"general-{i - 1}")
        if isinstance(ident, bool) or not isinstance(ident, str | int) or not str(ident).strip():
            raise DataError(path, f"field 'id' is {ident!r}", "give each row a string or integer id, or none",
                            row=i)
        out.append({"id": str(ident), "prompt": prompt, "response": response, "kind": "general", "source": str(path),
                    "complete": True})
    if n > len(out):
        raise ConfigError(f"n_general={n} but {path} has only {len(out)} rows. Fix: lower n_general")
    return random.Random(seed + 1).sample(out, n)


def _teacher_ref(cfg: AlignConfig) -> str:
    from dcr.models import resolve_model

    return resolve_model(cfg.model if cfg.teacher == "self" else cfg.teacher)


def teacher_meta(cfg: AlignConfig) -> dict[str, Any]:
    """Everything that changes a teacher answer besides the prompt: a shared cache is keyed by its hash."""
    from dcr.fingerprint import model_fingerprint
    from dcr.models import pick_device, pick_dtype

    ref, device = _teacher_ref(cfg), pick_device(cfg.device)
    return {"teacher": cfg.teacher, "resolved": ref, "model_key": model_fingerprint(ref),
            "max_new_tokens": cfg.teacher_max_new_tokens, "template": cfg.template,
            "batch_size": cfg.teacher_batch_size, "dtype": str(pick_dtype(cfg.dtype, device)),
            "device": device.split(":")[0]}


def teacher_answers(cfg: AlignConfig, records: dict[str, list[PromptRecord]], out_dir: Path) -> dict[str, Any]:
    """Answer each group of prompts greedily with the teacher, cached (resumable) in ``<cache>/<group>.jsonl``.

    The cache is ``OUT/teacher/`` or, with ``teacher_cache``, ``<teacher_cache>/<hash of teacher_meta>/``,
    shared by every align stage with the same teacher and settings (the generations' batch plan makes a cached
    answer the one a fresh run would give). Returns ``{group: [row, ...], "teacher": {...}}``.
    """
    meta = teacher_meta(cfg)
    if cfg.teacher_cache:
        tdir = Path(cfg.teacher_cache).expanduser() / short_hash(meta)
    else:
        tdir = out_dir / "teacher"
        if (tdir / "meta.json").exists() and read_json(tdir / "meta.json") != meta:
            shutil.rmtree(tdir)  # made by another teacher or other settings
    tdir.mkdir(parents=True, exist_ok=True)
    with file_lock(tdir / ".lock"):  # a second process waits, then reuses these answers
        write_json(tdir / "meta.json", meta)
        done = {g: {str(r["id"]) for r in read_jsonl(tdir / f"{g}.jsonl")} for g in records}
        need = any(r.id not in done[g] for g, recs in records.items() for r in recs)
        out: dict[str, Any] = {"teacher": {**meta, "cache": str(tdir)}}
        if not records or not need:
            log.info("teacher answers reused from %s", tdir)
            for g, recs in records.items():
                out[g] = _teacher_rows(read_jsonl(tdir / f"{g}.jsonl"), recs, g, cfg, None)
            return out
        from dcr.generate import generate
        from dcr.models import load_model

        log.info("teacher %s (%s) answering %s", cfg.teacher, meta["resolved"], {g: len(r) for g, r in records.items()})
        model, tok = load_model(meta["resolved"], dtype=cfg.dtype, device=cfg.device)
        for g, recs in records.items():
            gen = generate(model, tok, recs, tdir / f"{g}.jsonl", max_new_tokens=cfg.teacher_max_new_tokens,
                           batch_size=cfg.teacher_batch_size, template=cfg.template, description=f"teacher {g}")
            out[g] = _teacher_rows(gen, recs, g, cfg, tok)
    del model
    gc.collect()
    return out


def _teacher_rows(gen: list[dict[str, Any]], recs: list[PromptRecord], group: str, cfg: AlignConfig,
                  tok: Any) -> list[dict[str, Any]]:
    """Training rows from teacher generations: empty answers dropped, truncated ones marked incomplete."""
    if tok is None:
        from dcr.models import load_tokenizer

        tok = load_tokenizer(_teacher_ref(cfg))
    by_id = {str(r["id"]): r for r in gen}
    rows = []
    for rec in recs:
        text = str(by_id[rec.id]["completion"]).strip()
        if not text:
            continue
        n_tok = len(tok(text, add_special_tokens=False)["input_ids"])
        rows.append({"id": rec.id, "prompt": rec.prompt, "response": text, "kind": group, "source": rec.source,
                     "complete": n_tok < cfg.teacher_max_new_tokens - 1})
    return rows


def build_mix(cfg: AlignConfig, out_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The shuffled training rows and stats (counts, exclusions, teacher) for the manifest."""
    n_aug_avail = len(aug_prompts(cfg, cfg.n_aug)) if cfg.method == "stl-aug" else 0
    counts = split_counts({"general": cfg.n_general, "safety": cfg.n_safety, "aug": n_aug_avail}, cfg.limit)
    safety, stats = safety_pairs(cfg, counts["safety"])
    to_answer: dict[str, list[PromptRecord]] = {}
    general: list[dict[str, Any]] | None = None
    source, fallback = cfg.general_file or f"teacher:{cfg.teacher}", ""
    if cfg.general_file:
        general = general_from_file(cfg.general_file, counts["general"], cfg.seed)
    elif counts["general"] and cfg.general_source == "alpaca-hub":
        general, fallback = general_from_hub(cfg, counts["general"])
        if general is not None:
            source = ALPACA_HUB
        else:
            log.warning("general_source alpaca-hub: %s. FALLING BACK to teacher answers (%s) for the %d general "
                        "pairs; the manifest records general_source=%s", fallback, cfg.teacher, counts["general"],
                        source)
    if general is None and counts["general"]:
        to_answer["general"] = general_prompts(cfg, counts["general"])
    if counts["aug"]:
        to_answer["aug"] = aug_prompts(cfg, counts["aug"])
    answered = teacher_answers(cfg, to_answer, out_dir) if to_answer else {}
    general = general or answered.get("general", [])
    aug = answered.get("aug", [])
    rows = general + safety + aug
    random.Random(cfg.seed + 3).shuffle(rows)
    stats.update({"n_general": len(general), "n_aug": len(aug), "n_total": len(rows), "general_source": source,
                  **({"general_source_fallback": f"alpaca-hub unavailable: {fallback}"} if fallback else {}),
                  "teacher": answered.get("teacher"), "incomplete_answers": sum(not r["complete"] for r in rows)})
    return rows, stats
