// The CUDA GEMM through cuBLASLt: float32 (tf32 only where GemmParams::allow_tf32), float64, and
// bfloat16 / float16 A and B with float32 sums and a float32 or 16-bit C. Row-major products are
// run as the column-major C^T = op(B)^T op(A)^T; the innermost batch axis is one strided-batched
// call where every operand steps through it, other batches loop over their products in order.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <compare>
#include <cstdint>
#include <map>
#include <mutex>

#include "framework/backend/cuda/kernels.h"
#include "framework/backend/cuda/ops.h"
#include "framework/backend/cuda/runtime_api.h"
#include "framework/core/allocator.h"
#include "framework/core/error.h"

namespace strand::cuda {
namespace {

constexpr int kMaxDevices = 16;
constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLASLt's recommended size for Hopper

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw DeviceError(detail::concat("gemm: ", what, ": ", cublasLtGetStatusString(s)));
}

// A cuBLASLt handle and workspace per device, made on first use and kept for the program.
struct Lt {
  std::once_flag once;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

Lt& lt(int device) {
  STRAND_CHECK(device >= 0 && device < kMaxDevices, DeviceError, "gemm: no device cuda:", device);
  static Lt* per_device = new Lt[kMaxDevices];
  Lt& l = per_device[device];
  std::call_once(l.once, [&] {
    set_device(device);
    check(cublasLtCreate(&l.handle), "cublasLtCreate");
    l.workspace = device_malloc(kWorkspaceBytes, device);
  });
  return l;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F64: return CUDA_R_64F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: throw DTypeError(detail::concat("gemm: no cuda type for ", dtype_name(t)));
  }
}

// The largest power of two (at most 256) dividing every address a product of the call reads
// or writes: cuBLASLt picks only algorithms whose alignment needs the operands meet.
uint32_t alignment(const void* base, int64_t stride_bytes) {
  uint64_t bits = reinterpret_cast<uintptr_t>(base) | static_cast<uint64_t>(stride_bytes) | 256u;
  return static_cast<uint32_t>(bits & (~bits + 1));
}

// What cuBLASLt's algorithm choice depends on: a product of the same key reuses the algorithm
// found the first time (the heuristic costs more than a small product's launch).
struct AlgoKey {
  int device, compute, in_type, out_type;
  int64_t m, n, k, lda, ldb, ldc;
  bool ta, tb;
  int32_t count;
  int64_t a_stride, b_stride, c_stride;
  uint32_t align_a, align_b, align_c;
  auto operator<=>(const AlgoKey&) const = default;
};

template <class Find>
cublasLtMatmulAlgo_t find_algo(const AlgoKey& key, Find&& find) {
  static std::mutex mu;
  static auto* cache = new std::map<AlgoKey, cublasLtMatmulAlgo_t>;  // kept for the program
  {
    std::lock_guard lock(mu);
    if (auto it = cache->find(key); it != cache->end()) return it->second;
  }
  const cublasLtMatmulAlgo_t algo = find();
  std::lock_guard lock(mu);
  cache->emplace(key, algo);
  return algo;
}

// Destroys the cuBLASLt descriptors of one call however it ends.
struct Descriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Descriptors() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// One (strided-batched) product in the row-major terms of GemmParams.
struct Call {
  const char* a;
  const char* b;
  char* c;
  DType c_type;
  int64_t ldc;
  bool accumulate;  // beta = 1 (sums over the batch), else 0
  int32_t count = 1;
  int64_t a_stride = 0, b_stride = 0, c_stride = 0;  // elements, when count > 1
};

void set_layout(cublasLtMatrixLayout_t l, int32_t count, int64_t stride) {
  if (count <= 1) return;
  check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)),
        "cublasLtMatrixLayoutSetAttribute(batch count)");
  check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)),
        "cublasLtMatrixLayoutSetAttribute(batch stride)");
}

void run(const backend::GemmParams& p, const Call& call) {
  const int device = p.device.index;
  Lt& l = lt(device);
  set_device(device);
  const bool f64 = p.dtype == DType::F64;
  const cublasComputeType_t compute =
      f64 ? CUBLAS_COMPUTE_64F
          : (p.dtype == DType::F32 && p.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
  const cudaDataType_t scale_type = f64 ? CUDA_R_64F : CUDA_R_32F;
  const cudaDataType_t in_type = cuda_type(p.dtype), out_type = cuda_type(call.c_type);
  const size_t in_size = dtype_size(p.dtype), c_size = dtype_size(call.c_type);

  Descriptors d;
  check(cublasLtMatmulDescCreate(&d.op, compute, scale_type), "cublasLtMatmulDescCreate");
  // cuBLASLt's A is our B and its B our A (C^T = op(B)^T op(A)^T), each stored column-major.
  const cublasOperation_t trans_a = p.b.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t trans_b = p.a.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)),
        "cublasLtMatmulDescSetAttribute(transa)");
  check(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)),
        "cublasLtMatmulDescSetAttribute(transb)");
  const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  check(cublasLtMatrixLayoutCreate(&d.a, in_type, u(p.b.trans ? p.k : p.n), u(p.b.trans ? p.n : p.k), p.b.ld),
        "cublasLtMatrixLayoutCreate(B)");
  check(cublasLtMatrixLayoutCreate(&d.b, in_type, u(p.a.trans ? p.m : p.k), u(p.a.trans ? p.k : p.m), p.a.ld),
        "cublasLtMatrixLayoutCreate(A)");
  check(cublasLtMatrixLayoutCreate(&d.c, out_type, u(p.n), u(p.m), call.ldc), "cublasLtMatrixLayoutCreate(C)");
  set_layout(d.a, call.count, call.b_stride);
  set_layout(d.b, call.count, call.a_stride);
  set_layout(d.c, call.count, call.c_stride);

  const int64_t many = call.count > 1 ? 1 : 0;
  const uint32_t align_a = alignment(call.b, many * call.b_stride * static_cast<int64_t>(in_size));
  const uint32_t align_b = alignment(call.a, many * call.a_stride * static_cast<int64_t>(in_size));
  const uint32_t align_c = alignment(call.c, many * call.c_stride * static_cast<int64_t>(c_size));
  const AlgoKey key{device, static_cast<int>(compute), static_cast<int>(in_type), static_cast<int>(out_type), p.m, p.n,
                    p.k, p.a.ld, p.b.ld, call.ldc, p.a.trans, p.b.trans, call.count, many * call.a_stride,
                    many * call.b_stride, many * call.c_stride, align_a, align_b, align_c};
  const cublasLtMatmulAlgo_t algo = find_algo(key, [&] {
    check(cublasLtMatmulPreferenceCreate(&d.pref), "cublasLtMatmulPreferenceCreate");
    const uint64_t ws = kWorkspaceBytes;
    check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
          "cublasLtMatmulPreferenceSetAttribute(workspace)");
    check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)),
          "cublasLtMatmulPreferenceSetAttribute(alignment A)");
    check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)),
          "cublasLtMatmulPreferenceSetAttribute(alignment B)");
    check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c)),
          "cublasLtMatmulPreferenceSetAttribute(alignment C)");
    check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(align_c)),
          "cublasLtMatmulPreferenceSetAttribute(alignment D)");

    cublasLtMatmulHeuristicResult_t best{};
    int found = 0;
    check(cublasLtMatmulAlgoGetHeuristic(l.handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &best, &found),
          "cublasLtMatmulAlgoGetHeuristic");
    STRAND_CHECK(found > 0, DeviceError, "gemm: cuBLASLt has no algorithm for ", dtype_name(p.dtype), " [", p.m,
                 ", ", p.k, "] x [", p.k, ", ", p.n, "] with a ", dtype_name(call.c_type), " C");
    return best.algo;
  });

  const double alpha64 = 1.0, beta64 = call.accumulate ? 1.0 : 0.0;
  const float alpha32 = 1.0f, beta32 = call.accumulate ? 1.0f : 0.0f;
  const void* alpha = f64 ? static_cast<const void*>(&alpha64) : static_cast<const void*>(&alpha32);
  const void* beta = f64 ? static_cast<const void*>(&beta64) : static_cast<const void*>(&beta32);
  check(cublasLtMatmul(l.handle, d.op, alpha, call.b, d.a, call.a, d.b, beta, call.c, d.c, call.c, d.c, &algo,
                       l.workspace, kWorkspaceBytes, static_cast<cudaStream_t>(compute_stream(device))),
        "cublasLtMatmul");
}

// Element offset of batch entry `index` (row-major over `shape`) under `strides`.
int64_t batch_offset(int64_t index, const Shape& shape, const Shape& strides) {
  int64_t off = 0;
  for (size_t d = shape.size(); d-- > 0;) {
    off += (index % shape[d]) * strides[d];
    index /= shape[d];
  }
  return off;
}

}  // namespace

void gemm(const backend::GemmParams& p) {
  const DType c_type = p.c_dtype.value_or(p.dtype);
  const bool half_in = p.dtype == DType::BF16 || p.dtype == DType::F16;
  STRAND_CHECK(((p.dtype == DType::F32 || p.dtype == DType::F64) && c_type == p.dtype) ||
                   (half_in && (c_type == DType::F32 || c_type == p.dtype)),
               DTypeError, "gemm: the cuda kernel takes float32 or float64 (C of the same type), or bfloat16/float16 "
                           "A and B with a float32 C or one of their type; got ",
               dtype_name(p.dtype), " inputs and a ", dtype_name(c_type), " output");
  STRAND_CHECK(p.a_batch_strides.size() == p.batch.size() && p.b_batch_strides.size() == p.batch.size() &&
                   (p.sum_over_batch || p.c_batch_strides.size() == p.batch.size()),
               ValueError, "gemm: batch ", shape_str(p.batch), " needs one stride per axis for each operand");
  STRAND_CHECK(p.bias == nullptr, DeviceError, "gemm: a fused bias is not built for cuda (add it as its own op)");
  if (p.m == 0 || p.n == 0) return;
  const int device = p.device.index;
  const size_t in_size = dtype_size(p.dtype), c_size = dtype_size(c_type);
  const int64_t count = numel_of(p.batch);
  if (p.k == 0 || count == 0) {
    // An empty sum: C is zero (all bits clear in every float type), row by row.
    const int64_t entries = p.sum_over_batch || count == 0 ? 1 : count;
    for (int64_t e = 0; e < entries; ++e) {
      char* c = static_cast<char*>(p.c) + (p.sum_over_batch ? 0 : batch_offset(e, p.batch, p.c_batch_strides)) * c_size;
      for (int64_t i = 0; i < p.m; ++i) fill_bytes(c + i * p.ldc * c_size, 0, static_cast<size_t>(p.n) * c_size, device);
    }
    return;
  }
  const auto* a = static_cast<const char*>(p.a.data);
  const auto* b = static_cast<const char*>(p.b.data);
  auto* c = static_cast<char*>(p.c);

  if (p.sum_over_batch) {
    // Products added into one C in batch order; a 16-bit C is summed in a float32 scratch and
    // rounded once, as on the CPU.
    const bool scratch = c_type != DType::F32 && c_type != DType::F64 && count > 1;
    const size_t scratch_bytes = scratch ? static_cast<size_t>(p.m * p.n) * sizeof(float) : 0;
    void* sum = scratch ? memory::allocate(Device::cuda(device), scratch_bytes) : nullptr;
    try {
      for (int64_t e = 0; e < count; ++e) {
        Call call{a + batch_offset(e, p.batch, p.a_batch_strides) * static_cast<int64_t>(in_size),
                  b + batch_offset(e, p.batch, p.b_batch_strides) * static_cast<int64_t>(in_size),
                  scratch ? static_cast<char*>(sum) : c, scratch ? DType::F32 : c_type, scratch ? p.n : p.ldc, e > 0};
        run(p, call);
      }
      if (scratch)
        round_to_half(device, static_cast<Dt>(static_cast<int>(c_type)), p.m, p.n, static_cast<const float*>(sum), p.n,
                      c, p.ldc);
    } catch (...) {
      memory::deallocate(Device::cuda(device), sum, scratch_bytes);
      throw;
    }
    // Released at once: its next user is queued behind these calls (Note [One compute stream]).
    memory::deallocate(Device::cuda(device), sum, scratch_bytes);
    return;
  }

  // The innermost batch axis is one strided-batched call when every operand steps through it
  // (a shared operand, stride 0, loops instead); the outer axes loop.
  const size_t axes = p.batch.size();
  const int64_t inner = axes > 0 ? p.batch[axes - 1] : 1;
  const int64_t sa = axes > 0 ? p.a_batch_strides[axes - 1] : 0, sb = axes > 0 ? p.b_batch_strides[axes - 1] : 0;
  const int64_t sc = axes > 0 ? p.c_batch_strides[axes - 1] : 0;
  const bool strided = inner > 1 && inner <= INT32_MAX && sa > 0 && sb > 0 && sc > 0;
  const int64_t step = strided ? inner : 1;
  for (int64_t e = 0; e < count; e += step) {
    Call call{a + (axes ? batch_offset(e, p.batch, p.a_batch_strides) : 0) * static_cast<int64_t>(in_size),
              b + (axes ? batch_offset(e, p.batch, p.b_batch_strides) : 0) * static_cast<int64_t>(in_size),
              c + (axes ? batch_offset(e, p.batch, p.c_batch_strides) : 0) * static_cast<int64_t>(c_size), c_type, p.ldc,
              false};
    if (strided) {
      call.count = static_cast<int32_t>(inner);
      call.a_stride = sa;
      call.b_stride = sb;
      call.c_stride = sc;
    }
    run(p, call);
  }
}

}  // namespace strand::cuda
