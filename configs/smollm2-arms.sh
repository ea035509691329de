#!/usr/bin/env bash
# The SmolLM2-135M arms of issues 28 and 29, one seed per call, in two one-thread processes side by side
# (BENCHMARKS.md, "Two one-thread processes": 1.2-1.5x the throughput of one two-thread process):
#
#   SEED=0 bash configs/smollm2-arms.sh
#
# Process A, stages in runs/smollm2-sSEED/stages:
#   1. the committed protocol (configs/repro-smollm2.yaml: refine layer 15, STL 128 general : 256 safety = 67 %),
#      methods base, STL, DCR + STL, on the reported sets plus the four validation sets of
#      results/ablation-stl-mix/RULE.md -> results/ablation-stl-mix/smollm2-67-sSEED. It is at once the STL-mix
#      ablation's 67 % arm, issue 29's STL and paper DCR + STL arms, and issue 28's rerun of the committed layer-15
#      seed with completions kept;
#   2. issue 29's source-matched DCR + STL (results/refine-sources/RULE.md), sharing the stages above (STL and its
#      evaluation are not redone) -> results/refine-sources/smollm2-sSEED; then the confound probe on both arms'
#      STL and DCR + STL models (configs/confound-probes.sh) -> results/refine-sources/smollm2-sSEED-confound.
# Process B, stages in runs/smollm2-5-sSEED/stages (a stage directory admits one process at a time):
#   3. the STL-mix ablation's 5 % arm (1216 general : 64 safety since seed 0's 608 : 32 failed the rule's
#      qualification: results/ablation-stl-mix/README.md), STL (evaluated and archived first), then DCR + STL,
#      same evaluation
#      -> results/ablation-stl-mix/smollm2-5-1216-sSEED.
# Read with: python results/ablation-stl-mix/summarise.py and results/refine-sources/summarise.py.
#
# ARMS=a or ARMS=b runs one process only (default both). TAG=-NAME suffixes every run, stage and archive directory,
# so a rerun of a seed never replaces that seed's committed archive; e.g. seed 0's 5 % arm, whose DCR + STL never
# finished and whose STL ran in fp32 elsewhere, rerun whole in bf16 (results/ablation-stl-mix/README.md):
#
#   SEED=0 ARMS=b TAG=-bf16 bash configs/smollm2-arms.sh   # -> results/ablation-stl-mix/smollm2-5-1216-s0-bf16
set -euo pipefail
DCR=${DCR:-dcr}
# SEED has no default: a forgotten SEED would rerun seed 0 and overwrite its committed archive (archive --force)
[[ "${SEED:-}" =~ ^[0-9]+$ ]] || { echo "smollm2-arms.sh: SEED=${SEED:-} is not a seed number. Fix: SEED=N bash configs/smollm2-arms.sh" >&2; exit 2; }
ARMS=${ARMS:-ab}
[[ "$ARMS" =~ ^(a|b|ab)$ ]] || { echo "smollm2-arms.sh: ARMS=$ARMS is not a, b or ab. Fix: ARMS=a, ARMS=b, or leave it unset for both" >&2; exit 2; }
TAG=${TAG:-}
[[ "$TAG" =~ ^(-[a-z0-9]+)?$ ]] || { echo "smollm2-arms.sh: TAG=$TAG is not -NAME (lower-case letters, digits). Fix: e.g. TAG=-bf16" >&2; exit 2; }
S=$SEED$TAG  # the seed's directory suffix
EXP=configs/repro-smollm2.yaml
export OMP_NUM_THREADS=1
BENCH='benchmarks=[xstest, oktest, coconot, or-bench, malicious-instructions, cona, controversial, harmfulq, advbench, mmlu, arc-easy, piqa, hh-rlhf, physical-safety-unsafe, i-alpaca, physical-safety-safe]'
mkdir -p runs
arm_a() {
  local stages="runs/smollm2-s$S/stages"
  $DCR run "$EXP" --out "runs/smollm2-67-s$S" --set "seeds=[$SEED]" --set "stages_dir=$stages" --set "$BENCH" \
    --set 'methods=[base, stl, dcr+stl]'
  $DCR archive "runs/smollm2-67-s$S" "results/ablation-stl-mix/smollm2-67-s$S" --force
  $DCR run "$EXP" --out "runs/smollm2-src-s$S" --set "seeds=[$SEED]" --set "stages_dir=$stages" --set "$BENCH" \
    --set 'methods=[stl, dcr+stl]' \
    --set 'refine.seemingly_sources=[xstest-safe, coconot-pref:300, physical-safe:70]' \
    --set 'refine.toxic_sources=[xstest-unsafe, coconot-original:300, physical-unsafe:70]' \
    --set refine.balance=class-and-source
  $DCR archive "runs/smollm2-src-s$S" "results/refine-sources/smollm2-s$S" --force
  DCR=$DCR bash configs/confound-probes.sh "runs/smollm2-67-s$S" "runs/smollm2-src-s$S" "$SEED" \
    "results/refine-sources/smollm2-s$S-confound"
}
arm_b() {
  # STL first, evaluated and archived before DCR + STL is trained: the rule reads STL only, and an arm that does
  # not finish inside a session still leaves what the rule needs. Tracking every 32 of the 160 steps (6 points,
  # the 67 % arm has 7 over 48): at every 8 steps the tracking alone would cost about 80 minutes at one thread.
  # Stages (the refine) and teacher answers are shared with the 608 : 32 run of the trigger; the archive gets its
  # own name, since results/ablation-stl-mix/smollm2-5-s0 is that run's record.
  local b=(--set "seeds=[$SEED]" --set "stages_dir=runs/smollm2-5-s$S/stages" --set "$BENCH"
           --set "align.teacher_cache=runs/smollm2-5-s$S/teacher-cache"
           --set sizes.align_general=1216 --set sizes.align_safety=64 --set align.track_every=32)
  local run="runs/smollm2-5-1216-s$S" dest="results/ablation-stl-mix/smollm2-5-1216-s$S"
  $DCR run "$EXP" --out "$run" "${b[@]}" --set 'methods=[stl]'
  $DCR archive "$run" "$dest" --force
  $DCR run "$EXP" --out "$run" "${b[@]}" --set 'methods=[stl, dcr+stl]'
  $DCR archive "$run" "$dest" --force
}
ra=0 rb=0 pa="" pb=""
if [[ "$ARMS" == *a* ]]; then arm_a > "runs/smollm2-arms-a-s$S.log" 2>&1 & pa=$!; fi
if [[ "$ARMS" == *b* ]]; then arm_b > "runs/smollm2-arms-b-s$S.log" 2>&1 & pb=$!; fi
if [[ -n "$pa" ]]; then wait "$pa" || ra=$?; fi
if [[ -n "$pb" ]]; then wait "$pb" || rb=$?; fi
echo "arm A exit $ra, arm B exit $rb (ARMS=$ARMS)"
exit $(( ra || rb ))
