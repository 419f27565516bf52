#!/usr/bin/env bash
# sbatch slurm/extract.sh CONFIG.ini [extra nla extract options]
# Extraction on a cluster: one rank per task; the store is written collectively by all
# ranks (parallel HDF5 on a shared file system). Resumable: resubmit the same job.
#SBATCH --job-name=nla-extract
#SBATCH --nodes=1
#SBATCH --ntasks=4
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --signal=TERM@60
set -euo pipefail
repo=${NLA_REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}}
cd "$repo"
mkdir -p logs
echo "nla-extract job ${SLURM_JOB_ID:-local} on $(hostname): ${SLURM_NTASKS:-?} tasks, config $*" >&2
exec jobs/extract.sh "$@"
