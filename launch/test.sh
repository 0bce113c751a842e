#!/usr/bin/env bash
# Sets up (launch/setup.sh --tests: also the packages only tests use), then runs the test suite through CTest.
#
#   launch/test.sh                 every test (labels unit, mpi, slow, parity)
#   launch/test.sh --quick         only the label `unit`: one-process tests of seconds
#
# Other arguments go to ctest (e.g. -R attention to run a subset, -L mpi for one label).
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for a in "$@"; do
  if [[ "$a" == "--quick" ]]; then
    args+=(-L '^unit$')
  else
    args+=("$a")
  fi
done
launch/setup.sh --tests
# Open MPI refuses root without these; tests with more ranks than cores oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
cd "${STRAND_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j "${STRAND_TEST_JOBS:-2}" "${args[@]}"
