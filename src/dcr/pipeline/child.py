"""One pipeline stage in its own process (``stage_processes: true`` in the experiment file).

A process keeps the memory a finished stage freed (glibc and torch's allocator hand little of it back), so in
one ``dcr run`` process every stage after the first starts from the peak of the ones before: at 1.5B the
evaluations, 5.5 GB alone, ran at 16.5-17.1 GB (BENCHMARKS.md). The parent writes the stage's name, config
(JSON) and output directory to a job file and runs ``python -m dcr.pipeline.child JOB``; the child rebuilds the
config dataclass, runs the stage function and, on an error, writes ``{"type", "message"}`` next to the job file
for the parent to raise. JSON in both directions: nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from dcr.errors import DcrError

ERROR_FILE = "error.json"


def config_json(cfg: Any) -> dict[str, Any]:
    """The config as JSON-ready fields (what the child rebuilds it from)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def run_in_child(stage: str, cfg: Any, out_dir: Path, force: bool) -> None:
    """Run the default registry's ``stage`` on ``cfg`` in a fresh Python process; raise its error here."""
    with tempfile.TemporaryDirectory(prefix="dcr-stage-") as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"stage": stage, "config": config_json(cfg), "out": str(out_dir),
                                   "force": force}), encoding="utf-8")
        code = subprocess.run([sys.executable, "-m", "dcr.pipeline.child", str(job)], check=False).returncode
        if code == 0:
            return
        err_path = Path(tmp) / ERROR_FILE
        err = json.loads(err_path.read_text(encoding="utf-8")) if err_path.exists() else \
            {"type": "exit", "message": f"the stage process ended with status {code} (killed?)"}
    if code in (130, -2):
        raise KeyboardInterrupt
    if err["type"] == "DcrError":
        raise DcrError(err["message"])
    raise RuntimeError(f"{stage} stage process failed: {err['type']}: {err['message']}")


def main(job_path: str) -> int:
    """The child: rebuild the config, run the stage, report an error as JSON. Returns the exit status."""
    from dcr.pipeline.planner import default_registry
    from dcr.verbs import console_log

    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    cls, fn = default_registry()[job["stage"]]
    try:
        cfg = cls(**job["config"])
        with console_log(quiet=False):
            fn(cfg, Path(job["out"]), force=job["force"])
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the parent raises it again, with the type's name
        kind = "DcrError" if isinstance(exc, DcrError) else type(exc).__name__
        (Path(job_path).parent / ERROR_FILE).write_text(json.dumps({"type": kind, "message": str(exc)}),
                                                         encoding="utf-8")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
