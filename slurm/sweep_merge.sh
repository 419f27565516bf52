#!/usr/bin/env bash
# sbatch --dependency=afterok:ARRAY_JOB slurm/sweep_merge.sh RUN
# Collects RUN/parts/* of a sweep array into RUN (results.h5, summary.csv, config.ini,
# provenance.json; with several anchors RUN/anchor_<L>/ each and RUN/coverage.{csv,json})
# with nla eval-merge: one process, no MPI ranks needed.
#SBATCH --job-name=nla-sweep-merge
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --time=00:30:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail
repo=${NLA_REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}}
cd "$repo"
mkdir -p logs
echo "nla-sweep-merge job ${SLURM_JOB_ID:-local} on $(hostname): run $1" >&2
exec jobs/sweep.sh merge "$1"
