#!/usr/bin/env bash
# The sweep array on a real single-node Slurm started for this test: slurm/submit_sweep.sh
# submits slurm/sweep.sh as a 2-task array (layer blocks 0-1 and 2-3, 2 ranks each through
# srun) and the merge job behind it (afterok); the merged run directory must equal, dataset
# for dataset, one local `nla eval` over all layers (tests/tools/check_eval_run.py same).
# Skips (77) where Slurm cannot run (not installed, not root).
#   test_slurm_sweep.sh NLA_BINARY
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
nla=${1:?nla binary}
work=$(mktemp -d)
chmod 755 "$work"  # munged runs as the munge user
state=$work/slurm
cleanup() { "$repo/tests/tools/slurm_local.sh" stop "$state"; rm -rf "$work"; }
trap cleanup EXIT
status=0
"$repo/tests/tools/slurm_local.sh" start "$state" || status=$?
[[ $status -eq 0 ]] || exit $status
export SLURM_CONF=$state/slurm.conf

q="--log-level warn --threads 1"
"$nla" init-model --preset tiny --seed 2 --out "$work/model" $q
"$nla" extract --model "$work/model" --max-docs 60 --doc-stride 3 --layers all --positions-per-doc 3 \
  --min-position 16 --max-tokens 128 --out "$work/acts.h5" $q
"$nla" label --store "$work/acts.h5" $q
"$nla" train-ar --store "$work/acts.h5" --layer 1 --model "$work/model" --out "$work/train" --steps 2 --batch 8 $q
# The AV: the base model with the AR's nla_meta.yaml turned into an AV's (no AV training yet).
cp -r "$work/model" "$work/av"
sed 's/^role: ar$/role: av/' "$work/train/ar/nla_meta.yaml" > "$work/av/nla_meta.yaml"
cat > "$work/eval.ini" <<INI
[common]
threads = 1
[eval]
av = $work/av
ar = $work/train/ar
store = $work/acts.h5
samples = 8
batch = 4
max-new-tokens = 8
pool = 5
INI
cd "$repo"
NLA_BIN=$nla SWEEP_MERGE_WAIT=1 SWEEP_SBATCH_ARGS="--ntasks=2 --output=$work/job-%j.out" \
  slurm/submit_sweep.sh "$work/eval.ini" "$work/run" "0-1 2-3"
cat "$work"/job-*.out >&2
grep -q "nla-sweep job" "$work"/job-*.out
grep -q "eval-merge: 2 parts, 4 layers" "$work"/job-*.out
"$nla" eval --config "$work/eval.ini" --layers all --out "$work/single" --log-level warn
/usr/bin/python3 "$repo/tests/tools/check_eval_run.py" same "$work/single" "$work/run"
/usr/bin/python3 "$repo/tests/tools/check_eval_run.py" check "$work/run" "$work/acts.h5" >/dev/null
echo "slurm sweep: ok"
