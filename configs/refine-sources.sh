#!/usr/bin/env bash
# Source-matched refinement (issue 29; rule: results/refine-sources/RULE.md), one seed of one model:
#
#   SEED=0 bash configs/refine-sources.sh                                   # SmolLM2-135M, configs/repro-smollm2.yaml
#   SEED=0 NAME=qwen0.5b EXP=configs/repro-qwen2.5-coder-0.5b.yaml bash configs/refine-sources.sh
#
# Two runs sharing one stages directory (stage ids are content hashes, so STL is trained and evaluated once):
# 1. the paper arm: `dcr run EXP` with methods [stl, dcr+stl], into runs/sources-NAME-paper-sSEED, archived to
#    results/refine-sources/NAME-paper-sSEED;
# 2. the source-matched arm: the same with refine's sources set (below), into runs/sources-NAME-sSEED, archived
#    to results/refine-sources/NAME-sSEED.
# Both refine stages record the confound diagnostic (metrics.json "confound", before and after); then
# configs/confound-probes.sh measures it on both arms' STL and DCR + STL models
# (results/refine-sources/NAME-sSEED-confound). The archived
# seeds of the issue-17/28 reproductions cannot stand in for arm 1: their verdicts were made by an older keyword
# judge (before the degenerate outcome), so their evaluate stages no longer share a key with today's, and their
# STL weights were never archived.
# Then: python results/refine-sources/summarise.py NAME results/refine-sources/NAME-s* -- \
#         results/refine-sources/NAME-paper-s*
#
# ARMS=matched runs the source-matched arm alone (methods [dcr+stl]; no STL, no paper arm, no confound probes on
# STL models: the refine stage's own metrics.json still records the diagnostic before and after refine), for a
# model whose STL and paper DCR + STL are archived already with the same stage ids (RULE.md's addendum for Qwen
# 0.5B: issue 28's reproduction seeds). DTYPE=fp32 pins the compute dtype to the archived arms' precision:
#
#   SEED=0 NAME=qwen0.5b EXP=configs/repro-qwen2.5-coder-0.5b.yaml ARMS=matched DTYPE=fp32 bash configs/refine-sources.sh
#
# EVAL_PROCS=N evaluates as N data-parallel processes (`evaluate_processes`, docs/pipeline.md; stage ids unchanged);
# with OMP_NUM_THREADS=2 and EVAL_PROCS=2 each process has one thread (on 2 AVX2 cores one two-thread process was
# 1.12x faster: BENCHMARKS.md, 2026-12-08). Arguments go to every `dcr run` as they are,
# e.g. `--set refine.save_every=15` (a resumable refine that can span sessions; the stage id changes with it):
#
#   SEED=0 NAME=qwen0.5b EXP=configs/repro-qwen2.5-coder-0.5b.yaml ARMS=matched DTYPE=fp32 EVAL_PROCS=2 \
#     bash configs/refine-sources.sh --set refine.save_every=15
#   python results/refine-sources/summarise.py qwen2.5-coder-0.5b \
#     results/repro-qwen2.5-coder-0.5b/seed0+results/refine-sources/qwen0.5b-s0 -- results/repro-qwen2.5-coder-0.5b/seed0
set -euo pipefail
DCR=${DCR:-dcr}
EXP=${EXP:-configs/repro-smollm2.yaml}
NAME=${NAME:-smollm2}
# SEED has no default: a forgotten SEED would rerun seed 0 and overwrite its committed archive (archive --force)
[[ "${SEED:-}" =~ ^[0-9]+$ ]] || { echo "refine-sources.sh: SEED=${SEED:-} is not a seed number. Fix: SEED=N bash configs/refine-sources.sh" >&2; exit 2; }
ARMS=${ARMS:-both}
[[ "$ARMS" =~ ^(both|matched)$ ]] || { echo "refine-sources.sh: ARMS=$ARMS is not both or matched. Fix: ARMS=matched, or leave it unset for both" >&2; exit 2; }
[[ "${DTYPE:-auto}" =~ ^(auto|fp32|bf16)$ ]] || { echo "refine-sources.sh: DTYPE=$DTYPE is not fp32, bf16 or auto. Fix: DTYPE=fp32" >&2; exit 2; }
[[ "${EVAL_PROCS:-1}" =~ ^[1-9][0-9]*$ ]] || { echo "refine-sources.sh: EVAL_PROCS=$EVAL_PROCS is not a process count. Fix: EVAL_PROCS=2, or leave it unset for 1" >&2; exit 2; }
STAGES=${STAGES:-runs/sources-$NAME/stages}
methods='methods=[stl, dcr+stl]'
[[ "$ARMS" == matched ]] && methods='methods=[dcr+stl]'
common=(--set "seeds=[$SEED]" --set "stages_dir=$STAGES" --set "$methods" "$@")
[[ -n "${DTYPE:-}" ]] && common+=(--set "dtype=$DTYPE")
[[ "${EVAL_PROCS:-1}" != 1 ]] && common+=(--set "evaluate_processes=$EVAL_PROCS")
if [[ "$ARMS" == both ]]; then
  $DCR run "$EXP" --out "runs/sources-$NAME-paper-s$SEED" "${common[@]}"
  $DCR archive "runs/sources-$NAME-paper-s$SEED" "results/refine-sources/$NAME-paper-s$SEED" --force
fi
$DCR run "$EXP" --out "runs/sources-$NAME-s$SEED" "${common[@]}" \
  --set 'refine.seemingly_sources=[xstest-safe, coconot-pref:300, physical-safe:70]' \
  --set 'refine.toxic_sources=[xstest-unsafe, coconot-original:300, physical-unsafe:70]' \
  --set refine.balance=class-and-source
$DCR archive "runs/sources-$NAME-s$SEED" "results/refine-sources/$NAME-s$SEED" --force
[[ "$ARMS" == both ]] || exit 0
DCR=$DCR bash configs/confound-probes.sh "runs/sources-$NAME-paper-s$SEED" "runs/sources-$NAME-s$SEED" "$SEED" \
  "results/refine-sources/$NAME-s$SEED-confound"
