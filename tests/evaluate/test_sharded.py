"""Sharded evaluation: torchrun with 2 CPU processes gives the same generations and metrics as one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dcr.evaluate import EvaluateConfig, evaluate
from dcr.io import read_jsonl

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed")
def test_two_process_generations_and_scores_equal_one_process(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                                               one_torch_thread: None) -> None:
    """At one thread per process, 2 processes give one process's completions, option scores (byte for byte) and
    metrics: the generation batches and the scoring batches (ARC-Easy, heldout-nll) are each split between them."""
    benches = ["xstest-safe", "harmfulq", "arc-easy", "heldout-nll"]
    kw = dict(limit=10, batch_size=3, score_batch_size=3, nll_n=10, max_new_tokens=6, dtype="fp32",
              refusal_prob=False)
    one = evaluate(EvaluateConfig(model=str(tiny_dir), data_dir=str(data_dir), benchmarks=benches, **kw),
                   tmp_path / "one")
    cmd = [TORCHRUN, "--nproc_per_node", "2", "--master_port", "29518", "-m", "dcr.cli", "evaluate",
           "--model", str(tiny_dir), "--data-dir", str(data_dir), "--out", str(tmp_path / "two"), "--quiet",
           "--benchmarks", ",".join(benches), *[f"--set={k}={v}" for k, v in kw.items()]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = tmp_path / "two"
    for bench in ("xstest-safe", "harmfulq"):
        a = {r["id"]: r["completion"] for r in read_jsonl(one / "generations" / f"{bench}.jsonl")}
        b = {r["id"]: r["completion"] for r in read_jsonl(two / "generations" / f"{bench}.jsonl")}
        assert a == b and len(a) == 10  # 4 planned batches of 3, 2 per rank: every row once
    scores = one / "scores" / "arc-easy.shots0.jsonl"
    assert len(read_jsonl(scores)) == 10  # 4 scoring batches of 3 (the last short), 2 per rank
    assert (two / "scores" / "arc-easy.shots0.jsonl").read_bytes() == scores.read_bytes()
    log = (two / "stage.log").read_text()
    assert "arc-easy: scored by 2 processes" in log and "heldout-nll: scored by 2 processes" in log
    ma = json.loads((one / "metrics.json").read_text())["benchmarks"]
    mb = json.loads((two / "metrics.json").read_text())["benchmarks"]
    assert set(ma) == set(benches)
    assert {k: v["metrics"] for k, v in ma.items()} == {k: v["metrics"] for k, v in mb.items()}
    assert json.loads((two / "manifest.json").read_text())["status"] == "done"
