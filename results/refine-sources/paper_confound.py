"""Rerun the paper arm's refine stage from an archived plan.json, so its confound diagnostic exists (issue 29).

    python results/refine-sources/paper_confound.py PLAN.json WORK_DIR ARCHIVE_DIR

The refine node's config is taken as recorded (same key fields; the diagnostic is measurement only), trained
into WORK_DIR, and its metrics.json, split.json, manifest.json and results.jsonl are copied to ARCHIVE_DIR
(no weights).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from dcr.refine.config import RefineConfig
from dcr.refine.stage import refine


def main(plan_path: str, work: str, archive: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    node = next(n for n in plan["nodes"] if n["stage"] == "refine")
    fields = set(RefineConfig.__dataclass_fields__)
    cfg = RefineConfig(**{k: v for k, v in node["config"].items() if k in fields})
    out = refine(cfg, work)
    dest = Path(archive)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "split.json", "manifest.json", "results.jsonl", "loss.csv"):
        if (out / name).is_file():
            shutil.copy2(out / name, dest / name)
    print(dest)


if __name__ == "__main__":
    main(*sys.argv[1:4])
