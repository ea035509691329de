"""``dcr run EXP.yaml``: expand an experiment into a DAG of stages, share identical ones, run them, resume.

Every stage lives in ``RUN_DIR/stages/<stage>-<key>`` where ``key`` hashes the stage's config with upstream
stage directories replaced by the upstream node ids, so the name does not depend on where RUN_DIR lies and
two methods that need the same stage (the STL model behind stl, surgical and scans) get the same directory.
The stage functions skip themselves when their ``manifest.json`` is done with the same key, so a rerun is
cheap and an interrupted run resumes at the first unfinished stage.

- :mod:`dcr.pipeline.experiment`: the experiment file (schema in ``docs/pipeline.md``) and the method recipes;
- :mod:`dcr.pipeline.planner`: the deduplicated stage DAG;
- :mod:`dcr.pipeline.run`: running it, collecting ``results.jsonl``, writing the report.
"""

from dcr.pipeline.experiment import METHODS, Experiment, ModelSpec, Recipe, load_experiment, parse_experiment
from dcr.pipeline.planner import Node, Registry, default_registry, plan, write_plan
from dcr.pipeline.run import collect_results, run_experiment, run_nodes

__all__ = ["METHODS", "Experiment", "ModelSpec", "Node", "Recipe", "Registry", "collect_results",
           "default_registry", "load_experiment", "parse_experiment", "plan", "run_experiment", "run_nodes",
           "write_plan"]
