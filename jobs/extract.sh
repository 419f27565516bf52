#!/usr/bin/env bash
# Stage: corpus -> activation store. Runs locally (mpirun) or inside a Slurm job (srun).
#   jobs/extract.sh CONFIG.ini [extra nla extract options]
#   NLA_RANKS (default: SLURM_NTASKS, else 2); NLA_DEVICE, NLA_PRECISION (see jobs/lib.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
config=${1:?usage: jobs/extract.sh CONFIG.ini [options]}
shift
ranks=${NLA_RANKS:-${SLURM_NTASKS:-2}}
nla_launch "$ranks" extract --config "$config" "${nla_device_options[@]}" "$@"
