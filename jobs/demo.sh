#!/usr/bin/env bash
# The pipeline on the embedded default: every stage that exists, in order, on the tiny
# model and the bundled corpus. Runs locally with mpirun (NLA_RANKS ranks, default 2).
#   NLA_RUN_DIR (runs/demo)  NLA_RANKS (2)  NLA_BIN (build/bin/nla)  NLA_CONFIG (configs/demo.ini)
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${NLA_RUN_DIR:-runs/demo}
ranks=${NLA_RANKS:-2}
nla=${NLA_BIN:-build/bin/nla}
config=${NLA_CONFIG:-configs/demo.ini}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_mpi_yield_when_idle=1
mpirun_nla() { mpirun -n "$ranks" "$nla" "$@"; }
stage() { printf '\n=== %s\n' "$*" >&2; }
mkdir -p "$run_dir"
start=$(date +%s)

stage "1/4 init-model: seeded random tiny Qwen2 checkpoint"
"$nla" init-model --config "$config" --out "$run_dir/model" --overwrite

stage "2/4 extract: a spread-out subsample of the bundled corpus, all layers, $ranks ranks"
mpirun_nla extract --config "$config" --model "$run_dir/model" --out "$run_dir/acts.h5" --overwrite

stage "3/4 label: context descriptions (gold for AV SFT)"
"$nla" label --config "$config" --store "$run_dir/acts.h5"

stage "4/4 generate: the KV-cache generator on the chat template (random weights: random text)"
"$nla" generate --config "$config" --model "$run_dir/model"

echo "demo finished in $(($(date +%s) - start)) s: results in $run_dir (acts.h5: activations + gold descriptions)" >&2
