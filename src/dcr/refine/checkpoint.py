"""Resumable refine training: the trainable weights, AdamW moments, scheduler, RNG and loss rows, every N steps.

A checkpoint is ``OUT/checkpoints/refine.safetensors`` (tensors) with its JSON state in the safetensors
metadata: the step, the loss rows so far, the scheduler state, the optimizer's param groups and a ``stamp``
(the run's config and batches hash). A checkpoint with another stamp is ignored. No pickle is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dcr.io import atomic_dir

FILE = "refine.safetensors"


def save_checkpoint(ckpt_dir: Path, stamp: str, step: int, model: Any, opt: Any, sched: Any,
                    rows: list[dict[str, float]]) -> None:
    """Write the state after ``step`` optimizer steps (atomically: a killed save leaves the previous one)."""
    tensors = {f"param.{n}": p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    state = opt.state_dict()
    for idx, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(value).contiguous()
    tensors["rng.cpu"] = torch.get_rng_state()
    meta = {"stamp": stamp, "step": step, "rows": rows, "sched": sched.state_dict(),
            "param_groups": state["param_groups"]}
    with atomic_dir(ckpt_dir) as tmp:
        save_file(tensors, str(tmp / FILE), metadata={"state": json.dumps(meta)})


def load_checkpoint(ckpt_dir: Path, stamp: str, model: Any, opt: Any, sched: Any) -> tuple[int, list[dict]]:
    """Restore the state saved under ``stamp``; returns (steps done, loss rows). (0, []) when there is none."""
    path = ckpt_dir / FILE
    if not path.is_file():
        return 0, []
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["state"])
        if meta["stamp"] != stamp:
            return 0, []
        tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            if name.startswith("param."):
                params[name.removeprefix("param.")].copy_(value)
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            slots.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    sched.load_state_dict(meta["sched"])
    torch.set_rng_state(tensors["rng.cpu"])
    return int(meta["step"]), list(meta["rows"])
