"""General ability from option log-probabilities (MMLU, ARC-Easy/Challenge, OpenBookQA, PIQA) and heldout-nll.

Every option is scored as ``sum log P(option | context)`` in fp32 (``dcr.scoring.shared_context_logprobs``: each
context runs once and its KV cache serves all its options; the sums of ``continuation_logprobs``), on the raw text
without a chat template, as lm-evaluation-harness does; the prediction is the argmax.

- MMLU: lm-eval's ``mmlu`` prompt: "The following are multiple choice questions (with answers) about SUBJECT."
  then the question, the options as ``A. ...`` to ``D. ...`` and ``Answer:``; the options scored are the
  letters `` A`` .. `` D`` (the paper's "probabilities for options A-D"). ``mmlu_shots`` dev examples may precede.
- ARC-Easy / ARC-Challenge: ``Question: ...\\nAnswer:`` then `` OPTION TEXT``; OpenBookQA: the stem then
  `` OPTION TEXT``; PIQA: ``Question: GOAL\\nAnswer:`` then `` SOLUTION``. These also report ``acc_norm``
  (log-likelihood divided by the option's length in characters).
- heldout-nll: mean negative log-likelihood per token of AlpacaEval reference answers given the formatted
  instruction (an offline proxy for a drop in general language modelling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dcr.data import BenchmarkMissing, load_alpaca_eval, readers, subsample
from dcr.dist import is_main, shard_chunks
from dcr.errors import DataError
from dcr.evaluate.metrics import Metric, accuracy, argmax, length_normalised, nll_per_token
from dcr.io import append_jsonl, read_jsonl
from dcr.prompts import adds_special_tokens, format_prompt
from dcr.scoring import continuation_logprobs, shared_context_logprobs

T = TypeVar("T")
GENERAL = ("mmlu", "arc-easy", "arc-challenge", "openbookqa", "piqa")
LETTERS = ("A", "B", "C", "D")
MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice item: the context, the option continuations and the 0-based gold index."""

    id: str
    context: str
    options: tuple[str, ...]
    gold: int
    group: str = ""


def _require(path: Path, name: str, hub: str) -> Path:
    if not path.exists():
        raise BenchmarkMissing(name, f"{path} not found. Fix: copy the data directory (see its README.md) or "
                                     f"obtain {hub} and convert it to that layout")
    return path


def _mmlu_block(row: dict[str, str]) -> str:
    opts = "".join(f"\n{L}. {row[L]}" for L in LETTERS)  # lm-eval does not strip the options
    return f"{row['question'].strip()}{opts}\nAnswer:"


def _mmlu_rows(path: Path) -> list[dict[str, str]]:
    rows = readers.read_csv(path, MMLU_COLUMNS, header=False)
    for i, row in enumerate(rows, start=1):
        if row["answer"].strip() not in LETTERS:
            raise DataError(path, f"answer {row['answer']!r} is not one of A-D", "fix the last column", row=i)
        if not row["question"].strip():
            raise DataError(path, "empty question", "fill it in or remove the row", row=i)
    return rows


def load_mmlu(root: Path, shots: int = 0) -> list[MCItem]:
    """MMLU test items from ``mmlu/test/SUBJECT_test.csv`` (headerless: question, A, B, C, D, answer)."""
    test_dir = _require(root / "mmlu" / "test", "mmlu", "MMLU (hendrycks/test, hub cais/mmlu)")
    files = sorted(test_dir.glob("*_test.csv"))
    if not files:
        raise BenchmarkMissing("mmlu", f"no *_test.csv files in {test_dir}. Fix: re-copy mmlu/test")
    items = []
    for path in files:
        subject = path.name.removesuffix("_test.csv")
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        if shots:
            dev = _require(root / "mmlu" / "dev" / f"{subject}_dev.csv", "mmlu", "the MMLU dev split")
            dev_rows = _mmlu_rows(dev)
            if len(dev_rows) < shots:
                raise DataError(dev, f"{len(dev_rows)} dev question(s), {shots} shots need {shots}",
                                "re-copy the dev file, or use fewer shots")
            head += "".join(f"{_mmlu_block(r)} {r['answer'].strip()}\n\n" for r in dev_rows[:shots])
        for i, row in enumerate(_mmlu_rows(path)):
            items.append(MCItem(f"mmlu-{subject}-{i}", head + _mmlu_block(row), tuple(f" {L}" for L in LETTERS),
                                LETTERS.index(row["answer"].strip()), subject))
    return items


def _choice_rows(path: Path, name: str) -> list[tuple[str, list[str], int]]:
    out = []
    for i, row in enumerate(readers.read_jsonl(path), start=1):
        query = readers.require_str(path, row, "query", i)
        choices, gold = row.get("choices"), row.get("gold")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise DataError(path, "'choices' must be a list of >= 2 non-empty strings", "fix the row", row=i)
        if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
            raise DataError(path, f"'gold' must be an index into choices (0..{len(choices) - 1}), got {gold!r}",
                            "fix the row", row=i)
        out.append((query, choices, gold))
    return out


def load_arc(root: Path, challenge: bool) -> list[MCItem]:
    name = "arc-challenge" if challenge else "arc-easy"
    path = _require(root / "arc" / f"arc_{'challenge' if challenge else 'easy'}_test.jsonl", name,
                    "allenai/ai2_arc")
    return [MCItem(f"{name}-{i}", f"{q}\nAnswer:", tuple(f" {c}" for c in ch), g)
            for i, (q, ch, g) in enumerate(_choice_rows(path, name))]


def load_openbookqa(root: Path) -> list[MCItem]:
    path = _require(root / "openbookqa" / "openbookqa_test.jsonl", "openbookqa", "allenai/openbookqa")
    return [MCItem(f"openbookqa-{i}", q, tuple(f" {c}" for c in ch), g)
            for i, (q, ch, g) in enumerate(_choice_rows(path, "openbookqa"))]


def load_piqa(root: Path) -> list[MCItem]:
    """PIQA validation: ``piqa/valid.jsonl`` (goal, sol1, sol2) aligned with ``piqa/valid-labels.lst`` (0/1)."""
    path = _require(root / "piqa" / "valid.jsonl", "piqa", "ybisk/piqa")
    lab_path = _require(root / "piqa" / "valid-labels.lst", "piqa", "ybisk/piqa labels")
    rows = readers.read_jsonl(path)
    labels = readers.read_lines(lab_path)
    if len(labels) != len(rows):
        raise DataError(lab_path, f"{len(labels)} labels for {len(rows)} rows of {path.name}",
                        "use the labels file that belongs to the same split")
    items = []
    for i, (row, lab) in enumerate(zip(rows, labels), start=1):
        if lab not in ("0", "1"):
            raise DataError(lab_path, f"label {lab!r} is not 0 or 1", "fix the line", row=i)
        goal = readers.require_str(path, row, "goal", i)
        sols = (readers.require_str(path, row, "sol1", i), readers.require_str(path, row, "sol2", i))
        items.append(MCItem(f"piqa-{i - 1}", f"Question: {goal}\nAnswer:", tuple(f" {s}" for s in sols), int(lab)))
    return items


def load_general(name: str, root: Path, shots: int = 0) -> list[MCItem]:
    """The items of a general-ability benchmark; ``BenchmarkMissing`` when its files are absent."""
    if name == "mmlu":
        return load_mmlu(root, shots)
    if name in ("arc-easy", "arc-challenge"):
        return load_arc(root, name == "arc-challenge")
    if name == "openbookqa":
        return load_openbookqa(root)
    if name == "piqa":
        return load_piqa(root)
    raise ValueError(f"not a general-ability benchmark: {name!r} (known: {', '.join(GENERAL)})")


def score_pairs(model: Any, tokenizer: Any, contexts: Sequence[str], continuations: Sequence[str],
                batch_size: int = 8, add_special_tokens: bool = False, shard: bool = False) -> list[float]:
    """``continuation_logprobs`` over pairs sorted by length (less padding), returned in input order. ``shard``:
    under a launch, every rank scores its share of the batches and gets all sums (every rank must call it)."""
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]) + len(continuations[i]))

    def run(idx: list[int]) -> list[float]:
        sums = continuation_logprobs(model, tokenizer, [contexts[i] for i in idx], [continuations[i] for i in idx],
                                     batch_size=batch_size, add_special_tokens=add_special_tokens)
        return [float(v) for v in sums]

    return _in_input_order(run, order, batch_size, shard)


def _in_input_order(run: Callable[[list[int]], list[T]], order: list[int], batch_size: int, shard: bool) -> list[T]:
    """``run`` over the indices in ``order`` (batches of ``batch_size``, shared by the ranks with ``shard``), its
    results back in index order."""
    scored = dict(zip(order, shard_chunks(run, order, batch_size) if shard else run(order)))
    return [scored[i] for i in range(len(order))]  # order is a permutation of the indices


def wants_bos(model: Any) -> bool:
    """Whether raw-text contexts get the tokenizer's BOS: as lm-eval, only for Gemma models."""
    cfg = getattr(model, "config", None)
    return str(getattr(cfg, "model_type", "")).startswith("gemma")


def score_items(model: Any, tokenizer: Any, items: Sequence[MCItem], batch_size: int = 8,
                shard: bool = False) -> list[list[float]]:
    """Per item, the fp32 log-likelihood of each option continuation: ``batch_size`` items per forward, sorted by
    context length (less padding), each context run once for all its options
    (``dcr.scoring.shared_context_logprobs``). ``shard``: as :func:`score_pairs`."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].context))

    def run(idx: list[int]) -> list[list[float]]:
        scored = shared_context_logprobs(model, tokenizer, [items[i].context for i in idx],
                                         [items[i].options for i in idx], wants_bos(model), batch_size)
        return [[float(v) for v in row] for row in scored]

    return _in_input_order(run, order, batch_size, shard)


def mc_metrics(name: str, items: Sequence[MCItem], scores: Sequence[Sequence[float]]) -> list[Metric]:
    """accuracy (and acc_norm except for MMLU's letters) over the scored items."""
    gold = [it.gold for it in items]
    out = [Metric("general", "all", "accuracy", accuracy(scores, gold), len(items))]
    if name != "mmlu":
        lens = [[len(o.strip().encode()) for o in it.options] for it in items]
        out.append(Metric("general", "all", "acc_norm", accuracy(length_normalised(scores, lens), gold), len(items)))
    return out


def group_accuracy(items: Sequence[MCItem], scores: Sequence[Sequence[float]]) -> dict[str, dict[str, float]]:
    """Accuracy per group (MMLU subject), for metrics.json."""
    groups: dict[str, list[bool]] = {}
    for it, s in zip(items, scores):
        groups.setdefault(it.group or "all", []).append(argmax(s) == it.gold)
    return {g: {"n": len(v), "accuracy": sum(v) / len(v)} for g, v in sorted(groups.items())}


def run_general(name: str, model: Any, tokenizer: Any, root: Path, limit: int | None, seed: int, shots: int,
                batch_size: int, cache: Path | None = None, shard: bool = False) -> tuple[list[Metric], dict[str, Any]]:
    """Score a general-ability benchmark; per-item scores are cached in ``cache`` (a JSONL) when given.
    ``shard``: as :func:`score_pairs`; only the main process writes the cache."""
    items = subsample(load_general(name, root, shots), limit, seed)  # type: ignore[arg-type]
    done: dict[str, list[float]] = {}
    if cache is not None:
        done = {r["id"]: r["scores"] for r in read_jsonl(cache)}
    todo = [it for it in items if it.id not in done]
    if todo:
        new = score_items(model, tokenizer, todo, batch_size, shard)
        done.update({it.id: s for it, s in zip(todo, new)})
        if cache is not None and is_main():
            append_jsonl(cache, [{"id": it.id, "scores": s, "gold": it.gold} for it, s in zip(todo, new)])
    scores = [done[it.id] for it in items]
    detail: dict[str, Any] = {"by_group": group_accuracy(items, scores)} if name == "mmlu" else {}
    return mc_metrics(name, items, scores), detail


def heldout_pairs(root: Path | str | None, n: int, seed: int, reference: str = "gpt4") -> list[Any]:
    """The ``n`` seeded AlpacaEval (instruction, reference answer) pairs that heldout-nll scores."""
    return subsample(load_alpaca_eval(root, reference), n, seed)  # type: ignore[arg-type]


def first_tokens(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> tuple[list[str], list[int]]:
    """Each text cut to its first ``max_tokens`` tokens (decoded back to text), and the token count of that text as
    scored (re-tokenised), for per-token averages of ``score_pairs`` sums."""
    answers = [tokenizer.decode(tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens]) for t in texts]
    return answers, [len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers]


def heldout_nll(model: Any, tokenizer: Any, root: Path | None, n: int, seed: int, reference: str = "gpt4",
                max_tokens: int = 256, template: str = "auto", batch_size: int = 8,
                pairs: Sequence[Any] | None = None, shard: bool = False) -> tuple[list[Metric], dict[str, Any]]:
    """Mean NLL per token of ``n`` seeded AlpacaEval reference answers (cut to ``max_tokens``); ``pairs``: those
    answers when the caller already has them (:func:`heldout_pairs`); ``shard``: as :func:`score_pairs`."""
    pairs = heldout_pairs(root, n, seed, reference) if pairs is None else pairs
    contexts = [format_prompt(tokenizer, p.prompt, template) for p in pairs]
    answers, counts = first_tokens(tokenizer, [p.response for p in pairs], max_tokens)
    sums = score_pairs(model, tokenizer, contexts, answers, batch_size, adds_special_tokens(tokenizer, template), shard)
    nll = nll_per_token(sums, counts)
    detail = {"reference": reference, "tokens": sum(counts), "max_tokens": max_tokens}
    return [Metric("general", "all", "nll_per_token", nll, len(pairs))], detail
