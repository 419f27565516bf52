#!/usr/bin/env bash
# slurm/submit_sweep.sh CONFIG.ini RUN "BLOCKS" [extra nla eval options]
# Submits the sweep array (one task per layer block) and the merge job that waits for it
# (afterok). Prints "array JOBID" and "merge JOBID". SWEEP_SBATCH_ARGS: extra sbatch
# arguments for both jobs (e.g. "--ntasks=8 --time=2:00:00"); SWEEP_MERGE_WAIT=1 makes the
# merge submission wait for the merge to finish (tests).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
config=${1:?usage: slurm/submit_sweep.sh CONFIG.ini RUN "BLOCKS" [options]}
run=${2:?RUN}
blocks=${3:?BLOCKS}
shift 3
read -r -a list <<<"$blocks"
read -r -a extra_sbatch <<<"${SWEEP_SBATCH_ARGS:-}"
array=$(sbatch --parsable "${extra_sbatch[@]}" --array=0-$((${#list[@]} - 1)) "$here/sweep.sh" "$config" "$run" "$blocks" "$@")
array=${array%%;*}
echo "array $array"
wait_flag=()
[[ ${SWEEP_MERGE_WAIT:-0} == 1 ]] && wait_flag=(--wait)
merge=$(sbatch --parsable "${wait_flag[@]}" "${extra_sbatch[@]}" --ntasks=1 --dependency=afterok:"$array" "$here/sweep_merge.sh" "$run")
echo "merge ${merge%%;*}"
