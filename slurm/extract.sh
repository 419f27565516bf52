#!/usr/bin/env bash
# sbatch slurm/extract.sh CONFIG.ini [extra nla extract options]
# Extraction on a cluster: one rank per task; the store is written collectively by all
# ranks (parallel HDF5 on a shared file system). Resumable: resubmit the same job.
# GPUs: one per rank (--gpus-per-node = --ntasks-per-node); each rank takes its node-local
# GPU (nla's --device auto, the default). CPU-only partition: sbatch --gpus-per-node=0 ...
# (auto then runs on the CPU; --device cpu forces it anywhere).
#SBATCH --job-name=nla-extract
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --signal=TERM@60
set -euo pipefail
repo=${NLA_REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}}
cd "$repo"
mkdir -p logs
echo "nla-extract job ${SLURM_JOB_ID:-local} on $(hostname): ${SLURM_NTASKS:-?} tasks, GPUs per node ${SLURM_GPUS_PER_NODE:-none}, config $*" >&2
exec jobs/extract.sh "$@"
