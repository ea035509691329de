"""Shared pieces of the benchmark scripts: the matmul peak in the compute dtype, peak RSS, and ``--compare REV``.

``--compare REV`` runs the same script against another git revision of dcr in the same invocation: a temporary
``git worktree`` of REV is made, and the script (this checkout's file) is run in child processes alternately
with ``PYTHONPATH=<worktree>/src`` (old) and this checkout's ``src`` (new), ``--rounds`` times each, A B A B.
The ratio new/old is taken pair by pair and its median printed, so a machine whose speed drifts during the
run still gives a fair ratio. The script must only use dcr APIs that exist in both revisions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# the published Qwen2.5 configs (hidden, intermediate, layers, heads, kv heads, vocab, tied embeddings), for
# random-weight models of paper size (bench_refine_memory.py, gpu_check.py)
QWEN_SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}


def matmul_peak_tflops(threads: int, size: int = 2048, seconds: float = 2.0) -> float:
    """Sustained matmul TFLOP/s of this CPU with ``threads`` threads (a plain torch.matmul loop), in the dtype
    that ``dtype: auto`` computes in here: bf16 on a CPU with AMX/avx512_bf16, else fp32 (where a bf16 matmul
    can be several times slower than fp32, so a bf16 peak would be the wrong yardstick)."""
    import torch

    from dcr.models import pick_dtype

    torch.set_num_threads(threads)
    dtype = pick_dtype("auto", "cpu")
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * size**3 * n / (time.perf_counter() - start) / 1e12


def matmul_flops_per_token(model: Any, blocks: int | None = None) -> int:
    """Forward matmul FLOPs per token: 2 x (block parameters + LM head); ``blocks`` counts only the first N
    decoder blocks and no LM head (refine's truncated forward). Embedding lookups and attention are left out."""
    from dcr.models import get_layers

    layers = list(get_layers(model))[: blocks if blocks is not None else None]
    n = sum(p.numel() for layer in layers for p in layer.parameters())
    if blocks is None:
        n += model.get_output_embeddings().weight.numel()
    return 2 * n


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", action="store_true", help="print one JSON object (used by --compare)")
    ap.add_argument("--compare", metavar="REV", help="also run against git revision REV and print ratios")
    ap.add_argument("--rounds", type=int, default=3, help="--compare: runs of each revision, alternating")


KEYS = ("tokens_per_s", "prompts_per_s", "pct_of_matmul_peak", "peak_rss_mb")


def run_benchmark(args: argparse.Namespace, measure: Any, title: str, columns: dict[str, str]) -> None:
    """The shared ``main`` body: ``--compare`` (ratios against another revision), ``--json`` (one object, for
    ``--compare``'s children) or a one-row markdown table of ``columns`` (result key -> header)."""
    if args.compare:
        compare(args.compare, sys.argv[1:], args.rounds, KEYS)
        return
    res = measure(args)
    if args.json:
        print(json.dumps(res))
        return
    print(f"{title}\n")
    print("| " + " | ".join(columns.values()) + " |\n|" + "---:|" * len(columns))
    print("| " + " | ".join(f"{res[k]:.1f}" if isinstance(res[k], float) else str(res[k]) for k in columns) + " |")


def _child(src: Path, argv: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    script = str(Path(sys.argv[0]).resolve())
    proc = subprocess.run([sys.executable, script, *argv, "--json"], capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"benchmark failed against {src}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(rev: str, argv: list[str], rounds: int, keys: tuple[str, ...]) -> None:
    """Run this script against ``rev`` and the working tree alternately; print medians and new/old ratios."""
    argv = [a for i, a in enumerate(argv) if a != "--compare" and (i == 0 or argv[i - 1] != "--compare")]
    with tempfile.TemporaryDirectory(prefix="dcr-bench-") as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old_tree), rev], check=True,
                       capture_output=True)
        try:
            got = subprocess.run([sys.executable, "-c", "import dcr; print(dcr.__file__)"], capture_output=True,
                                 text=True, env={**os.environ, "PYTHONPATH": str(old_tree / "src")}).stdout.strip()
            if not got.startswith(str(old_tree)):
                sys.exit(f"--compare: the old revision's dcr is not the one imported ({got})")
            pairs = [(_child(old_tree / "src", argv), _child(REPO / "src", argv)) for _ in range(rounds)]
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_tree)],
                           capture_output=True)
    print(f"\n{rev} (old) vs working tree (new), {rounds} alternating rounds each, medians:\n")
    print("| figure | old | new | new / old (median of pairs) |\n|---|---:|---:|---:|")
    for key in (k for k in keys if k in pairs[0][0] and k in pairs[0][1]):
        old = [p[0][key] for p in pairs]
        new = [p[1][key] for p in pairs]
        ratio = statistics.median(n / o for o, n in zip(old, new) if o)
        print(f"| {key} | {statistics.median(old):.1f} | {statistics.median(new):.1f} | {ratio:.2f}x |")
    if "completions" in pairs[0][0] and "completions" in pairs[0][1]:
        verdict_agreement(pairs[0][0]["completions"], pairs[0][1]["completions"])


def verdict_agreement(old: dict[str, list[str]], new: dict[str, list[str]]) -> None:
    """Print how many {id: [prompt, completion]} of two revisions the working tree's keyword judge labels alike
    (one judge for both: a judge change between the revisions is not a generation change)."""
    from dcr.judges import get_judge

    judge, ids = get_judge("keyword"), sorted(old)
    a = judge.labels([old[i][0] for i in ids], [old[i][1] for i in ids])
    b = judge.labels([new[i][0] for i in ids], [new[i][1] for i in ids])
    flips: dict[str, int] = {}
    for x, y in zip(a, b):
        if x != y:
            flips[f"{x} -> {y}"] = flips.get(f"{x} -> {y}", 0) + 1
    same_text = sum(old[i][1] == new[i][1] for i in ids)
    print(f"\nkeyword verdicts (round 1, this tree's judge): {len(ids) - sum(flips.values())} of {len(ids)} equal; "
          f"changed: {flips or 'none'}; completions equal: {same_text}")
