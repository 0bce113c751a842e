#!/usr/bin/env bash
# The second thing to try after the quickstart: a byte-level GPT on tinyshakespeare
# (configs/shakespeare.yaml). Prepares the token shards from the text on first use, then trains.
#
#   launch/shakespeare.sh                         # prepare (once) + train
#   launch/shakespeare.sh --set train.steps=200   # extra arguments go to `strand train`
#   launch/shakespeare.sh --prepare-only          # only write the shards
#
# Environment: STRAND_BUILD_DIR (default build), SHAKESPEARE_TEXT (default
# ../shared/data/tinyshakespeare.txt, beside the repository), OMP_NUM_THREADS (default: every core).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${STRAND_BUILD_DIR:-build}"
text="${SHAKESPEARE_TEXT:-../shared/data/tinyshakespeare.txt}"
prefix=runs/data/shakespeare  # configs/shakespeare.yaml reads PREFIX_train.bin and PREFIX_val.bin
if [[ ! -x "$build_dir/strand" ]]; then
  echo "shakespeare: $build_dir/strand not found; build first (launch/setup.sh)" >&2
  exit 1
fi
if [[ ! -f "${prefix}_train.bin" || ! -f "${prefix}_val.bin" ]]; then
  if [[ ! -f "$text" ]]; then
    echo "shakespeare: $text not found (set SHAKESPEARE_TEXT to tinyshakespeare's input.txt)" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$prefix")"
  # Bytes as tokens (vocab 256), the last 10% of the text for validation.
  "$build_dir/strand" data prepare --input "$text" --out "$prefix" --tokenizer byte --quiet
fi
[[ "${1:-}" == --prepare-only ]] && exit 0

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
exec "$build_dir/strand" train configs/shakespeare.yaml "$@"
