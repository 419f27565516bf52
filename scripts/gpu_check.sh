#!/usr/bin/env bash
# One command on a GPU node: builds nla with CUDA (the `cuda` preset, build-gpu/), runs the tests
# labelled gpu, runs the GPU benchmarks at qwen2.5-0.5b and qwen2.5-7b, and prints one markdown
# table. Every stage runs even when an earlier one failed (the table says which); the exit status
# is 1 when any stage failed or did not fit in the time budget.
#   scripts/gpu_check.sh
# Environment (all optional):
#   Torch_DIR            LibTorch's CMake folder; default: the pip torch of $PYTHON (python3)
#   NCCL_HOME            an NCCL with lib/ and include/; default: CMake finds the wheel's NCCL beside
#                        torch, or this script links one from the wheel, or the CUDA toolkit's
#   OUT                  where the log, the table and the bench JSON go (default build-gpu/gpu_check)
#   NLA_GPU_CHECK_BUDGET_S  seconds for the whole check (default 510); stages beyond it are skipped
# Dependencies: system/module MPI, parallel HDF5, Boost; or, when .gpu/deps_env.sh is present, the
# Debian packages in .gpu/debs unpacked by it (see docs/gpu-build.md).
set -uo pipefail   # no -e: a failed stage is recorded and the next one runs
cd "$(dirname "$0")/.." || exit 2
root=$PWD
build=$root/build-gpu
out=${OUT:-$build/gpu_check}
mkdir -p "$out" || exit 2
log=$out/gpu_check.log
table=$out/gpu_check.md
: >"$log"
start=$(date +%s)
budget=${NLA_GPU_CHECK_BUDGET_S:-510}
jobs=$(nproc)
python=${PYTHON:-python3}

rows=()       # markdown rows: | stage | result | detail |
failures=0    # stages FAILED
unfinished=0  # stages skipped or stopped by the time budget
say() { echo "gpu_check: $*" | tee -a "$log"; }
record() {  # record STAGE RESULT DETAIL
  rows+=("| $1 | $2 | $3 |")
  if [[ $2 == FAILED* ]]; then failures=$((failures + 1)); fi
  if [[ $2 == skipped* || $2 == unfinished* ]]; then unfinished=$((unfinished + 1)); fi
  say "$1: $2${3:+ ($3)}"
}
elapsed() { echo $(($(date +%s) - start)); }
left() { echo $((budget - $(elapsed))); }

# ---- dependencies ---------------------------------------------------------------------------
if [[ -f .gpu/deps_env.sh ]]; then
  export DEBS=${DEBS:-$root/.gpu/debs}
  # deps_env.sh is written for a plain shell (its `ldconfig -p | grep -q` must not fail on SIGPIPE).
  set +uo pipefail
  # shellcheck disable=SC1091
  source .gpu/deps_env.sh >>"$log" 2>&1
  set -uo pipefail
  say "dependencies: Debian packages from .gpu/ (D=${D:-/opt/deps})"
else
  NLA_DEPS_CMAKE_ARGS=()
  say "dependencies: the system's (no .gpu/deps_env.sh)"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# ---- LibTorch and NCCL ----------------------------------------------------------------------
torch_ok=1
if [[ -z ${Torch_DIR:-} ]]; then
  if prefix=$("$python" -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>>"$log"); then
    export Torch_DIR=$prefix/Torch
  else
    torch_ok=0
    record "LibTorch" "FAILED" "no Torch_DIR and \`$python -c 'import torch'\` failed: pip install torch, or export Torch_DIR"
  fi
fi
if ((torch_ok)); then
  if [[ -f $Torch_DIR/TorchConfig.cmake ]]; then
    record "LibTorch" "ok" "$Torch_DIR"
  else
    torch_ok=0
    record "LibTorch" "FAILED" "$Torch_DIR/TorchConfig.cmake missing"
  fi
fi

# CMake looks for the wheel's NCCL at <site-packages>/nvidia/*/lib beside the torch of Torch_DIR.
# When the wheel lives elsewhere, a folder of links stands in for NCCL_HOME.
if ((torch_ok)) && [[ -z ${NCCL_HOME:-} ]]; then
  site=$(cd "$Torch_DIR/../../../.." 2>/dev/null && pwd)
  if ! compgen -G "$site/nvidia/*/lib/libnccl.so*" >/dev/null; then
    wheel=$("$python" -c 'import importlib.util as u;s=u.find_spec("nvidia.nccl");print(s.submodule_search_locations[0])' 2>>"$log")
    if [[ -n $wheel && -e $wheel/lib/libnccl.so.2 ]]; then
      export NCCL_HOME=$build/nccl_home
      mkdir -p "$NCCL_HOME/lib" && ln -sfn "$wheel/lib/libnccl.so.2" "$NCCL_HOME/lib/libnccl.so" &&
        ln -sfn "$wheel/include" "$NCCL_HOME/include"
      say "NCCL_HOME=$NCCL_HOME (links to the wheel's $wheel)"
    fi
  fi
fi

# ---- configure and build --------------------------------------------------------------------
arch=90
if command -v nvidia-smi >/dev/null; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>>"$log" | head -n1 | tr -d ' .')
  [[ $cap =~ ^[0-9]+$ ]] && arch=$cap
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$log" 2>&1
fi

configured=0
built=0
if ((torch_ok)); then
  configure_args=(--preset cuda -DNLA_CUDA_ARCHITECTURES="$arch" -DTorch_DIR="$Torch_DIR" "${NLA_DEPS_CMAKE_ARGS[@]}")
  [[ ! -f $build/CMakeCache.txt ]] && command -v ninja >/dev/null && configure_args+=(-G Ninja)
  t0=$(date +%s)
  say "configure: cmake ${configure_args[*]}"
  if cmake "${configure_args[@]}" >>"$log" 2>&1; then
    configured=1
    record "configure" "ok" "NLA_CUDA_ARCHITECTURES=$arch, $(($(date +%s) - t0)) s"
  elif grep -q "Compatibility with CMake < 3.5" "$log"; then
    # A third-party CMake file (not nla's: it requires 3.25) still declares a pre-3.5 policy.
    if cmake "${configure_args[@]}" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >>"$log" 2>&1; then
      configured=1
      record "configure" "ok" "needed -DCMAKE_POLICY_VERSION_MINIMUM=3.5 for a third-party config (see log)"
    else
      record "configure" "FAILED" "see $log"
    fi
  else
    record "configure" "FAILED" "see $log"
  fi
  grep -E "^--   (LibTorch|NCCL|CUDA toolkit|TORCH_CUDA_ARCH_LIST|MPI |HDF5|Boost) " "$log" | sed 's/^--  //' | tee -a "$out/configure_summary.txt"
fi

gpu_test_targets=()
if ((configured)); then
  # The targets of the tests labelled gpu. tests/CMakeLists.txt names a test after its GoogleTest
  # binary (NAME, or NAME_np<N> under the MPI launcher); ctest lists no command for a binary not
  # built yet, so the name is what there is to go by.
  mapfile -t gpu_test_targets < <(ctest --test-dir "$build" -L gpu --show-only=json-v1 2>>"$log" | "$python" -c '
import json, re, sys
print("\n".join(sorted({re.sub(r"_np[0-9]+$", "", test["name"]) for test in json.load(sys.stdin).get("tests", [])})))' \
    2>>"$log")
  t0=$(date +%s)
  if cmake --build "$build" -j "$jobs" --target nla "${gpu_test_targets[@]}" >>"$log" 2>&1; then
    built=1
    record "build nla + gpu tests" "ok" "$(($(date +%s) - t0)) s, $jobs jobs, ${#gpu_test_targets[@]} test binaries"
  else
    record "build nla + gpu tests" "FAILED" "$(grep -m1 -E 'error:|Error [0-9]' "$log" | cut -c1-160)"
  fi
else
  record "build" "FAILED" "not configured"
fi

# ---- tests labelled gpu ---------------------------------------------------------------------
if ((built)); then
  t0=$(date +%s)
  limit=$(($(left) - 200))   # keep time for the benchmarks
  ((limit > 240)) && limit=240
  if ((limit < 30)); then
    record "gpu tests" "skipped" "time budget spent"
  else
    timeout "$limit" ctest --test-dir "$build" -L gpu --output-on-failure >"$out/ctest_gpu.log" 2>&1
    status=$?
    cat "$out/ctest_gpu.log" >>"$log"
    passed=$(grep -cE 'Test +#[0-9]+: .* Passed' "$out/ctest_gpu.log")
    failed=$(grep -cE 'Test +#[0-9]+: .*\*\*\*(Failed|Exception|Timeout|Not Run)' "$out/ctest_gpu.log")
    skipped=$(grep -cE 'Test +#[0-9]+: .*\*\*\*Skipped' "$out/ctest_gpu.log")
    detail="$passed passed, $failed failed, $skipped skipped, $(($(date +%s) - t0)) s"
    if ((status == 124)); then
      record "gpu tests" "FAILED" "stopped after $limit s; $detail"
    elif ((status != 0 || failed > 0 || passed == 0)); then
      # None passed: no test labelled gpu, or every one skipped (no CUDA device visible).
      record "gpu tests" "FAILED" "$detail$( ((passed + failed + skipped == 0)) && echo ', no test labelled gpu')"
    else
      record "gpu tests" "ok" "$detail"
    fi
  fi
else
  record "gpu tests" "FAILED" "not built"
fi

# ---- benchmarks -----------------------------------------------------------------------------
nla=$build/bin/nla
device_args=()
if ((built)) && "$nla" bench --help 2>/dev/null | grep -q -- '--device'; then device_args=(--device cuda); fi
# name | arguments. Sizes fit an H200 (141 GB) with room: qwen2.5-7b trains at B=1 T=1024 in bf16
# (weights, gradients, AdamW moments ~60 GB, activations ~15 GB).
benches=(
  "matmul|matmul"
  "forward 0.5b|forward --preset qwen2.5-0.5b --batch 8 --seq-len 1024 --repeats 3"
  "train-step 0.5b|train-step --preset qwen2.5-0.5b --batch 8 --seq-len 1024 --repeats 3"
  "generate 0.5b|generate --preset qwen2.5-0.5b --batch-sizes 1,32,128 --seq-len 128 --new-tokens 128 --repeats 2 --reference=false"
  "forward 7b|forward --preset qwen2.5-7b --batch 4 --seq-len 1024 --repeats 3"
  "train-step 7b|train-step --preset qwen2.5-7b --batch 1 --seq-len 1024 --repeats 2"
  "generate 7b|generate --preset qwen2.5-7b --batch-sizes 1,32,128 --seq-len 128 --new-tokens 128 --repeats 2 --reference=false"
)
for entry in "${benches[@]}"; do
  label=${entry%%|*}
  read -ra arguments <<<"${entry#*|}"
  json=$out/bench_${label// /_}.json
  if ((!built)); then
    record "bench $label" "FAILED" "not built"
    continue
  fi
  limit=$(($(left) - 10))
  ((limit > 180)) && limit=180
  if ((limit < 20)); then
    record "bench $label" "skipped" "time budget spent"
    continue
  fi
  t0=$(date +%s)
  timeout "$limit" "$nla" bench "${arguments[@]}" "${device_args[@]}" --out "$json" >>"$log" 2>&1
  status=$?
  if ((status != 0)); then
    record "bench $label" "FAILED" "exit $status$( ((status == 124)) && echo " (over $limit s)"), see log"
    continue
  fi
  # The headline figure and the fraction of the peak of the model's precision.
  summary=$("$python" - "$json" <<'EOF' 2>>"$log"
import json, sys
rows = {row["metric"]: row for row in json.load(open(sys.argv[1]))["rows"]}
def value(name):
    row = rows.get(name)
    return None if row is None else row["value"]
if "gemm bf16 n=8192" in rows:
    print("bf16 %.0f / tf32 %.0f / fp32 %.0f GFLOP/s" % tuple(value("gemm %s n=8192" % p) for p in ("bf16", "tf32", "fp32")))
    sys.exit()
if "gemm n=2048" in rows:
    print("fp32 %.0f GFLOP/s (CPU: no CUDA device)" % max(value("gemm n=%d" % n) for n in (512, 1024, 2048)))
    sys.exit()
sizes = [name.split()[0] for name in rows if name.startswith("B=") and name.endswith(" decode ms/step")]
if sizes:  # generate: each batch size's decode rate and step time
    def graph(b):  # the captured decode step's time, when the bench ran it (CUDA)
        other = value(b + " decode ms/step with CUDA graph")
        return "" if other is None else " (CUDA graph %.1f)" % other
    print("; ".join("%s %.0f new tok/s, %.1f ms/step%s" % (b, value(b + " decode tokens/s"), value(b + " decode ms/step"), graph(b))
                    for b in sizes))
    sys.exit()
headline = next(name for name in ("tokens/s", "tokens/s (fwd+bwd)") if name in rows)
fraction = value("fraction of peak")
if "AdamW step / fwd+bwd" in rows:
    headline_note = "; AdamW %.1f ms = %.2f of fwd+bwd" % (value("time AdamW step"), value("AdamW step / fwd+bwd"))
else:
    headline_note = ""
peak = rows["gemm peak (this run)"]
print("%.0f %s; MFU %.3f of %.0f GFLOP/s (%s)%s" % (value(headline), headline, fraction, peak["value"], peak["note"], headline_note))
EOF
  )
  record "bench $label" "ok" "${summary:-unreadable $json}, $(($(date +%s) - t0)) s"
done

# ---- the rest of the tests compile too (last: the benchmarks matter more) ---------------------
if ((configured)); then
  limit=$(($(left) - 5))
  if ((limit < 30)); then
    record "build all tests" "skipped" "time budget spent"
  else
    t0=$(date +%s)
    timeout "$limit" cmake --build "$build" -j "$jobs" >>"$log" 2>&1
    status=$?
    if ((status == 0)); then
      record "build all tests" "ok" "$(($(date +%s) - t0)) s"
    elif ((status == 124)); then
      record "build all tests" "unfinished" "stopped at the time budget after $limit s"
    else
      record "build all tests" "FAILED" "$(grep -m1 -E 'error:|Error [0-9]' "$log" | cut -c1-160)"
    fi
  fi
fi

# ---- the table --------------------------------------------------------------------------------
{
  echo "| stage | result | detail |"
  echo "| --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  echo
  echo "$(hostname -s), $(date -u +%Y-%m-%dT%H:%MZ), $(elapsed) s in all (budget $budget s);" \
    "$failures failed, $unfinished not done within the budget; log: $log"
} >"$table"
echo
cat "$table"
((failures == 0 && unfinished == 0))
