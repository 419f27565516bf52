# Shared by the stage scripts in jobs/: how to launch nla on N ranks, locally or in Slurm.
#   source jobs/lib.sh; nla_launch N extract --config ...
# Inside a Slurm allocation (SLURM_JOB_ID set) ranks come from srun --mpi=pmix; when srun
# cannot start them with PMIx (clusters without the plugin) mpirun inside the allocation
# takes over. Outside Slurm: mpirun -n N (as root: the OMPI_ALLOW_RUN_AS_ROOT pair).

NLA_BIN=${NLA_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/bin/nla}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

nla_launch() {
  local ranks=$1
  shift
  if [[ -n ${SLURM_JOB_ID:-} ]] && command -v srun >/dev/null; then
    if srun --mpi=list 2>&1 | grep -q pmix; then
      srun --mpi=pmix -n "$ranks" "$NLA_BIN" "$@"
      return
    fi
    echo "jobs: srun has no PMIx plugin here; using mpirun inside the allocation" >&2
  fi
  mpirun -n "$ranks" "$NLA_BIN" "$@"
}
