#!/usr/bin/env bash
# Diagnostics of a reproduction seed (issue 17, item 6): did refinement move the features, and did STL undo it?
#
#   bash configs/repro-diagnostics.sh RUN_DIR SEED OUT [MODEL] [LAYER]
#   e.g. bash configs/repro-diagnostics.sh runs/repro-smollm2 1 runs/diag-smollm2-s1 smollm2-135m 15
#
# For the base model, the refined model (refine stage), STL and DCR + STL (align stages) of SEED in RUN_DIR:
# - separability at LAYER against XSTest's unsafe contrast prompts (never trained on), `dcr probe separability`:
#   the 50 held-out XSTest safe prompts against 50 unsafe ones, and the 200 in-distribution safe prompts (the
#   ones refine trains on) against all 200 unsafe ones. Refine's own metrics.json measures separability against
#   unused HH-RLHF toxic prompts, i.e. the toxic source it trained on; these probes ask whether it separates
#   seemingly toxic from toxic prompts of the same style;
# - eNTK similarity (paper Fig. 6, 25 prompts per group), `dcr probe ntk`: base beside refined, and STL beside
#   DCR + STL.
# Each probe writes metrics.json / results.jsonl / figures under OUT/<name>; finished probes are skipped when the
# script runs again. NTK=0 runs the separability probes only (the eNTK probes peak at about 15 GB on SmolLM2 and
# 21 GB on Gemma-3-270M: run them when nothing else needs the memory). NTK_BUDGET (GB) bounds the eNTK probe's
# gradient store (--gram-budget-gb; unset = the probe's default); Qwen2.5-Coder-1.5B needs NTK_BUDGET=4 to stay
# within 16 GB (15.4 GB measured, BENCHMARKS.md).
set -euo pipefail
RUN=${1:?RUN_DIR}; SEED=${2:?SEED}; OUT=${3:?OUT}; MODEL=${4:-smollm2-135m}; LAYER=${5:-15}
DCR=${DCR:-dcr}

stage_dir() {  # stage_dir STAGE METHOD -> the run's stage directory of that stage, method and seed
  python3 "$(dirname "$0")/stage_dir.py" "$RUN" "$SEED" "$1" "$2"
}

REFINED=$(stage_dir refine dcr+stl)
STL=$(stage_dir align stl)
DCR_STL=$(stage_dir align dcr+stl)
for pair in "base:$MODEL" "refined:$REFINED" "stl:$STL" "dcr-stl:$DCR_STL"; do
  name=${pair%%:*}; model=${pair#*:}
  $DCR probe separability --model "$model" --set-a xstest-safe-heldout --set-b xstest-unsafe --n 50 \
    --layers "$LAYER" --seed "$SEED" --out "$OUT/separability-$name"
  $DCR probe separability --model "$model" --set-a xstest-safe-indist --set-b xstest-unsafe \
    --layers "$LAYER" --seed "$SEED" --out "$OUT/separability-indist-$name"
done
[[ ${NTK:-1} == 0 ]] && exit 0
BUDGET=(); [[ -n ${NTK_BUDGET:-} ]] && BUDGET=(--gram-budget-gb "$NTK_BUDGET")
$DCR probe ntk --model "$MODEL" --model-after "$REFINED" "${BUDGET[@]}" --out "$OUT/ntk-base-refined"
$DCR probe ntk --model "$STL" --model-after "$DCR_STL" "${BUDGET[@]}" --out "$OUT/ntk-stl-dcr-stl"
