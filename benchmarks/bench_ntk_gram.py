"""The eNTK probe at the paper's size, and the Gram method against exact JVPs and finite differences.

    python benchmarks/bench_ntk_gram.py --check 2      # 2 prompts per group: gram vs jvp vs fd (accuracy, time)
    python benchmarks/bench_ntk_gram.py --full 25      # the paper's 25 per group with the default method (gram)

``--check`` computes all ``[N, N, k, k]`` blocks with the three methods on the same prompts and prints each
method's wall time and its relative Frobenius error against exact ``jvp``, plus the largest difference of the
normalised similarities. ``--full`` times ``dcr.probe.groups.model_group_matrix`` (what ``dcr probe ntk`` runs)
and prints the group matrix. SmolLM2-135M, last 2 layers + the tied LM head, top-k 5, fp32.
"""

from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import torch

from dcr.models import load_model, num_layers
from dcr.probe.gram import gram_blocks
from dcr.probe.groups import model_group_matrix
from dcr.probe.inputs import encode, load_groups
from dcr.probe.ntk import kernel_blocks, normalised_norms, param_subset


def check(model: object, tok: object, n: int, top_k: int, layers: int) -> None:
    records = load_groups(n, 0, None)
    batch = encode(tok, [r.prompt for g in records.values() for r in g])
    params = param_subset(model, min(layers, num_layers(model)))
    got: dict[str, tuple[torch.Tensor, float]] = {}
    for method in ("gram", "jvp", "fd"):
        start = time.perf_counter()
        blocks = gram_blocks(model, batch, params, top_k)[0] if method == "gram" else \
            kernel_blocks(model, batch, params, top_k, method=method)
        got[method] = (blocks, time.perf_counter() - start)
    exact = got["jvp"][0]
    print(f"{batch['input_ids'].shape[0]} prompts, top-k {top_k}, last {layers} layers + head\n")
    print("| method | wall s | rel. error vs jvp | max abs diff of normalised similarity |\n|---|---:|---:|---:|")
    for method, (blocks, secs) in got.items():
        err = float((blocks - exact).norm() / exact.norm())
        diff = float((normalised_norms(blocks) - normalised_norms(exact)).abs().max())
        print(f"| {method} | {secs:.1f} | {err:.2e} | {diff:.2e} |")


def full(model: object, tok: object, n: int, top_k: int, layers: int) -> None:
    cfg = SimpleNamespace(template="auto", max_length=256, ntk_layers=layers, include_head=True, top_k=top_k,
                          method="gram", fd_eps=1e-3, fd_unit_step=False, batch_size=32)
    start = time.perf_counter()
    res = model_group_matrix(model, tok, load_groups(n, 0, None), cfg, log=lambda s: None)
    print(f"{3 * n} prompts ({n} per group), gram: {time.perf_counter() - start:.0f} s, gradients stored in "
          f"{res['gradient_storage']}; group matrix (rows x', cols x; {res['order']}):")
    print([[round(v, 3) for v in row] for row in res["matrix"]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--check", type=int, default=0, help="prompts per group for the three-method check")
    ap.add_argument("--full", type=int, default=0, help="prompts per group for the timed default run")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, dtype="fp32", device="cpu")
    if args.check:
        check(model, tok, args.check, args.top_k, args.layers)
    if args.full:
        full(model, tok, args.full, args.top_k, args.layers)


if __name__ == "__main__":
    main()
