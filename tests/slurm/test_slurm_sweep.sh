#!/usr/bin/env bash
# The sweep array on a real single-node Slurm started for this test, with two anchors (AV/AR
# pairs at layers 1 and 3, `av = AV1,AV3` in the config): slurm/submit_sweep.sh submits
# slurm/sweep.sh as a 2-task array (layer blocks 0-1 and 2-3, 2 ranks each through srun; each
# part a several-anchor run) and the merge job behind it (afterok); the merged run directory
# must have the layout of one local `nla eval` call over all layers: each RUN/anchor_<L>
# equal to the local one dataset for dataset (tests/tools/check_eval_run.py same), and the
# same RUN/coverage.csv.
# Skips (77) where Slurm cannot run (not installed, not root).
#   test_slurm_sweep.sh NLA_BINARY
set -euo pipefail
source "$(dirname "$0")/slurm_test_lib.sh"  # repo, nla, work, a Slurm for this test

q="--log-level warn --threads 1"
"$nla" init-model --preset tiny --seed 2 --out "$work/model" $q
"$nla" extract --model "$work/model" --max-docs 60 --doc-stride 3 --layers all --positions-per-doc 3 \
  --min-position 16 --max-tokens 128 --out "$work/acts.h5" $q
"$nla" label --store "$work/acts.h5" $q
# Each anchor's AV: the base model with its AR's nla_meta.yaml turned into an AV's (untrained).
for layer in 1 3; do
  "$nla" train-ar --store "$work/acts.h5" --layer $layer --model "$work/model" --out "$work/train$layer" --steps 2 \
    --batch 8 $q
  cp -r "$work/model" "$work/av$layer"
  sed 's/^role: ar$/role: av/' "$work/train$layer/ar/nla_meta.yaml" > "$work/av$layer/nla_meta.yaml"
done
cat > "$work/eval.ini" <<INI
[common]
threads = 1
[eval]
av = $work/av1,$work/av3
ar = $work/train1/ar,$work/train3/ar
store = $work/acts.h5
samples = 8
batch = 4
max-new-tokens = 8
pool = 5
coverage-min-cosine = 0.05
INI
cd "$repo"
# The test Slurm has no GPUs (no gres): --gpus-per-node=0 overrides the script's request,
# as on a CPU-only partition.
NLA_BIN=$nla SWEEP_MERGE_WAIT=1 SWEEP_SBATCH_ARGS="--ntasks=2 --gpus-per-node=0 --output=$work/job-%j.out" \
  slurm/submit_sweep.sh "$work/eval.ini" "$work/run" "0-1 2-3"
cat "$work"/job-*.out >&2
grep -q "nla-sweep job" "$work"/job-*.out
grep -q "eval-merge: 2 parts, 2 anchors, 4 layers" "$work"/job-*.out
"$nla" eval --config "$work/eval.ini" --layers all --out "$work/single" --log-level warn
for anchor in anchor_1 anchor_3; do
  /usr/bin/python3 "$repo/tests/tools/check_eval_run.py" same "$work/single/$anchor" "$work/run/$anchor"
  cmp "$work/single/$anchor/summary.csv" "$work/run/$anchor/summary.csv"
done
cmp "$work/single/coverage.csv" "$work/run/coverage.csv"
/usr/bin/python3 "$repo/tests/tools/check_eval_run.py" check "$work/run/anchor_3" "$work/acts.h5" >/dev/null
echo "slurm sweep: ok"
