"""Training-side data: HH-RLHF harmful first turns, STL refusal pairs, Alpaca instructions, the XSTest split."""

from __future__ import annotations

import random
import re
from pathlib import Path

from dcr.data import readers
from dcr.data.records import Pair, PromptRecord
from dcr.data.registry import data_dir, hub_columns, hub_dataset, load_benchmark
from dcr.errors import DataError

ALPACA_HUB = "tatsu-lab/alpaca"
_FIRST_TURN = re.compile(r"\n\nHuman:(.*?)\n\nAssistant:", re.S)


def load_hh_harmful(root: str | Path | None = None) -> list[PromptRecord]:
    """Unique first human turns of HH-RLHF harmless-base test (2,178), in file order."""
    path = data_dir(root) / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    seen: dict[str, PromptRecord] = {}
    for i, row in enumerate(readers.read_jsonl(path), start=1):
        text = readers.require_str(path, row, "chosen", i)
        m = _FIRST_TURN.search(text)
        if not m:
            raise DataError(path, "no '\\n\\nHuman: ... \\n\\nAssistant:' first turn in 'chosen'",
                            "the file must be HH-RLHF conversation transcripts", row=i)
        prompt = m.group(1).strip()
        if prompt and prompt not in seen:
            seen[prompt] = PromptRecord(f"hh-{len(seen)}", prompt, "unsafe", "hh-rlhf", "hh-rlhf")
    return list(seen.values())


def load_refusal_pairs(root: str | Path | None = None) -> list[Pair]:
    """Safety-Tuned LLaMAs harmful instructions paired with safe responses (2,483)."""
    path = data_dir(root) / "safety-tuned-llamas" / "safety_only_data_Instructions.json"
    obj = readers.read_json(path)
    if not isinstance(obj, list) or not obj:
        raise DataError(path, "expected a non-empty JSON list of {instruction, input, output}", "re-copy the file")
    out = []
    for i, row in enumerate(obj, start=1):
        ins = readers.require_str(path, row, "instruction", i)
        resp = readers.require_str(path, row, "output", i)
        inp = row.get("input") or ""
        out.append(Pair(f"stl-refusal-{i - 1}", f"{ins}\n{inp}".strip() if inp else ins, resp, "safety-tuned-llamas"))
    return out


def load_alpaca_instructions(root: str | Path | None = None) -> list[PromptRecord]:
    """Alpaca instructions with empty input (31,323), without responses."""
    path = data_dir(root) / "alpaca" / "alpaca_instructions.json.gz"
    obj = readers.read_json(path)
    if not isinstance(obj, list) or not obj:
        raise DataError(path, "expected a non-empty JSON list of {instruction}", "re-copy the file")
    return [PromptRecord(f"alpaca-{i - 1}", readers.require_str(path, row, "instruction", i), "safe", "alpaca",
                         "alpaca") for i, row in enumerate(obj, start=1)]


def load_alpaca_hub() -> list[Pair]:
    """Alpaca's 52,002 instruction (+ input) / output pairs from the hub (``tatsu-lab/alpaca``), in hub order.

    The prompt joins instruction and input as the Safety-Tuned LLaMAs sets do; rows without an instruction or an
    output are left out. Raises ``BenchmarkMissing`` when the hub cannot be reached or the load fails.
    """
    ds = hub_dataset(ALPACA_HUB, "alpaca", "run with network access, or set align general_source: teacher")
    hub_columns(ds, ALPACA_HUB, ("instruction", "input", "output"))
    out = []
    for i, (ins, inp, resp) in enumerate(zip(ds["instruction"], ds["input"], ds["output"])):
        ins, inp, resp = (str(x or "").strip() for x in (ins, inp, resp))
        if ins and resp:
            out.append(Pair(f"alpaca-hub-{i}", f"{ins}\n{inp}" if inp else ins, resp, ALPACA_HUB))
    return out


def load_alpaca_eval(root: str | Path | None = None, reference: str = "gpt4") -> list[Pair]:
    """The 805 AlpacaEval instructions with a reference model's outputs (response quality only).

    A row whose output is the empty string (the reference model gave no answer: 2 rows of ``text_davinci_003``
    upstream) is left out, keeping the other rows' ids; a missing or non-string field is still a DataError.
    """
    path = data_dir(root) / "alpaca-eval" / f"{reference}_outputs.json"
    obj = readers.read_json(path)
    if not isinstance(obj, list) or not obj:
        raise DataError(path, "expected a non-empty JSON list", "re-copy the file")
    return [Pair(f"alpaca-eval-{i - 1}", readers.require_str(path, row, "instruction", i),
                 readers.require_str(path, row, "output", i),
                 readers.optional_str(path, row, "generator", i, reference))
            for i, row in enumerate(obj, start=1) if not (isinstance(row, dict) and row.get("output") == "")]


def xstest_split(heldout_frac: float = 0.2, seed: int = 0, root: str | Path | None = None,
                 label: str = "safe") -> tuple[list[PromptRecord], list[PromptRecord]]:
    """XSTest safe (or, ``label="unsafe"``, unsafe contrast) prompts split into (in-distribution, held-out),
    stratified by type and seeded.

    Refinement and STL-aug train only on the first part; evaluation labels both parts. ``heldout_frac=0`` (the
    paper's setting) holds nothing out: every prompt is in-distribution and the held-out part is empty.
    """
    if not 0.0 <= heldout_frac < 1.0:
        raise ValueError(f"heldout_frac must be in [0, 1), got {heldout_frac}")
    if label not in ("safe", "unsafe"):
        raise ValueError(f"label must be safe or unsafe, got {label!r}")
    safe = load_benchmark(f"xstest-{label}", root)
    by_type: dict[str, list[PromptRecord]] = {}
    for r in safe:
        by_type.setdefault(r.type, []).append(r)
    rng = random.Random(seed)
    held: set[str] = set()
    for _, group in sorted(by_type.items()):
        k = round(len(group) * heldout_frac)
        held.update(r.id for r in rng.sample(group, k))
    return [r for r in safe if r.id not in held], [r for r in safe if r.id in held]
