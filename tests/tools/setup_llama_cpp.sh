#!/bin/bash
# Installs node-llama-cpp@3.22.1 into third_party/llama/ and builds its bundled llama.cpp
# from source (CPU only; no prebuilt binaries with --omit=optional). Idempotent: a stamp
# file marks a finished build. Used by the llama.cpp parity test and `nla bench generate`.
# Nothing here goes into git: the folder holds its own .gitignore ("*").
#   NLA_LLAMA_DIR   install folder (default <repo>/third_party/llama)
#   NLA_LLAMA_JOBS  build jobs (default: all cores)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${NLA_LLAMA_DIR:-$repo/third_party/llama}
version=3.22.1
stamp=$dir/.nla-built-$version
say() { echo "[setup_llama_cpp] $*" >&2; }

if [[ -f $stamp ]]; then
  say "node-llama-cpp $version already built in $dir"
  exit 0
fi
command -v node >/dev/null && command -v npm >/dev/null || { say "node/npm not found: skipped"; exit 1; }
command -v cmake >/dev/null || { say "cmake not found: skipped"; exit 1; }
mkdir -p "$dir"
echo '*' > "$dir/.gitignore"
cd "$dir"
[[ -f package.json ]] || echo '{"name": "nla-llama", "private": true}' > package.json
if [[ ! -f node_modules/node-llama-cpp/package.json ]]; then
  say "npm install node-llama-cpp@$version (no prebuilt binaries)"
  NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --no-audit --no-fund --loglevel=error \
    node-llama-cpp@$version
fi
start=$(date +%s)
say "building llama.cpp from node_modules/node-llama-cpp/llama/gitRelease.bundle (CPU)"
export NODE_LLAMA_CPP_GPU=false
export CMAKE_BUILD_PARALLEL_LEVEL=${NLA_LLAMA_JOBS:-$(nproc)}
# The local git bundle of the release is used (no network beyond npm).
npx --no node-llama-cpp source download --gpu false --noUsageExample
end=$(date +%s)
say "built in $((end - start)) s"
echo "$((end - start))" > "$stamp"
