// Run-time choice between the bfloat16 attention paths, and the generic one: the inputs widened
// to float32 (exact) and the float32 tiled kernels run on them, so that a CPU without AVX512-BF16
// gets the float32 kernels' results on the same values.
#include "framework/backend/cpu/attention_bf16.h"

#include <cstdlib>
#include <string_view>

#include "framework/backend/cpu/attention_kernels.h"
#include "framework/backend/cpu/attention_tile.h"
#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"
#include "framework/core/dtype.h"
#include "framework/core/error.h"

namespace strand::cpu {
namespace {

using attention_tile::Scratch;

// The tiles read D pairs of q, k, v and d_o as 32-bit words.
bool native_layout(const AttentionParams& p, bool backward) {
  bool even = p.head_dim % 2 == 0 && p.q_row_stride % 2 == 0 && p.k_row_stride % 2 == 0 && p.v_row_stride % 2 == 0;
  if (backward) even = even && p.do_row_stride % 2 == 0;
  return even;
}

bool use_native(const AttentionParams& p, bool backward) {
  return attention_bf16_isa() == "avx512bf16" && native_layout(p, backward);
}

// A [B, H, N, D] bf16 operand widened into a contiguous float32 buffer; the params' strides of it
// become the contiguous ones.
void widen(const void* src, int64_t bs, int64_t hs, int64_t rs, int64_t b, int64_t h, int64_t n, int64_t d,
           float* dst, int64_t& out_bs, int64_t& out_hs, int64_t& out_rs) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  const int64_t rows = b * h * n;
  #pragma omp parallel for schedule(static) if (rows * d > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t bi = r / (h * n), hi = (r / n) % h, i = r % n;
    const uint16_t* in = s + bi * bs + hi * hs + i * rs;
    float* out = dst + r * d;
    #pragma omp simd
    for (int64_t x = 0; x < d; ++x) out[x] = bf16_bits_to_float(in[x]);
  }
  out_bs = h * n * d;
  out_hs = n * d;
  out_rs = d;
}

void generic_forward(const AttentionParams& p) {
  AttentionParams f = p;
  f.dtype = DType::F32;
  const int64_t qn = p.batch * p.q_heads * p.q_len * p.head_dim, kn = p.batch * p.kv_heads * p.k_len * p.head_dim;
  Scratch<float> q(qn), k(kn), v(kn);
  widen(p.q, p.q_batch_stride, p.q_head_stride, p.q_row_stride, p.batch, p.q_heads, p.q_len, p.head_dim, q.data(),
        f.q_batch_stride, f.q_head_stride, f.q_row_stride);
  widen(p.k, p.k_batch_stride, p.k_head_stride, p.k_row_stride, p.batch, p.kv_heads, p.k_len, p.head_dim, k.data(),
        f.k_batch_stride, f.k_head_stride, f.k_row_stride);
  widen(p.v, p.v_batch_stride, p.v_head_stride, p.v_row_stride, p.batch, p.kv_heads, p.k_len, p.head_dim, v.data(),
        f.v_batch_stride, f.v_head_stride, f.v_row_stride);
  f.q = q.data();
  f.k = k.data();
  f.v = v.data();
  attention_forward<float>(f);
}

void generic_backward(const AttentionParams& p) {
  AttentionParams f = p;
  f.dtype = DType::F32;
  const int64_t qn = p.batch * p.q_heads * p.q_len * p.head_dim, kn = p.batch * p.kv_heads * p.k_len * p.head_dim;
  Scratch<float> q(qn), k(kn), v(kn), d_o(qn);
  widen(p.q, p.q_batch_stride, p.q_head_stride, p.q_row_stride, p.batch, p.q_heads, p.q_len, p.head_dim, q.data(),
        f.q_batch_stride, f.q_head_stride, f.q_row_stride);
  widen(p.k, p.k_batch_stride, p.k_head_stride, p.k_row_stride, p.batch, p.kv_heads, p.k_len, p.head_dim, k.data(),
        f.k_batch_stride, f.k_head_stride, f.k_row_stride);
  widen(p.v, p.v_batch_stride, p.v_head_stride, p.v_row_stride, p.batch, p.kv_heads, p.k_len, p.head_dim, v.data(),
        f.v_batch_stride, f.v_head_stride, f.v_row_stride);
  widen(p.d_o, p.do_batch_stride, p.do_head_stride, p.do_row_stride, p.batch, p.q_heads, p.q_len, p.head_dim,
        d_o.data(), f.do_batch_stride, f.do_head_stride, f.do_row_stride);
  f.q = q.data();
  f.k = k.data();
  f.v = v.data();
  f.d_o = d_o.data();
  attention_backward<float>(f);
}

}  // namespace

std::string attention_bf16_isa() {
  const char* env = std::getenv("STRAND_ATTENTION_ISA");
  const std::string_view want = env ? env : "";
  if (want == "generic") return "generic";
  if (want == "avx512bf16") {
    STRAND_CHECK(cpu_has_avx512_bf16(), ValueError,
                 "STRAND_ATTENTION_ISA=avx512bf16: this CPU lacks AVX512-BF16 (use auto or generic)");
    return "avx512bf16";
  }
  STRAND_CHECK(want.empty() || want == "auto", ValueError, "STRAND_ATTENTION_ISA=", want,
               " (expected auto, generic or avx512bf16)");
  return cpu_has_avx512_bf16() ? "avx512bf16" : "generic";
}

void attention_bf16_forward(const AttentionParams& p) {
  if (use_native(p, false)) attention_bf16_forward_native(p);
  else generic_forward(p);
}

void attention_bf16_backward(const AttentionParams& p) {
  if (use_native(p, true)) attention_bf16_backward_native(p);
  else generic_backward(p);
}

}  // namespace strand::cpu
