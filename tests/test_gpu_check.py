"""benchmarks/gpu_check.py runs on CPU with a tiny shape (the GPU script exercises only code tested here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--shapes", "tiny",
                           "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(out.read_text())
    whats = [m["what"] for m in got["measurements"]]
    assert len(whats) == 4 and any("LoRA-DCR" in w for w in whats) and any("full-DCR" in w for w in whats)
    assert all(m["seconds"] > 0 and m["tokens_per_s"] > 0 and m["peak_mb"] > 0 for m in got["measurements"])
