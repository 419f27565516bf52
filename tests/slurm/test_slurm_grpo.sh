#!/usr/bin/env bash
# `sbatch slurm/grpo.sh CONFIG --layout split ...` on a real single-node Slurm started for
# this test (tests/tools/slurm_local.sh): 3 tasks through srun --mpi=pmix (trainer, rollout,
# reward). A long job is stopped as its time limit would stop it (--signal=B:USR1: SIGUSR1
# to the batch shell only, here by scancel --batch): the ranks stop after the same step S
# with its checkpoint and the job ends with 138 (128 + SIGUSR1); the resubmitted job
# resumes from S, runs step S + 1 and writes the metrics, the AV/AR checkpoints and
# trainer_state. The AV is the base model with an AV nla_meta.yaml (no SFT: this checks
# the plumbing). Skips (77) where Slurm cannot run (not installed, not root).
#   test_slurm_grpo.sh NLA_BINARY
set -euo pipefail
source "$(dirname "$0")/slurm_test_lib.sh"  # repo, nla, work, a Slurm for this test

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
sbatch_grpo() {  # sbatch_grpo LOG [sbatch options] -- [nla grpo options]
  local log=$1 options=()
  shift
  while [[ $1 != -- ]]; do options+=("$1"); shift; done
  shift
  # The test Slurm has no GPUs (no gres): --gpus-per-node=0 as on a CPU-only partition.
  NLA_BIN=$nla sbatch "${options[@]}" --ntasks=3 --ntasks-per-node=3 --gpus-per-node=0 --cpus-per-task=1 --output="$work/$log" \
    --export=ALL slurm/grpo.sh "$work/grpo.ini" --layout split --trainer-ranks 1 --rollout-ranks 1 --reward-ranks 1 "$@"
}

# 1. 1000 steps, stopped once the first step is in metrics.jsonl.
job=$(sbatch_grpo stopped.out --parsable -- --steps 1000 | cut -d';' -f1)
until grep -qs '"step"' "$work/run/metrics.jsonl" || ! squeue -h -j "$job" | grep -q .; do sleep 0.5; done
scancel --batch --signal=USR1 "$job"
while squeue -h -j "$job" | grep -q .; do sleep 0.5; done
cat "$work/stopped.out" >&2
step=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["step"])' "$work/run/trainer_state/state.json")
grep -q "nla grpo: stopped by SIGUSR1 after step $step of 1000; checkpoint written to $work/run " "$work/stopped.out"
scontrol show job "$job" | grep -q "ExitCode=138:0"
[[ $(wc -l < "$work/run/metrics.jsonl") -eq $step ]]

# 2. Resubmitted with one more step: continues from the stop's checkpoint.
sbatch_grpo job.out --wait -- --steps $((step + 1))
cat "$work/job.out" >&2
grep -q "nla-grpo job" "$work/job.out"
grep -q "split: trainer ranks 0, rollout 1, reward 2" "$work/job.out"
grep -q "grpo: resuming after step $step" "$work/job.out"
grep -q "grpo: done" "$work/job.out"
[[ $(wc -l < "$work/run/metrics.jsonl") -eq $((step + 1)) ]]
for f in av/nla_meta.yaml ar/value_head.safetensors trainer_state/state.json config.ini provenance.json; do
  [[ -e $work/run/$f ]] || { echo "missing $f" >&2; exit 1; }
done
echo "slurm grpo: ok"
