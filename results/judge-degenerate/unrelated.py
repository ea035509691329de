"""How far archived results move when the keyword judge also reads text unrelated to the prompt (issue 28, item 3).

    python results/judge-degenerate/unrelated.py NAME ARCHIVE... > results/judge-degenerate/unrelated-NAME.md

Each ARCHIVE is a `dcr archive` of a run whose completions were kept. Every never-trained safe-prompt completion
(XSTest held-out, OKTest, CoCoNot contrast, OR-Bench-Hard) the keyword
judge counted as compliance is scored by the reference model of `keyword+unrelated:smollm2-135m`
(`dcr.judges.unrelated`: mean log-probability given the prompt, and PMI per token); the scores are kept in
`results/judge-degenerate/unrelated-scores/NAME/STAGE.jsonl` (a rerun reuses them). Printed: per method and seed,
never-trained compliance under `keyword` and under `keyword+unrelated` (n, rate, Wilson 95 %), the answers that
move, DCR + STL minus STL paired over prompts under each judge, and every moved answer for a reader to check.
Only compliance on safe prompts can move (an unsafe prompt's degenerate answer is no defense under either judge).
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from dcr.data.readers import read_jsonl
from dcr.io import append_jsonl, read_json
from dcr.io import read_jsonl as read_cache
from dcr.judges.unrelated import SCORER, UnrelatedRule, answer_scores
from dcr.report.paired import _groups, _verdicts, evaluations, is_never_trained, summarise_pairs, wilson

HERE = Path(__file__).parent
RULE = UnrelatedRule()


def in_pool(group: str) -> bool:
    """The reproduction rules' never-trained pool: XSTest held-out safe, OKTest, CoCoNot contrast, OR-Bench-Hard."""
    return group == "xstest safe held-out" or is_never_trained(group)


def pool_rows(stage: Path, cfg: dict[str, Any]) -> list[tuple[str, str, str, bool, dict[str, Any]]]:
    """(bench, id, group, keyword compliance, generation row) of every never-trained safe prompt of one evaluate
    stage with a keyword verdict; generations from an archive (gzipped) or a run's own stage directory."""
    out = []
    for bench in cfg.get("benchmarks", []):
        verdicts = _verdicts(stage, bench, cfg.get("judge", "keyword"))
        if not verdicts:  # no refusal verdicts: a general-ability benchmark
            continue
        gen = stage / "generations" / f"{bench}.jsonl"
        rows = {str(r["id"]): r for r in read_jsonl(gen if gen.exists() else gen.with_name(gen.name + ".gz"))}
        out += [(bench, pid, group, not any(verdicts[pid]), rows[pid]) for pid, group in _groups(bench, cfg).items()
                if in_pool(group) and pid in verdicts and pid in rows]
    return out


def scored(pool: list[tuple[str, str, str, bool, dict[str, Any]]], cache: Path,
           scorer: Any) -> dict[tuple[str, str], tuple[float, float]]:
    """{(bench, id): (logprob, pmi)} of every keyword compliance in ``pool`` (:func:`pool_rows`), cached."""
    have = {(r["bench"], r["id"]): (r["logprob"], r["pmi"]) for r in read_cache(cache)} if cache.exists() else {}
    todo = [(bench, pid, row) for bench, pid, _, kw, row in pool if kw and (bench, pid) not in have]
    for lo in range(0, len(todo), 64):
        part = todo[lo:lo + 64]
        if scorer[0] is None:
            from dcr.models import load_model

            scorer[:] = load_model(SCORER, dtype="fp32")
        got = answer_scores(*scorer, [r["prompt"] for _, _, r in part], [r["completion"] for _, _, r in part],
                            RULE.max_tokens, pmi_if_logprob_at_most=RULE.max_logprob)
        got = [(a, None if math.isnan(b) else b) for a, b in got]  # PMI only where logprob <= max_logprob
        append_jsonl(cache, [{"bench": b, "id": p, "logprob": x, "pmi": y} for (b, p, _), (x, y) in zip(part, got)])
        have.update({(b, p): sc for (b, p, _), sc in zip(part, got)})
    return have


def main(name: str, runs: list[Path]) -> None:
    scorer: list[Any] = [None, None]
    outcome: dict[tuple[str, int], dict[str, dict[str, tuple[bool, bool]]]] = {}  # -> judge -> prompt -> (kw, +u)
    moved: list[str] = []
    seen: dict[tuple[str, int], str] = {}  # (method, seed) -> stage name: a second archive's own stage is renamed
    for run in runs:
        for (method, seed), node in sorted(evaluations(read_json(run / "plan.json")).items()):
            stage = run / node["dir"]
            if seen.setdefault((method, seed), stage.name) != stage.name:
                method = f"{method} ({run.name})"
                seen[(method, seed)] = stage.name
            elif (method, seed) in outcome:
                continue  # the same evaluation, shared by two archives
            rows = pool_rows(stage, node["config"])
            scores = scored(rows, HERE / "unrelated-scores" / name / f"{stage.name}.jsonl", scorer)
            pool = {}
            for bench, pid, group, kw, r in rows:
                s = scores.get((bench, pid))
                unrelated = (kw and s is not None and s[1] is not None and RULE.unrelated(*s)
                             and bool(r["completion"].strip()))
                pool[f"{group}/{pid}"] = (kw, kw and not unrelated)
                if unrelated and f"{stage.name}/{pid}" not in moved:
                    moved.append(f"{stage.name}/{pid}")
                    print(f"- {method} s{seed} {bench} {pid} (logprob {s[0]:.2f}, pmi {s[1]:+.2f}): "
                          f"{r['prompt'][:90]!r} -> {r['completion'][:160]!r}", file=sys.stderr)
            outcome[(method, seed)] = pool
    print(f"# keyword vs keyword+unrelated:{SCORER} ({name})\n\nRule: {RULE!r}. Archives: "
          + ", ".join(f"`{r}`" for r in runs) + "\n")
    print("| method | seed | n | compliance, keyword | compliance, keyword+unrelated | moved |")
    print("|---|---|---|---|---|---|")
    for (method, seed), pool in sorted(outcome.items()):
        n, a, b = len(pool), sum(x for x, _ in pool.values()), sum(y for _, y in pool.values())
        la, ha = wilson(a, n)
        lb, hb = wilson(b, n)
        print(f"| {method} | {seed} | {n} | {a / n:.3f} [{la:.3f}, {ha:.3f}] | {b / n:.3f} [{lb:.3f}, {hb:.3f}] "
              f"| {a - b} |")
    for arm in sorted({m for m, _ in outcome if m.startswith("dcr+stl")}):
        for judge, k in (("keyword", 0), ("keyword+unrelated", 1)):
            diffs: dict[str, dict[int, float]] = defaultdict(dict)
            for (method, seed), pool in outcome.items():
                other = outcome.get((arm, seed)) if method == "stl" else None
                for p, v in (pool.items() if other else []):
                    if p in other:
                        diffs[p][seed] = float(other[p][k]) - float(v[k])
            if diffs:
                s = summarise_pairs(dict(diffs))
                seeds = f"; seeds too [{s.seeds_low:+.3f}, {s.seeds_high:+.3f}]" if s.seeds_low is not None else ""
                print(f"\n{arm} minus stl, never-trained compliance, {judge}: {s.mean:+.3f} [{s.low:+.3f}, "
                      f"{s.high:+.3f}] (n {s.prompts} prompts{seeds})")


if __name__ == "__main__":
    main(sys.argv[1], [Path(a) for a in sys.argv[2:]])
