#!/usr/bin/env bash
# The first run of strand on a fresh machine: installs what is missing and builds (setup.sh),
# then trains configs/quickstart.yaml, a small GPT on a long-range copy task with 2048-token
# rows, each row split over 2 sequence-parallel MPI ranks (ring attention), and prints the task
# accuracy it reached.
#
#   launch/quickstart.sh                  # setup + build + train (a fresh run each time)
#   launch/quickstart.sh --set train.steps=200   # extra arguments go to `strand train`
#
# Environment: STRAND_BUILD_DIR (default build), OMP_NUM_THREADS (default: cores / 2 per rank).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh

build_dir="${STRAND_BUILD_DIR:-build}"
config=configs/quickstart.yaml
# The rank count and the run folder as strand resolves them (the file and any --set given here).
sets=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --set) ((i + 1 < ${#args[@]})) && sets+=(--set "${args[i + 1]}"); i=$((i + 1)) ;;
    --set=*) sets+=(--set "${args[i]#--set=}") ;;
  esac
done
get() { OMP_NUM_THREADS=1 "$build_dir/strand" config get "$1" "$config" "${sets[@]}"; }
ranks=$(( $(get parallel.dp) * $(get parallel.sp) ))
run_dir=$(get run.dir)
# Open MPI refuses to run as root without these (containers); harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One rank per core: OpenMP threads of 2 ranks must not fight over the same cores.
cores=$(nproc)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( cores / ranks > 0 ? cores / ranks : 1 ))}"

echo "quickstart: mpirun -np $ranks $build_dir/strand train $config ($OMP_NUM_THREADS thread(s) per rank)"
start=$(date +%s)
# checkpoint.resume=none: every quickstart is a fresh run (resume one with `strand train` itself).
# strand keeps a copy of what it prints in RUN_DIR/train.log.
mpirun -np "$ranks" --oversubscribe "$build_dir/strand" train "$config" --set checkpoint.resume=none "$@"
seconds=$(( $(date +%s) - start ))

final=$(grep '^final:' "$run_dir/train.log" | tail -n 1 || true)
if [[ -z "$final" ]]; then
  echo "quickstart: the run printed no final evaluation (see $run_dir/train.log)" >&2
  exit 1
fi
echo
echo "quickstart: trained in ${seconds}s; ${final#final: }"
echo "quickstart: metrics in $run_dir/metrics.jsonl, checkpoints in $run_dir/checkpoints/"
