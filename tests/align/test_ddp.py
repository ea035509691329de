"""Data-parallel align: torchrun with 2 CPU processes (gloo) and micro-batch B equals 1 process with 2B."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dcr.align import AlignConfig, align

ARGS = dict(n_general=8, n_safety=8, epochs=2, grad_accum=1, max_length=96, lr=5e-3, track_every=0, save_every=2,
            dtype="fp32", lora_dropout=0.0, teacher_max_new_tokens=4)


def _losses(out: Path) -> list[float]:
    with open(out / "train_log.csv", newline="") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_process_ddp_matches_one_process(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    gen = tmp_path / "general.jsonl"
    gen.write_text("".join(json.dumps({"prompt": f"add {i} and 1", "response": f"{i + 1}"}) + "\n" for i in range(8)))
    one = align(AlignConfig(model=str(tiny_dir), data_dir=str(data_dir), general_file=str(gen), micro_batch=4,
                            **ARGS), tmp_path / "one")
    sets = [f"--set={k}={v}" for k, v in {**ARGS, "micro_batch": 2, "general_file": gen}.items()]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "dcr.cli", "align",
           "--model", str(tiny_dir), "--data-dir", str(data_dir), "--out", str(tmp_path / "two"), "--quiet", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = tmp_path / "two"
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["summary"]["world_size"] == 2
    assert manifest["summary"]["effective_batch"] == 4
    assert _losses(two) == pytest.approx(_losses(one), abs=1e-4)  # same global batches, same mean loss
    a = load_file(str(one / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(two / "adapter" / "adapter_model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
