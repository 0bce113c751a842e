// Stand-in for oneDNN in builds where CMake did not find it (or STRAND_ONEDNN=OFF): GEMMs then
// run through OpenBLAS only, and a direct call here is a clear error.
#include "framework/backend/cpu/onednn.h"

#include "framework/core/error.h"

namespace strand::cpu::onednn {
namespace {

[[noreturn]] void absent(const char* what) {
  throw DeviceError(detail::concat(what, ": strand was built without oneDNN (install libdnnl-dev and configure "
                                         "again, or run launch/setup.sh)"));
}

}  // namespace

bool available() { return false; }
std::string version() { return "built without oneDNN"; }
const char* isa() { return "none"; }
bool has_bf16_isa() { return false; }

void sgemm(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, bool, float*,
           int64_t) {
  absent("onednn sgemm");
}

void matmul_bf16(bool, bool, int64_t, int64_t, int64_t, const bfloat16*, int64_t, const bfloat16*, int64_t, bool,
                 void*, DType, int64_t, const float*) {
  absent("onednn bf16 matmul");
}

void matmul_f32(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, bool, float*,
                int64_t, const float*) {
  absent("onednn float32 matmul");
}

}  // namespace strand::cpu::onednn
