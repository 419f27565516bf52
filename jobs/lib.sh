# Shared by the stage scripts in jobs/: how to launch nla on N ranks, locally or in Slurm.
#   source jobs/lib.sh; nla_launch N extract --config ...
# Inside a Slurm allocation (SLURM_JOB_ID set) ranks come from srun --mpi=pmix; when srun
# cannot start them with PMIx (clusters without the plugin) mpirun inside the allocation
# takes over. Outside Slurm: mpirun -n N (as root: the OMPI_ALLOW_RUN_AS_ROOT pair).
#
# Stopping: SIGTERM, SIGINT or SIGUSR1 to this shell (Slurm's --signal=B:USR1@T before the
# time limit, scancel --batch --signal=..., kill) reaches every rank as SIGUSR1, on which
# nla train-ar / train-av / grpo checkpoint at the next step boundary and exit 138
# (128 + SIGUSR1); other commands end at once, as on SIGTERM. Why SIGUSR1 and a forward
# from here: srun answers a SIGTERM by SIGKILLing its tasks, and mpirun SIGKILLs the ranks
# 1 s after forwarding a SIGTERM, but both pass SIGUSR1 on to every rank untouched; and
# bash runs a trap only between commands, so the launcher runs in the background while
# this shell waits for it.

NLA_BIN=${NLA_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/bin/nla}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# NLA_DEVICE and NLA_PRECISION (unset: nla's default, auto) as --device / --precision, for
# the stages that run the model: nla_launch N grpo ... "${nla_device_options[@]}".
nla_device_options=()
if [[ -n ${NLA_DEVICE:-} ]]; then nla_device_options+=(--device "$NLA_DEVICE"); fi
if [[ -n ${NLA_PRECISION:-} ]]; then nla_device_options+=(--precision "$NLA_PRECISION"); fi

nla_launch() {
  local ranks=$1
  shift
  local launcher=(mpirun -n "$ranks")
  if [[ -n ${SLURM_JOB_ID:-} ]] && command -v srun >/dev/null; then
    if srun --mpi=list 2>&1 | grep -q pmix; then
      launcher=(srun --mpi=pmix -n "$ranks")
    else
      echo "jobs: srun has no PMIx plugin here; using mpirun inside the allocation" >&2
    fi
  fi
  "${launcher[@]}" "$NLA_BIN" "$@" &
  local pid=$! status=0
  trap "kill -USR1 $pid 2>/dev/null || true" TERM INT USR1
  while true; do
    wait "$pid" && status=0 || status=$?
    # A trap cuts wait short (status > 128) while the launcher runs on: wait again.
    kill -0 "$pid" 2>/dev/null || break
  done
  trap - TERM INT USR1
  return "$status"
}
