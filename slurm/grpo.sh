#!/usr/bin/env bash
# sbatch slurm/grpo.sh CONFIG.ini [extra nla grpo options]
# GRPO on a cluster: one rank per task, one GPU per rank (--gpus-per-node = tasks per
# node; each rank takes local rank % visible GPUs: nla's --device auto, the default).
# CPU-only partition: sbatch --gpus-per-node=0 ... (auto then runs on the CPU; --device cpu
# forces it anywhere). Pick the layout in the config or on the command line, e.g. 2 nodes
# x 4 GPUs:
#   sbatch --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 slurm/grpo.sh run.ini \
#       --layout split --trainer-ranks 4 --rollout-ranks 3 --reward-ranks 1
# Resumable: resubmit the same job after a timeout or preemption; it continues from the
# last checkpoint ([grpo] checkpoint-every steps, and the one a stop signal writes).
#
# Time limit: --signal=B:USR1@120 sends SIGUSR1 to this batch shell (B: only the shell, no
# step) 120 s before the limit; jobs/lib.sh forwards it to srun (or mpirun), which pass it
# on to every rank; nla grpo then finishes its step, writes the checkpoint of that step,
# prints "stopped by SIGUSR1 after step S of N; ..." and the job ends with status 138
# (128 + SIGUSR1). 120 s must cover one step plus a checkpoint: raise it for long steps.
# Not SIGTERM to the launcher: srun turns it into SIGKILL for the tasks, and mpirun kills
# the ranks 1 s after forwarding it. (Without B:, Slurm would signal the srun step's tasks
# directly, but not the ranks of the mpirun fallback on one node, which belong to the
# batch step.)
#SBATCH --job-name=nla-grpo
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=4
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --signal=B:USR1@120
set -euo pipefail
repo=${NLA_REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}}
cd "$repo"
mkdir -p logs
echo "nla-grpo job ${SLURM_JOB_ID:-local} on $(hostname): ${SLURM_JOB_NUM_NODES:-1} node(s), ${SLURM_NTASKS:-?} tasks, GPUs per node ${SLURM_GPUS_PER_NODE:-none}, config $*" >&2
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
exec jobs/grpo.sh "$@"  # exec: the same process, so the B: signal reaches jobs/lib.sh's trap
