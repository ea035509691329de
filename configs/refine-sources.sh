#!/usr/bin/env bash
# Source-matched refinement (issue 29; rule: results/refine-sources/RULE.md), one seed of one model:
#
#   SEED=0 bash configs/refine-sources.sh                                   # SmolLM2-135M, configs/repro-smollm2.yaml
#   SEED=0 NAME=qwen0.5b EXP=configs/repro-qwen2.5-coder-0.5b.yaml \
#     SAVED=results/repro-qwen2.5-coder-0.5b/seed0/stages bash configs/refine-sources.sh
#
# 1. The arm: `dcr run EXP` with methods [stl, dcr+stl] and refine's sources set (below), into
#    runs/sources-NAME-sSEED, archived to results/refine-sources/NAME-sSEED (no weights). Its STL stages are the
#    reproduction's: the archived finished stages (SAVED) are copied into the stages directory first, so `dcr run`
#    skips them (keys hold the data directory's absolute path: run with the DCR_DATA_DIR those stages used, e.g.
#    DCR_DATA_DIR=/work/shared/data for the committed SmolLM2 seeds).
# 2. The paper arm's confound diagnostic: its refine stage ran before the diagnostic existed, so it is rerun from
#    the archived plan's config (results/refine-sources/paper_confound.py) and its metrics.json is archived to
#    results/refine-sources/NAME-sSEED-paper-refine/.
set -euo pipefail
DCR=${DCR:-dcr}
PY=${PY:-python}
EXP=${EXP:-configs/repro-smollm2.yaml}
NAME=${NAME:-smollm2}
SEED=${SEED:-0}
SAVED=${SAVED:-results/repro-smollm2/seed$SEED/stages}
STAGES=${STAGES:-runs/sources-$NAME/stages}
RUN=runs/sources-$NAME-s$SEED
OUT=results/refine-sources/$NAME-s$SEED
mkdir -p "$STAGES"
for stage in "$SAVED"/*/; do
  [[ -e $STAGES/$(basename "$stage") ]] || cp -r "$stage" "$STAGES/"
done
$DCR run "$EXP" --out "$RUN" --set "seeds=[$SEED]" --set "stages_dir=$STAGES" --set 'methods=[stl, dcr+stl]' \
  --set 'refine.seemingly_sources=[xstest-safe, coconot-pref:300, physical-safe:70]' \
  --set 'refine.toxic_sources=[xstest-unsafe, coconot-original:300, physical-unsafe:70]' \
  --set refine.balance=class-and-source
$DCR archive "$RUN" "$OUT" --force
if [[ -z ${SKIP_PAPER:-} ]]; then
  $PY results/refine-sources/paper_confound.py "$(dirname "$SAVED")/plan.json" "runs/sources-$NAME-s$SEED-paper-refine" \
    "$OUT-paper-refine"
fi
