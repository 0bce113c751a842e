// oneDNN's GEMMs (see onednn.h): dnnl_sgemm for float32, and the matmul primitive for bfloat16
// inputs and for the float32 shapes the CPU backend's rule sends to it, built once per
// shape/layout and kept in a process-wide cache.
#include "framework/backend/cpu/onednn.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "framework/core/error.h"

namespace strand::cpu::onednn {
namespace {

using dt = dnnl::memory::data_type;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One stream per thread: the batched GEMMs run primitives from several OpenMP threads at once.
dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

// A [rows, cols] matrix stored row-major with leading dimension ld, or the transpose of one.
dnnl::memory::desc matrix_desc(int64_t rows, int64_t cols, int64_t ld, bool trans, dt type) {
  const dnnl::memory::dims strides = trans ? dnnl::memory::dims{1, ld} : dnnl::memory::dims{ld, 1};
  return dnnl::memory::desc({rows, cols}, type, strides);
}

// Everything a primitive is specialised for; pointers are bound at execution.
using MatmulKey =
    std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, bool, bool, bool>;

struct CachedMatmul {
  dnnl::matmul primitive;
  dnnl::memory::desc a, b, c, bias, scratch;
};

const CachedMatmul& cached_matmul(const MatmulKey& key) {
  static std::mutex mutex;
  static std::map<MatmulKey, CachedMatmul> cache;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const auto [ta, tb, m, n, k, lda, ldb, ldc, accumulate, c_bf16, has_bias, in_f32] = key;
  const dt in = in_f32 ? dt::f32 : dt::bf16;
  CachedMatmul e;
  e.a = matrix_desc(m, k, lda, ta, in);
  e.b = matrix_desc(k, n, ldb, tb, in);
  e.c = matrix_desc(m, n, ldc, false, c_bf16 ? dt::bf16 : dt::f32);
  dnnl::primitive_attr attr;
  // The caller's threads may run one primitive concurrently: each brings its own scratchpad.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  if (has_bias) e.bias = dnnl::memory::desc({1, n}, dt::f32, dnnl::memory::dims{n, 1});
  const dnnl::matmul::primitive_desc pd(
      has_bias ? dnnl::matmul::desc(e.a, e.b, e.bias, e.c) : dnnl::matmul::desc(e.a, e.b, e.c), attr, cpu_engine());
  e.scratch = pd.scratchpad_desc();
  e.primitive = dnnl::matmul(pd);
  return cache.emplace(key, std::move(e)).first->second;
}

}  // namespace

bool available() { return true; }

std::string version() {
  const dnnl_version_t* v = dnnl_version();
  return detail::concat("oneDNN ", v->major, ".", v->minor, ".", v->patch);
}

const char* isa() {
  static const char* name = [] {
    switch (dnnl_get_effective_cpu_isa()) {
      case dnnl_cpu_isa_sse41: return "sse41";
      case dnnl_cpu_isa_avx: return "avx";
      case dnnl_cpu_isa_avx2: return "avx2";
      case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
      case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
      case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
      case dnnl_cpu_isa_avx512_core: return "avx512_core";
      case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
      case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
      case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
      default: return "generic";
    }
  }();
  return name;
}

bool has_bf16_isa() {
  const dnnl_cpu_isa_t i = dnnl_get_effective_cpu_isa();
  return i == dnnl_cpu_isa_avx512_core_bf16 || i == dnnl_cpu_isa_avx512_core_amx;
}

void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, bool accumulate, float* c, int64_t ldc) {
  const dnnl_status_t s = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb,
                                     accumulate ? 1.0f : 0.0f, c, ldc);
  STRAND_CHECK(s == dnnl_success, DeviceError, "gemm: dnnl_sgemm failed (status ", static_cast<int>(s), ") for m ",
               m, ", n ", n, ", k ", k);
}

namespace {

// One product on the cached primitive for its key; A and B are float32 (in_f32) or bfloat16.
void run_matmul(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda, const void* b,
                int64_t ldb, bool accumulate, void* c, DType c_dtype, int64_t ldc, const float* bias, bool in_f32) {
  try {
    const CachedMatmul& e = cached_matmul(
        {ta, tb, m, n, k, lda, ldb, ldc, accumulate, c_dtype == DType::BF16, bias != nullptr, in_f32});
    thread_local std::vector<char> scratch;
    if (scratch.size() < e.scratch.get_size()) scratch.resize(e.scratch.get_size());
    dnnl::engine& eng = cpu_engine();
    dnnl::memory ma(e.a, eng, const_cast<void*>(a)), mb(e.b, eng, const_cast<void*>(b)), mc(e.c, eng, c),
        ms(e.scratch, eng, scratch.data());
    dnnl::stream& stream = thread_stream();
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}, {DNNL_ARG_SCRATCHPAD, ms}};
    if (bias != nullptr) args.emplace(DNNL_ARG_BIAS, dnnl::memory(e.bias, eng, const_cast<float*>(bias)));
    e.primitive.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& err) {
    throw DeviceError(detail::concat("gemm: oneDNN ", in_f32 ? "float32" : "bf16", " matmul m ", m, ", n ", n,
                                     ", k ", k, " failed: ", err.what()));
  }
}

}  // namespace

void matmul_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const bfloat16* a, int64_t lda,
                 const bfloat16* b, int64_t ldb, bool accumulate, void* c, DType c_dtype, int64_t ldc,
                 const float* bias) {
  STRAND_CHECK(c_dtype == DType::F32 || (c_dtype == DType::BF16 && !accumulate), DTypeError,
               "gemm: a bfloat16 product writes float32, or bfloat16 without accumulation, not ",
               dtype_name(c_dtype));
  run_matmul(ta, tb, m, n, k, a, lda, b, ldb, accumulate, c, c_dtype, ldc, bias, false);
}

void matmul_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                int64_t ldb, bool accumulate, float* c, int64_t ldc, const float* bias) {
  run_matmul(ta, tb, m, n, k, a, lda, b, ldb, accumulate, c, DType::F32, ldc, bias, true);
}

}  // namespace strand::cpu::onednn
