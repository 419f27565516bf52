#!/usr/bin/env bash
# Stage: GRPO of the AV against a live AR. Runs locally (mpirun) or inside a Slurm job (srun).
#   jobs/grpo.sh CONFIG.ini [extra nla grpo options]
#   NLA_RANKS (default: SLURM_NTASKS, else 2). The layout and the role group sizes come
#   from the config ([grpo] layout, trainer-ranks, rollout-ranks, reward-ranks); with
#   layout = split they must add up to NLA_RANKS (nla grpo refuses otherwise, with the sum).
#   NLA_DEVICE, NLA_PRECISION: --device / --precision (see jobs/lib.sh).
# Resumable: rerun the same command after a kill; it continues from <out>/trainer_state.
# SIGTERM, SIGINT or SIGUSR1 to this script stops the run after the step in progress with
# that step's checkpoint; the script then exits 138 (see jobs/lib.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
config=${1:?usage: jobs/grpo.sh CONFIG.ini [options]}
shift
ranks=${NLA_RANKS:-${SLURM_NTASKS:-2}}
nla_launch "$ranks" grpo --config "$config" "${nla_device_options[@]}" "$@"
