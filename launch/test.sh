#!/usr/bin/env bash
# Sets up (launch/setup.sh), then runs the whole test suite through CTest.
# Extra arguments go to ctest (e.g. -R Attention to run a subset).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
# Open MPI refuses root without these; tests with more ranks than cores oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
cd "${STRAND_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j "${STRAND_TEST_JOBS:-2}" "$@"
