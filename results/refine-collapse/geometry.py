"""Geometry of the pooled layer-l features that refine's Circle Loss compares (issue 28). Run from the repo root:

    python results/refine-collapse/geometry.py MODEL LAYER      # e.g. qwen2.5-coder-0.5b 11

For 64 training prompts per class (XSTest safe, in-distribution; HH-RLHF toxic), prints for last-token and mean
pooling: the share of the squared feature norm held by the five largest dimensions, and the mean cosine within
each class and across the classes, raw and centred on the mean of all 128 features.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from dcr.models import load_model
from dcr.refine.config import RefineConfig
from dcr.refine.data import build_data
from dcr.refine.features import encode_prompts, layer_forward, pool


def features(model: object, tok: object, prompts: list[str], layer: int, how: str) -> torch.Tensor:
    out = []
    for s in range(0, len(prompts), 16):
        batch = encode_prompts(tok, prompts[s:s + 16], "auto", 128)
        with torch.no_grad():
            hidden, _ = layer_forward(model, batch["input_ids"], batch["attention_mask"], layer)
        out.append(pool(hidden.float(), batch["attention_mask"], how))
    return torch.cat(out)


def cosine(u: torch.Tensor, v: torch.Tensor) -> float:
    return float((F.normalize(u, dim=-1) @ F.normalize(v, dim=-1).T).mean())


def main(name: str, layer: int, n: int = 64) -> None:
    cfg = RefineConfig(model=name)
    data = build_data(cfg.data_dir, 0.2, 0, 0, 2.0, None, cfg.eval_toxic)
    model, tok = load_model(name, dtype="bf16")
    safe = [r.prompt for r in data.seemingly[:n]]
    toxic = [r.prompt for r in data.toxic[:n]]
    for how in ("last", "mean"):
        a, b = features(model, tok, safe, layer, how), features(model, tok, toxic, layer, how)
        x = torch.cat([a, b])
        sq = (x ** 2).mean(0)
        top = sq.topk(5)
        print(f"{how}: feature norm {float(x.norm(dim=-1).mean()):.1f}; top-5 dims {top.indices.tolist()} hold "
              f"{float(top.values.sum() / sq.sum()):.3f} of the squared norm")
        for label, mu in (("raw", torch.zeros_like(x[0])), ("centred", x.mean(0))):
            print(f"{how} {label}: within seemingly toxic {cosine(a - mu, a - mu):.3f}, within toxic "
                  f"{cosine(b - mu, b - mu):.3f}, across {cosine(a - mu, b - mu):.3f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
