# Shared setup of tests/slurm/test_slurm_*.sh, sourced after `set -euo pipefail` with the
# test's arguments (NLA_BINARY) in place: a work directory and a real single-node Slurm
# started for the test (tests/tools/slurm_local.sh), both stopped / removed on exit.
# Sets repo, nla, work, state and SLURM_CONF; exits 77 (ctest's skip code) where Slurm
# cannot run (not installed, not root).
#   source "$(dirname "$0")/slurm_test_lib.sh"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
nla=${1:?nla binary}
work=$(mktemp -d)
chmod 755 "$work"  # munged runs as the munge user
state=$work/slurm
cleanup() { "$repo/tests/tools/slurm_local.sh" stop "$state"; rm -rf "$work"; }
trap cleanup EXIT
status=0
"$repo/tests/tools/slurm_local.sh" start "$state" || status=$?
[[ $status -eq 0 ]] || exit $status
export SLURM_CONF=$state/slurm.conf
