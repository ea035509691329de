"""``dcr archive RUN_DIR DEST``: keep what a report needs after the stage directories (weights) are gone.

A run directory holds checkpoints of hundreds of MB per stage; a report reads only small files from them. The
archive copies the run's plan.json, results.jsonl, report and figures, and from every stage of the plan the
files the report reads (:data:`STAGE_FILES` and ``judgements/*.jsonl``), and the completions behind the
verdicts, gzipped (``generations/<bench>.jsonl.gz`` with its ``.meta.json``), so that a committed result can be
re-scored by another judge (``dcr judge stages/ID/generations/BENCH.jsonl.gz --out ...``). No weights. The plan's
stage directories are rewritten to ``stages/<id>`` inside the archive, so an archive committed to a repository
can be reported again (``dcr report DEST``) or merged with runs made later (``dcr report DEST RUN --out M``),
e.g. seeds run in different sessions.

An archive's stage directories keep their manifests ("done", same keys), so copying them back into a run's
stages directory (``cp -rn DEST/stages/. RUN/stages/``) makes ``dcr run`` skip those stages on a new machine: a
long experiment can be run one piece (method, seed) at a time. Stage keys hold the absolute paths of upstream
stages and of the data directory, so the run directory must be at the same path (elsewhere the stages rerun).
The copies have no weights, so only stages whose downstream stages are finished too can be restored; a stage
that needs the missing weights stops with an error naming the directory to delete
(:func:`dcr.models.resolve_model`).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from dcr.errors import DcrError
from dcr.io import atomic_dir, read_json, write_json

# per stage, when present: the report's inputs, plus refine's own record of what it trained on and what it kept
# (split.json: the training prompts and their overlap with evaluation sets; retention.jsonl: greedy answers before and
# after; loss.csv: the training curve), a few KB each
STAGE_FILES = ("manifest.json", "metrics.json", "tracking.csv", "results.jsonl", "split.json", "retention.jsonl",
               "loss.csv")
RUN_FILES = ("results.jsonl", "report.md", "report.html")  # plan.json is rewritten, figures/ copied


def _copy_stage(src: Path, dst: Path) -> int:
    """Copy one stage's report inputs and its completions (gzipped); returns the number of files written."""
    files = [src / name for name in STAGE_FILES if (src / name).is_file()]
    files += sorted((src / "judgements").glob("*.jsonl")) if (src / "judgements").is_dir() else []
    files += sorted((src / "generations").glob("*.meta.json")) if (src / "generations").is_dir() else []
    for path in files:
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    completions = sorted((src / "generations").glob("*.jsonl")) if (src / "generations").is_dir() else []
    for path in completions:
        gzip_file(path, dst / "generations" / f"{path.name}.gz")
    return len(files) + len(completions)


def gzip_file(src: Path, dst: Path) -> None:
    """``src`` gzipped to ``dst``, byte for byte the same for the same input (no name or time in the header)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dst.open("wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as fout:
        shutil.copyfileobj(fin, fout)


def archive_run(run_dir: Path, dest: Path, force: bool = False) -> dict[str, int]:
    """Write the archive of ``run_dir`` to ``dest`` (all or nothing); returns counts of stages and files."""
    run_dir, dest = run_dir.resolve(), dest.resolve()
    if not (run_dir / "plan.json").is_file():
        raise DcrError(f"{run_dir}: no plan.json. Fix: pass a directory written by `dcr run` or `dcr report --out`")
    if dest == run_dir or run_dir in dest.parents:
        raise DcrError(f"{dest}: inside the run directory. Fix: archive to a directory outside {run_dir}")
    if dest.exists() and any(dest.iterdir()) and not force:
        raise DcrError(f"{dest}: exists and is not empty. Fix: pass --force to replace it, or another DEST")
    plan = read_json(run_dir / "plan.json")
    counts = {"stages": 0, "files": 0}
    with atomic_dir(dest) as tmp:
        for node in plan.get("nodes", []):
            src = run_dir / node["dir"]  # relative in a run, absolute in a merged report
            node["dir"] = f"stages/{node['id']}"
            if src.is_dir():
                counts["stages"] += 1
                counts["files"] += _copy_stage(src, tmp / node["dir"])
        write_json(tmp / "plan.json", plan)
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, tmp / name)
                counts["files"] += 1
        if (run_dir / "figures").is_dir():
            shutil.copytree(run_dir / "figures", tmp / "figures")
            counts["files"] += sum(1 for p in (tmp / "figures").rglob("*") if p.is_file())
    return counts
