"""What refine must preserve: the model's ability to write, measured before and after training (issue 28).

Circle Loss moves the features at layer l, and the frozen blocks above l decode from them. A refinement can
improve its own metric while the model stops writing: on Qwen2.5-Coder-0.5B at the middle block, held-out
separability rose while the answers turned into loops and fences, and the keyword judge counted them as
compliance. The NLL regulariser does not guard against it: it is computed on the contrastive prompts, not on
answers. So the stage scores, before and after training, with the model as it trains (bf16 autocast where
training uses it):

- ``nll_per_token``: the mean per-token NLL of ``retention_n`` seeded AlpacaEval reference answers given their
  instructions (the same measure as ``dcr evaluate --benchmarks heldout-nll``): ordinary responses that
  neither training term sees;
- ``retention.jsonl``: greedy answers to the first ``retention_generations`` of those instructions, before and
  after, for a reader (also written to the stage log when the check fails, since a failed stage keeps only its
  log and manifest).

A rise of the NLL above ``retention_max_rise`` nats per token fails the stage (``retention_action: fail``, so no
DCR + STL number is computed on a model that cannot write) or is logged and recorded in metrics.json
(``warn``). These fields only measure: they are not part of the stage key.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from dcr.errors import DcrError
from dcr.io import write_jsonl
from dcr.refine.config import MAX_ANSWER_DROP

log = logging.getLogger("dcr.refine")
RETENTION_FILE = "retention.jsonl"


def measure(model: Any, tok: Any, cfg: Any, autocast: torch.dtype | None) -> dict[str, Any]:
    """``{"nll_per_token", "n", "tokens", "generations": [{id, prompt, completion}]}`` of the model as it is."""
    from dcr.evaluate.general import heldout_nll, heldout_pairs
    from dcr.generate import generate_texts

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device.type
    ctx = torch.autocast(device, dtype=autocast) if autocast is not None else nullcontext()
    scored = heldout_pairs(cfg.data_dir, cfg.retention_n, cfg.seed)
    pairs = scored[:cfg.retention_generations]
    with torch.no_grad(), ctx:
        metrics, detail = heldout_nll(model, tok, None, cfg.retention_n, cfg.seed, template=cfg.template,
                                      batch_size=cfg.eval_batch_size, pairs=scored)
        texts = generate_texts(model, tok, [p.prompt for p in pairs], cfg.retention_max_new_tokens,
                               cfg.template) if pairs else []
    model.train(was_training)
    return {"nll_per_token": metrics[0].value, "n": metrics[0].n, "tokens": detail["tokens"],
            "generations": [{"id": p.id, "prompt": p.prompt, "completion": t} for p, t in zip(pairs, texts)]}


def answer_labels(generations: list[dict[str, Any]]) -> dict[str, int]:
    """How the keyword judge reads the greedy answers: ``{label: count}`` (compliance, refusal, partial_refusal,
    empty, degenerate). A refinement can keep the NLL of reference answers while the model starts to refuse or
    to say nothing on ordinary instructions (Qwen2.5-Coder-1.5B at lr 1e-5: results/refine-collapse)."""
    from collections import Counter

    from dcr.judges.keyword import KeywordJudge

    labels = KeywordJudge().labels([g["prompt"] for g in generations], [g["completion"] for g in generations])
    return dict(sorted(Counter(labels).items()))


def answer_drop(r: dict[str, Any]) -> float:
    """The fall in the share of complying greedy answers, before -> after, of a retention summary (0 without
    answers)."""
    n = sum(r.get("answers_before", {}).values())
    return (r["answers_before"].get("compliance", 0) - r["answers_after"].get("compliance", 0)) / n if n else 0.0


def answers_kept(r: dict[str, Any]) -> bool:
    """Whether the greedy answers' compliance fell by at most ``max_answer_drop`` (the field's default for summaries
    written before it was recorded)."""
    return answer_drop(r) <= r.get("max_answer_drop", MAX_ANSWER_DROP)


def answers_text(r: dict[str, Any]) -> str:
    """The greedy answers' labels before -> after, in words (the stage's warning and the report's)."""
    n = sum(r.get("answers_before", {}).values())
    return (f"of {n} greedy answers to ordinary instructions, {r['answers_before'].get('compliance', 0)} complied "
            f"before and {r['answers_after'].get('compliance', 0)} after ({r['answers_before']} -> "
            f"{r['answers_after']}; a drop of {answer_drop(r):.2f} > retention_max_answer_drop "
            f"{r.get('max_answer_drop', MAX_ANSWER_DROP)})")


def verdict(before: dict[str, Any], after: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """The summary kept in metrics.json (the NLL before/after and how the judge reads the greedy answers before
    and after); logs a warning, or raises (``retention_action: fail``), when the NLL rose above
    ``retention_max_rise``. Answers that stop complying (``retention_max_answer_drop``) are warned about, never
    a reason to fail."""
    rise = after["nll_per_token"] - before["nll_per_token"]
    ok = rise <= cfg.retention_max_rise
    out = {"nll_before": before["nll_per_token"], "nll_after": after["nll_per_token"], "nll_rise": rise,
           "max_rise": cfg.retention_max_rise, "ok": ok, "n": after["n"], "tokens": after["tokens"],
           "action": cfg.retention_action, "answers_before": answer_labels(before["generations"]),
           "answers_after": answer_labels(after["generations"]), "max_answer_drop": cfg.retention_max_answer_drop}
    out["answers_ok"] = answers_kept(out)
    log.info("retention: greedy answers before %s, after %s", out["answers_before"], out["answers_after"])
    if not out["answers_ok"]:
        log.warning("refine kept the NLL but the model answers fewer ordinary instructions: %s", answers_text(out))
    if not ok:
        for b, a in zip(before["generations"], after["generations"]):  # stage.log survives a failed stage
            log.warning("retention %s %r\n  before: %r\n  after:  %r", b["id"], b["prompt"][:120],
                        b["completion"][:200], a["completion"][:200])
        msg = (f"refine did not preserve the model's language: {rise_text(out)}; greedy answers before and after "
               "are in the stage log")
        if cfg.retention_action == "fail":
            raise DcrError(msg + ". Fix: a lower lr, a deeper layer, fewer trainable blocks (--lora) or fewer "
                           "epochs; or set refine.retention_action: warn to keep the model anyway")
        log.warning(msg)
    return out


def rise_text(r: dict[str, Any]) -> str:
    """The NLL rise of a retention summary (:func:`verdict`'s output, metrics.json ``retention``) in words; the
    stage's error or warning and the report's warning (``dcr.report.retention``) both say it."""
    return (f"the NLL of {r['n']} held-out AlpacaEval reference answers rose {r['nll_before']:.3f} -> "
            f"{r['nll_after']:.3f} nats per token (+{r['nll_rise']:.3f} > retention_max_rise {r['max_rise']})")


def write_generations(out: Path, before: dict[str, Any], after: dict[str, Any]) -> None:
    """``retention.jsonl``: one row per prompt with the greedy answer before and after training."""
    rows = [{"id": b["id"], "prompt": b["prompt"], "before": b["completion"], "after": a["completion"]}
            for b, a in zip(before["generations"], after["generations"])]
    write_jsonl(out / RETENTION_FILE, rows)
