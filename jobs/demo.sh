#!/usr/bin/env bash
# The pipeline on the embedded default: every stage that exists, in order, on the tiny
# model and the bundled corpus. Runs locally with mpirun (NLA_RANKS ranks, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${NLA_RUN_DIR:-runs/demo}
ranks=${NLA_RANKS:-2}
nla=${NLA_BIN:-build/bin/nla}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
mpirun_nla() { mpirun -n "$ranks" "$nla" "$@"; }
stage() { printf '\n=== %s\n' "$*" >&2; }
mkdir -p "$run_dir"

stage "machine yardstick: fp32 GEMM peak"
"$nla" bench matmul --repeats 2 --out "$run_dir/bench_matmul.json"

echo "demo finished: results in $run_dir" >&2
