#!/usr/bin/env bash
# Trains every example config (configs/examples/*.yaml) and configs/shakespeare.yaml from
# scratch and checks each against the target written in the config as a comment line
#   # target: val_accuracy >= 0.9
# read from the last record of its metrics.jsonl that holds the metric. Prints a table and
# exits non-zero when any run fails or misses its target. Not part of CI (minutes per example);
# docs/examples.md records its last output.
#
#   launch/examples_check.sh                    # every example, then shakespeare
#   launch/examples_check.sh gpt-causal encdec-copy shakespeare   # some of them, by name
#
# Environment: STRAND_BUILD_DIR (default build), OMP_NUM_THREADS (default: every core),
# CHECK_DIR (run folders, default runs/examples_check).
set -uo pipefail
cd "$(dirname "$0")/.."

build_dir="${STRAND_BUILD_DIR:-build}"
strand="$build_dir/strand"
if [[ ! -x "$strand" ]]; then
  echo "examples_check: $strand not found; build first (launch/setup.sh)" >&2
  exit 2
fi
check_dir="${CHECK_DIR:-runs/examples_check}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"

configs=()
if (($# == 0)); then
  configs=(configs/examples/*.yaml configs/shakespeare.yaml)
else
  for name in "$@"; do
    if [[ -f "configs/examples/$name.yaml" ]]; then configs+=("configs/examples/$name.yaml")
    elif [[ -f "configs/$name.yaml" ]]; then configs+=("configs/$name.yaml")
    else echo "examples_check: no config named $name (configs/examples/$name.yaml or configs/$name.yaml)" >&2; exit 2
    fi
  done
fi

rows=()
failed=0
for config in "${configs[@]}"; do
  name=$(basename "$config" .yaml)
  # "# target: METRIC OP VALUE", OP one of >= <=.
  read -r metric op want < <(sed -n 's/^# target: *\([a-z_]*\) *\([<>]=\) *\([0-9.eE+-]*\).*/\1 \2 \3/p' "$config" | head -n 1)
  if [[ -z "${metric:-}" ]]; then
    echo "examples_check: $config has no '# target: METRIC >= VALUE' line" >&2
    rows+=("$name|-|-|-|0|FAIL")
    failed=1
    continue
  fi
  run_dir="$check_dir/$name"
  rm -rf "$run_dir"
  mkdir -p "$run_dir"
  if [[ "$name" == shakespeare ]]; then
    launch/shakespeare.sh --prepare-only >/dev/null || { rows+=("$name|$metric|$op $want|no data|0|FAIL"); failed=1; continue; }
  fi
  echo "examples_check: $name ($OMP_NUM_THREADS threads) -> $run_dir/train.log"
  start=$(date +%s.%N)
  "$strand" train "$config" --set "run.dir=$run_dir" --set checkpoint.resume=none >"$run_dir/train.log" 2>&1
  code=$?
  seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
  # The metric's last value: metrics.jsonl writes `"name": number`.
  got=$(grep -o "\"$metric\": [-0-9.eE+]*" "$run_dir/metrics.jsonl" 2>/dev/null | tail -n 1 | sed 's/.*: //')
  verdict=FAIL
  if ((code == 0)) && [[ -n "$got" ]] &&
     awk -v g="$got" -v w="$want" -v op="$op" 'BEGIN { exit !((op == ">=") ? g + 0 >= w + 0 : g + 0 <= w + 0) }'; then
    verdict=PASS
  fi
  [[ "$verdict" == PASS ]] || failed=1
  if ((code != 0)); then got="exit $code"; elif [[ -n "$got" ]]; then got=$(awk -v g="$got" 'BEGIN { printf "%.4f", g }'); fi
  rows+=("$name|$metric|$op $want|${got:-none}|$seconds|$verdict")
done

echo
printf '%-18s %-17s %-8s %-9s %8s  %s\n' example metric target result seconds verdict
for row in "${rows[@]}"; do
  IFS='|' read -r n m t g s v <<<"$row"
  printf '%-18s %-17s %-8s %-9s %8s  %s\n' "$n" "$m" "$t" "$g" "$s" "$v"
done
echo "($(nproc --all) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1))"
exit "$failed"
