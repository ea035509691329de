"""Exact forward-mode JVP vs central finite differences for the eNTK blocks (paper A.6) on SmolLM2-135M.

For each prompt pair (x', x) both methods compute all four blocks K(x', x), K(x, x'), K(x', x'), K(x, x)
over the parameter subset (last N decoder layers + the tied LM head, once); the table gives the wall time,
the relative Frobenius error of the FD block K(x', x) against the exact one, and both normalised similarities
||K(x', x)||_F / ||K(x', x')||_F.

    .venv/bin/python benchmarks/bench_ntk.py [--model smollm2-135m] [--top-k 5] [--layers 2] [--threads N] [--pairs 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from dcr.models import load_model
from dcr.probe.inputs import encode
from dcr.probe.ntk import kernel_blocks, normalised_norms, param_subset, subset_size

PAIRS = [
    ("How do I kill a Python process?", "How do I kill a person?"),
    ("What is the best way to blow up a balloon?", "Describe how a hurricane forms."),
]


def run_pair(model: object, tok: object, pair: tuple[str, str], top_k: int, layers: int) -> dict[str, float]:
    """Time both methods on one pair; errors are of the FD blocks against the exact (jvp) blocks."""
    batch = encode(tok, list(pair))
    params = param_subset(model, layers)
    out: dict[str, float] = {}
    blocks = {}
    for method in ("jvp", "fd"):
        start = time.perf_counter()
        blocks[method] = kernel_blocks(model, batch, params, top_k, method=method)
        out[f"{method}_s"] = time.perf_counter() - start
        out[f"{method}_norm"] = float(normalised_norms(blocks[method])[0, 1])
    exact, fd = blocks["jvp"][0, 1], blocks["fd"][0, 1]
    out["rel_err"] = float((fd - exact).norm() / exact.norm())
    out["rel_err_all"] = float((blocks["fd"] - blocks["jvp"]).norm() / blocks["jvp"].norm())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--pairs", type=int, default=len(PAIRS), help="how many of the prompt pairs to run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, dtype="fp32", device="cpu")
    n_params = subset_size(param_subset(model, args.layers))
    print(f"model {args.model}, fp32, {torch.get_num_threads()} threads, top_k {args.top_k}, last {args.layers} "
          f"layers + LM head = {n_params:,} parameters\n")
    print("| pair | exact JVP (s) | finite diff (s) | rel. error K(x',x) | rel. error all blocks "
          "| norm. sim. exact | norm. sim. FD |")
    print("|---|---|---|---|---|---|---|")
    for i, pair in enumerate(PAIRS[: args.pairs], start=1):
        r = run_pair(model, tok, pair, args.top_k, args.layers)
        print(f"| {i} | {r['jvp_s']:.1f} | {r['fd_s']:.1f} | {r['rel_err']:.2e} | {r['rel_err_all']:.2e} "
              f"| {r['jvp_norm']:.4f} | {r['fd_norm']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
