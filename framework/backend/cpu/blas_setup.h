// OpenBLAS kernel selection. OpenBLAS 0.3.21 (Debian 12) does not know recent Xeon generations
// and falls back to its SSE3 ("Prescott") kernels, 5-10x slower than the AVX-512 ones the CPU
// runs. The kernel set is fixed when the library loads, from OPENBLAS_CORETYPE, so the only fix
// from inside a program is to set the variable and re-execute itself before doing any work.
#pragma once

namespace strand::cpu {

// When OpenBLAS chose its generic fallback although the CPU has AVX-512 (or AVX2 + FMA), sets
// OPENBLAS_CORETYPE to the matching kernel set (SkylakeX, Haswell) and re-executes the program
// with the same arguments. Does nothing when OPENBLAS_CORETYPE is set already (a user's choice
// is kept) or the detected kernels are not the fallback. Call first thing in main().
void select_blas_kernels(char** argv);

// The kernel set OpenBLAS runs ("SkylakeX", "Prescott", ...), for benchmark reports.
const char* blas_kernel_name();
// OpenBLAS's build description ("OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64"),
// for `strand --version`.
const char* blas_config();

}  // namespace strand::cpu
