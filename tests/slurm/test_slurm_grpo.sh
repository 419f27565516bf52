#!/usr/bin/env bash
# `sbatch slurm/grpo.sh CONFIG --layout split ...` on a real single-node Slurm started for
# this test (tests/tools/slurm_local.sh): 3 tasks through srun --mpi=pmix (trainer, rollout,
# reward) run 2 GRPO steps and write the metrics, the AV/AR checkpoints and trainer_state.
# The AV is the base model with an AV nla_meta.yaml (no SFT: this checks the plumbing).
# Skips (77) where Slurm cannot run (not installed, not root).
#   test_slurm_grpo.sh NLA_BINARY
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

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$nla" init-model --preset tiny --seed 2 --out "$work/model" --log-level warn
"$nla" extract --model "$work/model" --out "$work/acts.h5" --max-docs 24 --layers 1 --positions-per-doc 3 \
  --min-position 16 --max-tokens 128 --batch-docs 4 --log-level warn
"$nla" label --store "$work/acts.h5" --log-level warn
"$nla" train-ar --store "$work/acts.h5" --layer 1 --model "$work/model" --out "$work/ar_run" --steps 2 --batch 4 --validation-fraction 0.3 \
  --eval-every 0 --log-level warn
cp -r "$work/model" "$work/av"
sed 's/^role: ar/role: av/' "$work/ar_run/ar/nla_meta.yaml" > "$work/av/nla_meta.yaml"
cat > "$work/grpo.ini" <<INI
[grpo]
store = $work/acts.h5
av = $work/av
ar = $work/ar_run/ar
out = $work/run
steps = 2
activations-per-step = 2
samples-per-activation = 2
max-new-tokens = 4
checkpoint-every = 1
INI
cd "$repo"
NLA_BIN=$nla sbatch --wait --ntasks=3 --ntasks-per-node=3 --cpus-per-task=1 --output="$work/job.out" --export=ALL \
  slurm/grpo.sh "$work/grpo.ini" --layout split --trainer-ranks 1 --rollout-ranks 1 --reward-ranks 1
cat "$work/job.out" >&2
grep -q "nla-grpo job" "$work/job.out"
grep -q "split: trainer ranks 0, rollout 1, reward 2" "$work/job.out"
grep -q "grpo: done" "$work/job.out"
[[ $(wc -l < "$work/run/metrics.jsonl") -eq 2 ]]
for f in av/nla_meta.yaml ar/value_head.safetensors trainer_state/state.json config.ini provenance.json; do
  [[ -e $work/run/$f ]] || { echo "missing $f" >&2; exit 1; }
done
echo "slurm grpo: ok"
