"""Data-parallel refine: 2 CPU processes (gloo) with half a batch each give the loss curve of 1 process."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dcr.refine import RefineConfig, refine

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
ARGS = dict(limit=8, epochs=2, batch_size=8, eval_batch_size=64, xstest_heldout_frac=0.05, dtype="fp32", layer=1,
            retention_n=4, retention_generations=1, confound_n=4)  # few: these run on the main process alone


def _curve(out: Path) -> list[tuple[float, float]]:
    with open(out / "loss.csv", newline="") as fh:
        return [(float(r["circle"]), float(r["nll"])) for r in csv.DictReader(fh)]


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed")
@pytest.mark.parametrize("nll_weight", [0.0, 0.001])
def test_two_process_refine_matches_one_process(nll_weight: float, tiny_dir: Path, data_dir: Path,
                                                tmp_path: Path) -> None:
    kw = {**ARGS, "nll_weight": nll_weight}
    one = refine(RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), **kw), tmp_path / "one")
    cmd = [TORCHRUN, "--nproc_per_node", "2", "--master_port", "29520", "-m", "dcr.cli", "refine",
           "--model", str(tiny_dir), "--data-dir", str(data_dir), "--out", str(tmp_path / "two"), "--quiet",
           *[f"--set={k}={v}" for k, v in kw.items()]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _curve(one), _curve(tmp_path / "two")
    assert len(a) == len(b) == 4
    for (ca, na), (cb, nb) in zip(a, b):
        assert cb == pytest.approx(ca, abs=1e-5)
        assert (na != na and nb != nb) or nb == pytest.approx(na, abs=1e-5)  # nan when the NLL term is off
