#!/usr/bin/env bash
# One seed of a reproduction file in two one-thread processes side by side, then the whole seed's report:
#
#   SEED=0 bash configs/repro-seed.sh                                          # Qwen2.5-Coder-0.5B
#   SEED=2 DTYPE=fp32 bash configs/repro-seed.sh                               # 0.5B seed 2 beside fp32 seeds 0-1
#
# A seed's stage directories hold weights and do not survive a change of machine, so a seed must finish in one
# working session (about 3 h). Two processes with one torch thread each give 1.2-1.5x the throughput of one
# two-thread process on 2 cores (BENCHMARKS.md, "Two one-thread processes"). They share one stages directory and
# run disjoint stages (a stage directory admits one process at a time; stage ids are content hashes):
#   A: dcr, dcr+stl (the refine, the align on it, and their evaluations);
#   B: stl, base (STL's align and evaluation, then the base model's evaluation: the two evaluations balance A's
#      refine; each process runs its trainings before its evaluations).
# Both use one teacher cache (locked), so the base model answers the general prompts once. Then `dcr run` of the
# whole file finds every stage finished, writes the seed's report, and `dcr archive` copies what a report needs (no weights) to
# results/<experiment file's name>/seedSEED (e.g. results/repro-qwen2.5-coder-0.5b/seed0, beside its RULE.md). Not for 1.5B: two 1.5B processes do not fit in 24 GB.
#
# The base model's evaluation does not depend on the training seed (its stage id is the same in every seed): with
# SHARE_FROM=runs/repro-NAME-s0/stages, the finished evaluations of a plain model name found there are copied into
# this seed's stages directory first, and `dcr run` skips them when their key matches (it reruns one that does
# not). At 0.5B on one fp32 thread that saves about an hour of process B.
set -euo pipefail
DCR=${DCR:-dcr}
EXP=${EXP:-configs/repro-qwen2.5-coder-0.5b.yaml}
NAME=${NAME:-qwen0.5b}
# SEED has no default: a forgotten SEED would rerun seed 0 and overwrite its committed archive (archive --force)
[[ "${SEED:-}" =~ ^[0-9]+$ ]] || { echo "repro-seed.sh: SEED=${SEED:-} is not a seed number. Fix: SEED=N bash configs/repro-seed.sh" >&2; exit 2; }
case "$EXP" in *1.5b*) echo "repro-seed.sh: two 1.5B processes do not fit in 24 GB; run dcr run $EXP directly" >&2
                       exit 2;; esac
STAGES=runs/repro-$NAME-s$SEED/stages
common=(--set "seeds=[$SEED]" --set "stages_dir=$STAGES" --set "align.teacher_cache=runs/repro-$NAME-s$SEED/teacher")
# DTYPE=fp32: pin the compute dtype, so that a seed pools with seeds run on another machine (0.5B seeds 0-1: fp32)
[[ -n "${DTYPE:-}" ]] && common+=(--set "dtype=$DTYPE")
export OMP_NUM_THREADS=1
mkdir -p runs "$STAGES"
if [[ -n "${SHARE_FROM:-}" ]]; then
  [[ -d "$SHARE_FROM" ]] || { echo "repro-seed.sh: SHARE_FROM=$SHARE_FROM is not a directory" >&2; exit 2; }
  for d in "$SHARE_FROM"/evaluate-*; do
    [[ -d "$d" && ! -e "$STAGES/$(basename "$d")" ]] || continue
    if python3 -c 'import json, sys; m = json.load(open(sys.argv[1] + "/manifest.json"))
sys.exit(0 if m.get("status") == "done" and "/" not in str(m["config"]["model"]) else 1)' "$d" 2>/dev/null; then
      # copied under a temporary name, then renamed: a failed copy never looks like a finished stage
      rm -rf "$STAGES/.sharing"
      cp -a "$d" "$STAGES/.sharing"
      mv "$STAGES/.sharing" "$STAGES/$(basename "$d")"
      echo "shared from $SHARE_FROM: $(basename "$d")"
    fi
  done
fi
$DCR run "$EXP" --out "runs/repro-$NAME-a-s$SEED" --no-report "${common[@]}" --set 'methods=[dcr, dcr+stl]' \
  > "runs/repro-$NAME-a-s$SEED.log" 2>&1 &
pa=$!
$DCR run "$EXP" --out "runs/repro-$NAME-b-s$SEED" --no-report "${common[@]}" --set 'methods=[stl, base]' \
  > "runs/repro-$NAME-b-s$SEED.log" 2>&1 &
pb=$!
ra=0; rb=0
wait $pa || ra=$?
wait $pb || rb=$?
if (( ra || rb )); then echo "process A exit $ra, B exit $rb (logs: runs/repro-$NAME-[ab]-s$SEED.log)" >&2; exit 1; fi
$DCR run "$EXP" --out "runs/repro-$NAME-s$SEED" "${common[@]}"
$DCR archive "runs/repro-$NAME-s$SEED" "results/$(basename "$EXP" .yaml)/seed$SEED" --force
