"""The stage directory of one stage of one (method, seed) in a `dcr run` directory, read from its plan.json:

    python3 configs/stage_dir.py RUN SEED STAGE METHOD      # e.g. runs/repro-smollm2 1 align dcr+stl

Used by the diagnostics scripts (configs/repro-diagnostics.sh, configs/confound-probes.sh). Exits 1 with a
one-line error when the plan has no such stage.
"""

import json
import sys
from pathlib import Path

run, seed, stage, method = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
for node in json.loads((run / "plan.json").read_text())["nodes"]:
    if node["stage"] == stage and any(u["method"] == method and u["seed"] == seed for u in node["uses"]):
        print(run / node["dir"])  # an absolute dir stays itself
        break
else:
    sys.exit(f"error: {run}/plan.json has no {stage} stage of {method}, seed {seed}. Fix: run that seed first")
