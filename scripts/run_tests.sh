#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test (ctest).
#   scripts/run_tests.sh [ctest options, e.g. -R tokenizer]
#   scripts/run_tests.sh -L gpu    the GPU tier (tests/gpu; each test skips without a CUDA device)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/setup.sh --references
set_up=$(date +%s)
scripts/build.sh
built=$(date +%s)
# Launching MPI as root (containers, CI) needs these; ctest passes them to MPI tests too.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd build
ctest --output-on-failure -j "${NLA_TEST_JOBS:-$(nproc)}" "$@"
echo "setup $((set_up - start)) s, build $((built - set_up)) s, tests $(($(date +%s) - built)) s"
