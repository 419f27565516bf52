#!/usr/bin/env bash
# `sbatch slurm/extract.sh CONFIG` on a real single-node Slurm started for this test
# (tests/tools/slurm_local.sh): 3 tasks through srun --mpi=pmix write a complete store
# that h5py reads. Skips (77) where Slurm cannot run (not installed, not root).
#   test_slurm_extract.sh NLA_BINARY
set -euo pipefail
source "$(dirname "$0")/slurm_test_lib.sh"  # repo, nla, work, a Slurm for this test

"$nla" init-model --preset tiny --seed 2 --out "$work/model" --log-level warn
cat > "$work/extract.ini" <<INI
[extract]
model = $work/model
out = $work/acts.h5
max-docs = 12
layers = 1-2
positions-per-doc = 3
min-position = 16
max-tokens = 128
batch-docs = 2
INI
# The job runs from the repository (as a user's would); its log goes to the work dir.
cd "$repo"
# The test Slurm has no GPUs (no gres): --gpus-per-node=0 overrides the script's request,
# as on a CPU-only partition.
NLA_BIN=$nla sbatch --wait --ntasks=3 --gpus-per-node=0 --output="$work/job.out" --export=ALL slurm/extract.sh "$work/extract.ini"
cat "$work/job.out" >&2
grep -q "nla-extract job" "$work/job.out"
grep -q "extract: wrote $work/acts.h5" "$work/job.out"
grep -q "3 ranks" "$work/job.out"
/usr/bin/python3 "$repo/tests/tools/check_store_h5py.py" "$work/acts.h5"
echo "slurm extract: ok"
