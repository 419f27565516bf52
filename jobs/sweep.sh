#!/usr/bin/env bash
# Stage: the evaluation sweep (nla eval) split into layer blocks, then merged into one run
# directory laid out exactly as a single `nla eval` over all the layers.
#   jobs/sweep.sh all   CONFIG.ini RUN "BLOCKS" [extra nla eval options]   every block here, then merge
#   jobs/sweep.sh part  CONFIG.ini RUN "BLOCKS" INDEX [extra options]      block INDEX -> RUN/parts/INDEX
#   jobs/sweep.sh merge RUN                                                RUN/parts/* -> RUN
# BLOCKS: space-separated layer specs, one per part, e.g. "0-6 7-13 14-20 21-27".
# Every part uses the same rows and seeds (same CONFIG), so merging gives the single run's
# numbers. With several anchors in CONFIG (av = A,B and ar = C,D) each part is a
# several-anchor run and the merge gives the one-call layout: RUN/anchor_<L>/ per anchor and
# RUN/coverage.{csv,json}. NLA_RANKS (default: SLURM_NTASKS, else 2) ranks per part;
# NLA_DEVICE, NLA_PRECISION: --device / --precision (see jobs/lib.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
mode=${1:?usage: jobs/sweep.sh all|part|merge ...}
shift
ranks=${NLA_RANKS:-${SLURM_NTASKS:-2}}

run_part() {  # CONFIG RUN BLOCKS INDEX [extra]
  local config=$1 run=$2 index=$4
  local -a blocks
  read -r -a blocks <<<"$3"
  shift 4
  [[ $index -ge 0 && $index -lt ${#blocks[@]} ]] || { echo "jobs/sweep.sh: part $index: expected 0..$((${#blocks[@]} - 1))" >&2; exit 2; }
  nla_launch "$ranks" eval --config "$config" --layers "${blocks[$index]}" --out "$run/parts/$index" \
    "${nla_device_options[@]}" "$@"
}

case $mode in
  part) run_part "$@" ;;
  merge) "$NLA_BIN" eval-merge "${1:?RUN}/parts" --out "$1" ;;
  all)
    config=${1:?CONFIG}; run=${2:?RUN}; blocks=${3:?BLOCKS}
    shift 3
    read -r -a list <<<"$blocks"
    for index in "${!list[@]}"; do run_part "$config" "$run" "$blocks" "$index" "$@"; done
    "$NLA_BIN" eval-merge "$run/parts" --out "$run" ;;
  *) echo "jobs/sweep.sh: mode '$mode': expected all, part or merge" >&2; exit 2 ;;
esac
