#!/usr/bin/env bash
# Installs what strand needs (Debian 12 packages, only those missing) and builds into build/.
# Idempotent: a second run installs nothing and rebuilds only what changed.
#
#   launch/setup.sh            packages + configure + build
#   launch/setup.sh --tests    the same, and the packages only tests use (chromium, for the
#                              report page's browser test; launch/test.sh passes this), and
#                              transformers in a cached venv (launch/setup_transformers.sh)
#
# Environment: STRAND_BUILD_DIR (default build), STRAND_PORTABLE=1 (no -march=native),
# STRAND_CMAKE_ARGS (extra cmake arguments), STRAND_JOBS (parallel build jobs).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config ccache
          libopenblas-openmp-dev libdnnl-dev libopenmpi-dev openmpi-bin libhdf5-dev libyaml-cpp-dev
          libgtest-dev libcli11-dev libsentencepiece-dev libpng-dev
          python3 python3-torch python3-h5py python3-numpy)  # parity tests and benchmark peers
# Only the test suite needs a browser (tests/launch/report_cli_test.cpp loads `strand report`'s
# page) and python3-venv (the transformers venv of launch/setup_transformers.sh).
[[ "${1:-}" == "--tests" ]] && packages+=(chromium python3-venv)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup: not root; run this first, then run launch/setup.sh again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# Before configuring: tests/parity/parity.cmake looks for the venv's interpreter.
[[ "${1:-}" == "--tests" ]] && bash launch/setup_transformers.sh

build_dir="${STRAND_BUILD_DIR:-build}"
cmake_args=(-S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release)
[[ "${STRAND_PORTABLE:-0}" == "1" ]] && cmake_args+=(-DSTRAND_PORTABLE=ON)
# shellcheck disable=SC2206
[[ -n "${STRAND_CMAKE_ARGS:-}" ]] && cmake_args+=(${STRAND_CMAKE_ARGS})
cmake "${cmake_args[@]}" >/dev/null
cmake --build "$build_dir" -j "${STRAND_JOBS:-$(nproc)}"
echo "setup: built $build_dir/strand"
