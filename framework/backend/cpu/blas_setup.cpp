// OpenBLAS kernel selection at program start (see blas_setup.h).
#include "framework/backend/cpu/blas_setup.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

extern "C" char* openblas_get_corename(void);
extern "C" char* openblas_get_config(void);

namespace strand::cpu {

const char* blas_kernel_name() { return openblas_get_corename(); }
const char* blas_config() { return openblas_get_config(); }

void select_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const char* core = openblas_get_corename();
  const bool fallback = std::strcmp(core, "Prescott") == 0 || std::strcmp(core, "Core2") == 0 ||
                        std::strcmp(core, "Nehalem") == 0 || std::strcmp(core, "Unknown") == 0;
  if (!fallback) return;
  const char* wanted = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512cd"))
    wanted = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    wanted = "Haswell";
  if (wanted == nullptr) return;
  setenv("OPENBLAS_CORETYPE", wanted, 1);
  execv("/proc/self/exe", argv);
  // execv returns only on failure: carry on with the fallback kernels.
}

}  // namespace strand::cpu
