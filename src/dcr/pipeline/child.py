"""One pipeline stage in its own process (``stage_processes: true`` in the experiment file).

A process keeps the memory a finished stage freed (glibc and torch's allocator hand little of it back), so in
one ``dcr run`` process every stage after the first starts from the peak of the ones before: at 1.5B the
evaluations, 5.5 GB alone, ran at 16.5-17.1 GB (BENCHMARKS.md). The parent writes the stage's name, config
(JSON) and output directory to a job file and runs ``python -m dcr.pipeline.child JOB``; the child rebuilds the
config dataclass, runs the stage function and, on an error, writes ``{"type", "message"}`` next to the job file
for the parent to raise. JSON in both directions: nothing is unpickled.

``evaluate_processes: N`` (N > 1) runs evaluate stages' children under torchrun instead, N data-parallel
processes of the same module. Each process writes its error as ``error-RANK.json`` (``error-0000.json`` alone); the
parent raises rank 0's first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from dcr.errors import DcrError

ERROR_PREFIX = "error-"  # + the rank, 4 digits, + .json: one file per process, so ranks never overwrite each other


def config_json(cfg: Any) -> dict[str, Any]:
    """The config as JSON-ready fields (what the child rebuilds it from)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def child_command(job: Path, processes: int = 1) -> tuple[list[str], dict[str, str]]:
    """The child's command line and environment: ``python -m dcr.pipeline.child JOB``, or with ``processes`` > 1
    the same module under torchrun (``--standalone``: a free rendezvous port, so two runs can launch at once),
    each process with ``OMP_NUM_THREADS`` its share of this process's threads."""
    cmd = [sys.executable, "-m", "dcr.pipeline.child", str(job)]
    if processes == 1:
        return cmd, dict(os.environ)
    import torch

    threads = max(1, torch.get_num_threads() // processes)
    return ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
             "-m", "dcr.pipeline.child", str(job)], {**os.environ, "OMP_NUM_THREADS": str(threads)})


def run_in_child(stage: str, cfg: Any, out_dir: Path, force: bool, processes: int = 1) -> None:
    """Run the default registry's ``stage`` on ``cfg`` in a fresh Python process (``processes`` > 1: that many,
    data-parallel under torchrun); raise its error here."""
    with tempfile.TemporaryDirectory(prefix="dcr-stage-") as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"stage": stage, "config": config_json(cfg), "out": str(out_dir),
                                   "force": force}), encoding="utf-8")
        cmd, env = child_command(job, processes)
        code = subprocess.run(cmd, check=False, env=env).returncode
        if code == 0:
            return
        errors = sorted(Path(tmp).glob(f"{ERROR_PREFIX}*.json"))  # rank 0 first
        err = json.loads(errors[0].read_text(encoding="utf-8")) if errors else \
            {"type": "exit", "message": f"the stage process ended with status {code} (killed?)"}
    if code in (130, -2):
        raise KeyboardInterrupt
    if err["type"] == "DcrError":
        raise DcrError(err["message"])
    raise RuntimeError(f"{stage} stage process failed: {err['type']}: {err['message']}")


def main(job_path: str) -> int:
    """The child: rebuild the config, run the stage, report an error as JSON. Returns the exit status."""
    from dcr.dist import is_main, rank
    from dcr.pipeline.planner import default_registry
    from dcr.verbs import console_log

    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    cls, fn = default_registry()[job["stage"]]
    try:
        cfg = cls(**job["config"])
        with console_log(quiet=not is_main()):  # under torchrun the main process speaks for all
            fn(cfg, Path(job["out"]), force=job["force"])
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the parent raises it again, with the type's name
        kind = "DcrError" if isinstance(exc, DcrError) else type(exc).__name__
        error = Path(job_path).parent / f"{ERROR_PREFIX}{rank():04d}.json"
        error.write_text(json.dumps({"type": kind, "message": str(exc)}), encoding="utf-8")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
