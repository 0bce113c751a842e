// GoogleTest main for strand's test programs: picks OpenBLAS's kernels as the strand program does.
#include <gtest/gtest.h>

#include "framework/backend/cpu/blas_setup.h"

int main(int argc, char** argv) {
  strand::cpu::select_blas_kernels(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
