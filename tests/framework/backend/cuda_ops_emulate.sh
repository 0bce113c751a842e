#!/usr/bin/env bash
# Runs the CUDA kernel tests (cuda_ops_test, cuda_train_ops_test, cuda_gemm_ops_test) on the CPU, without a GPU: the
# .cu kernels are compiled as C++ against the emulation in cuda_ops_emulation/ (blocks run one
# after another as host threads, shared memory, barriers and warp shuffles emulated; a naive
# cuBLASLt), linked with the real ops.cpp, register.cpp and gemm.cpp and the test objects of the
# build tree. It checks the kernels' arithmetic and indexing against the CPU kernels; it says
# nothing of GPU memory ordering, timing or speed (launch/device_check.sh runs the real thing).
#
#   tests/framework/backend/cuda_ops_emulate.sh [gtest arguments]
#
# Needs a CUDA build (STRAND_BUILD_DIR, default build). Slow: one host thread per CUDA thread
# (the norm test takes minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$PWD
build="${STRAND_BUILD_DIR:-build}"
emu=tests/framework/backend/cuda_ops_emulation
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

ninja -C "$build" framework_backend_cuda_ops_test framework_backend_cuda_train_ops_test \
  framework_backend_cuda_gemm_ops_test >/dev/null
[[ -f "$build/CMakeFiles/strand_tensor.dir/framework/backend/cuda/ops.cpp.o" ]] ||
  { echo "cuda_ops_emulate: $build is not a CUDA build" >&2; exit 1; }

flags=(-std=c++20 -O1 -Wall -Wextra -I"$root/$emu" -I"$root")
for f in elementwise rows loss misc; do
  # kernel<T><<<grid, block, smem, stream>>>(args) -> emu::launch(emu::Cfg{grid, block, smem, stream}, kernel<T>, args)
  python3 - "framework/backend/cuda/$f.cu" "$out/$f.cpp" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
s = re.sub(r'([A-Za-z_]\w*(?:<T>)?)<<<(.*?)>>>\(', r'emu::launch(emu::Cfg{\2}, \1, ', s, flags=re.S)
open(sys.argv[2], 'w').write(s)
PY
  g++ "${flags[@]}" -c "$out/$f.cpp" -o "$out/$f.o"
done
g++ "${flags[@]}" -c "$emu/runtime.cpp" -o "$out/runtime.o"
# The attention kernels (attention*.cu) are not emulated: register.cpp names their launchers, so
# stand-ins that refuse take their place (cuda_attention_test.cpp checks them on a GPU only).
cat > "$out/attention_stub.cpp" <<'CPP'
#include "framework/backend/cuda/attention_api.h"
#include "framework/core/error.h"
namespace strand::cuda {
[[noreturn]] static void not_emulated() { throw DeviceError("cuda attention: not part of the CPU emulation"); }
void attention_forward(const AttentionArgs&) { not_emulated(); }
void attention_backward(const AttentionArgs&) { not_emulated(); }
void attention_merge_forward(const AttentionMergeArgs&) { not_emulated(); }
void attention_merge_backward(const AttentionMergeArgs&) { not_emulated(); }
void attention_add_rows(const AttentionMergeArgs&) { not_emulated(); }
}  // namespace strand::cuda
CPP
g++ "${flags[@]}" -c "$out/attention_stub.cpp" -o "$out/attention_stub.o"
g++ "${flags[@]}" -c framework/backend/cuda/gemm.cpp -o "$out/gemm.o"

cd "$build"
cuda_objs=(CMakeFiles/strand_tensor.dir/framework/backend/cuda/{ops,register,device_runtime,attention_launch}.cpp.o)
status=0
for t in cuda_ops_test cuda_train_ops_test cuda_gemm_ops_test; do
  target=framework_backend_$t
  dir=tests/CMakeFiles/$target.dir
  # The test's own link line, less its objects and the CUDA libraries (the emulation replaces them).
  mapfile -t libs < <(ninja -t commands "$target" | tail -1 | tr ' ' '\n' |
                      grep -E '\.(so|a)(\.[0-9.]+)?$' | grep -vE 'cuda|cublas|nccl|culibos')
  g++ -o "$out/$t" "$out"/{elementwise,rows,loss,misc,runtime,gemm,attention_stub}.o "${cuda_objs[@]}" \
      "$dir/framework/backend/$t.cpp.o" "$dir/support/test_main.cpp.o" "${libs[@]}" -lpthread -ldl -lrt
  OMP_NUM_THREADS=1 "$out/$t" "$@" || status=1
done
exit $status
