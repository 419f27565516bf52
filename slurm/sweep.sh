#!/usr/bin/env bash
# sbatch --array=0-(K-1) slurm/sweep.sh CONFIG.ini RUN "BLOCKS" [extra nla eval options]
# One array task per layer block (K blocks in BLOCKS, e.g. "0-6 7-13 14-20 21-27"): task i
# runs nla eval on block i into RUN/parts/i (every anchor of CONFIG: `av = A,B` and
# `ar = C,D` make each part a several-anchor run). slurm/sweep_merge.sh collects them
# afterwards; slurm/submit_sweep.sh submits both with the dependency.
# GPUs: one per rank (--gpus-per-node = --ntasks-per-node); each rank takes its node-local
# GPU (nla's --device auto, the default). CPU-only partition: sbatch --gpus-per-node=0 ...
# (auto then runs on the CPU; --device cpu forces it anywhere).
#SBATCH --job-name=nla-sweep
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=1
#SBATCH --time=08:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail
repo=${NLA_REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}}
cd "$repo"
mkdir -p logs
index=${SLURM_ARRAY_TASK_ID:?slurm/sweep.sh runs as an array job (sbatch --array=0-K)}
echo "nla-sweep job ${SLURM_ARRAY_JOB_ID:-?}_$index on $(hostname): ${SLURM_NTASKS:-?} tasks, GPUs per node ${SLURM_GPUS_PER_NODE:-none}, config $1, run $2, block $index of '$3'" >&2
config=$1 run=$2 blocks=$3
shift 3
exec jobs/sweep.sh part "$config" "$run" "$blocks" "$index" "$@"
