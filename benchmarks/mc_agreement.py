"""Multiple-choice scores of the pair-at-a-time path (``score_pairs``, the path before shared-context scoring) and
of ``score_items`` (each context once) on the same seeded items of real benchmarks.

    python benchmarks/mc_agreement.py --model qwen2.5-coder-0.5b --items 48

Prints, per benchmark, the largest |old - new| option log-likelihood and how many items keep their argmax. One
process, one model: only the scoring path differs.
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--items", type=int, default=48, help="seeded items per benchmark")
    ap.add_argument("--benchmark", default="mmlu,arc-easy,piqa")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch", type=int, default=8, help="score_batch_size for both paths")
    args = ap.parse_args()

    import torch

    from dcr.data import subsample
    from dcr.data.registry import data_dir
    from dcr.evaluate.general import load_general, score_items, score_pairs, wants_bos
    from dcr.models import load_model

    torch.set_num_threads(1)
    model, tok = load_model(args.model, dtype=args.dtype, device="cpu")
    print("| benchmark | items | pairs | max abs diff | argmax agreement |\n|---|---:|---:|---:|---:|")
    for name in args.benchmark.split(","):
        items = subsample(load_general(name, data_dir(None)), args.items, 0)
        ctx = [it.context for it in items for _ in it.options]
        flat = score_pairs(model, tok, ctx, [o for it in items for o in it.options], args.batch, wants_bos(model))
        new = score_items(model, tok, items, args.batch)
        old, pos = [], 0
        for it in items:
            old.append(flat[pos:pos + len(it.options)])
            pos += len(it.options)
        diff = max(abs(a - b) for o, m in zip(old, new) for a, b in zip(o, m))
        same = sum(o.index(max(o)) == m.index(max(m)) for o, m in zip(old, new))
        print(f"| {name} | {len(items)} | {len(ctx)} | {diff:.1e} | {same}/{len(items)} |", flush=True)


if __name__ == "__main__":
    main()
