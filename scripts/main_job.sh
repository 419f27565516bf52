#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the pipeline on the embedded
# default (jobs/demo.sh) with several MPI ranks. Output goes to runs/demo/ (override with
# NLA_RUN_DIR); the last line says where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec jobs/demo.sh "$@"
