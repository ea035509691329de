#!/usr/bin/env bash
# Does STL undo what refinement did? (issue 29, item 5.) The refine stage's confound probe (class within a source,
# source within a class) on the STL and DCR + STL models of one seed, for the paper arm and the source-matched arm:
#
#   bash configs/confound-probes.sh PAPER_RUN MATCHED_RUN SEED DEST
#   e.g. bash configs/confound-probes.sh runs/smollm2-67-s1 runs/smollm2-src-s1 1 results/refine-sources/smollm2-s1-confound
#
# Each run directory is a `dcr run` with methods stl and dcr+stl (plan.json names its stages); `-` as PAPER_RUN or
# MATCHED_RUN skips that arm (a seed whose paper arm runs in another session). Each model is scored
# on its own arm's refine stage prompts (`dcr probe confound --refine-stage`), outputs under DEST/ARM-stl and
# DEST/ARM-dcr-stl (metrics.json, results.jsonl, manifest.json; no weights). Read with
# `python results/refine-sources/confound.py DEST`. About 40 s per model at SmolLM2-135M on one thread.
#
# NTK=1 adds issue 29 item 3's eNTK ratio K(seemingly toxic, toxic) / K(toxic, toxic) (`dcr probe ntk`, the paper's
# 25 prompts per group) for each arm: base beside the refined model (DEST/ARM-ntk-base-refined) and STL beside DCR +
# STL (DEST/ARM-ntk-stl-dcr-stl). NTK_BUDGET (GB, default 3) bounds its gradient store; it does not bound the whole
# process: at SmolLM2-135M the four pairs of seed 0 recorded 6.6-16.0 GB peak RSS (manifest, sampled), about 10-18 min
# each at one thread beside other jobs. Leave 16 GB free for it.
set -euo pipefail
PAPER=${1:?PAPER_RUN}; MATCHED=${2:?MATCHED_RUN}; SEED=${3:?SEED}; DEST=${4:?DEST}
DCR=${DCR:-dcr}

stage_dir() {  # stage_dir RUN STAGE METHOD -> the run's stage directory of that stage, method and seed
  python3 "$(dirname "$0")/stage_dir.py" "$1" "$SEED" "$2" "$3"
}

for pair in "paper:$PAPER" "matched:$MATCHED"; do
  arm=${pair%%:*}; run=${pair#*:}
  [[ $run == - ]] && continue
  refine=$(stage_dir "$run" refine dcr+stl)  # assignments: a failed lookup stops the script (set -e)
  stl=$(stage_dir "$run" align stl)
  dcr_stl=$(stage_dir "$run" align dcr+stl)
  for m in "stl:$stl" "dcr-stl:$dcr_stl"; do
    name=${m%%:*}; model=${m#*:}; out="$run-confound/$arm-$name"
    $DCR probe confound --refine-stage "$refine" --model "$model" --out "$out"
    mkdir -p "$DEST/$arm-$name"
    cp "$out/metrics.json" "$out/results.jsonl" "$out/manifest.json" "$DEST/$arm-$name/"
  done
done
[[ ${NTK:-0} == 1 ]] || exit 0
# the eNTK pairs: before / after refine for both arms first (item 3 asks for these), then STL / DCR + STL
for name in base-refined stl-dcr-stl; do
  for pair in "paper:$PAPER" "matched:$MATCHED"; do
    arm=${pair%%:*}; run=${pair#*:}
    [[ $run == - ]] && continue
    if [[ $name == base-refined ]]; then
      after=$(stage_dir "$run" refine dcr+stl)
      before=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1] + "/manifest.json"))["config"]["model"])' "$after")
    else
      before=$(stage_dir "$run" align stl)
      after=$(stage_dir "$run" align dcr+stl)
    fi
    out="$run-confound/$arm-ntk-$name"
    $DCR probe ntk --model "$before" --model-after "$after" --seed "$SEED" --gram-budget-gb "${NTK_BUDGET:-3}" --out "$out"
    mkdir -p "$DEST/$arm-ntk-$name"
    cp "$out/metrics.json" "$out/results.jsonl" "$out/manifest.json" "$DEST/$arm-ntk-$name/"
  done
done
