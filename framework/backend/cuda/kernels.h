// The CUDA kernels as a plain C++17 API: the .cu files (nvcc, C++17) define these launchers,
// ops.cpp (host C++20) calls them from the device seam's parameter structs. Enumerations repeat
// the families' own (framework/backend/*.h) value for value; ops.cpp static_asserts that they
// agree. Pointers are device memory unless a comment says host; every launcher queues its work
// on the device's compute stream (runtime_api.h, Note [One compute stream]) and returns.
#pragma once
#include <cstdint>

namespace strand::cuda {

// The floating types a kernel is instantiated for (the first four of strand::DType, in order).
enum class Dt : int { F32, F64, BF16, F16 };

// ---- elementwise.cu ----
enum class Unary : int { Neg, Exp, Log, Sqrt, Tanh, Gelu, Silu, Square, Reciprocal, Abs };
enum class Binary : int { Add, Sub, Mul, Div, Max, Min };
enum class UnaryGrad : int { Gelu, Silu };
enum class MapKind : int { Unary, Affine, Power };

constexpr int kMaxDims = 8;
// A contiguous output of `shape` and the element strides of up to two inputs (0: broadcast).
// An input whose strides are the output's own is read at the output's index (no index
// arithmetic): the common case of a contiguous tensor.
struct Strided {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t a[kMaxDims] = {};
  int64_t b[kMaxDims] = {};
  bool a_linear = false, b_linear = false;
};

void map(int device, Dt dt, MapKind kind, Unary f, double alpha, double beta, const Strided& s, void* out,
         const void* x);
void binary(int device, Dt dt, Binary op, const Strided& s, void* out, const void* a, const void* b);
void activation_grad(int device, Dt dt, UnaryGrad f, int64_t n, void* out, const void* g, const void* x);
void axpy(int device, Dt dt, int64_t n, double alpha, void* dst, const void* src);
// dst[i * ldd + j] = 16-bit rounding of src[i * lds + j] (dt BF16 or F16), for i < m, j < n.
void round_to_half(int device, Dt dt, int64_t m, int64_t n, const float* src, int64_t lds, void* dst, int64_t ldd);

// ---- rows.cu: reductions, softmax and norms over the rows of [rows, n] ----
enum class RowReduce : int { Sum, Max, MaxBackward };
void reduce_rows(int device, Dt dt, RowReduce op, int64_t rows, int64_t n, const void* x, void* out, int32_t* arg,
                 double scale);
void softmax_rows(int device, Dt dt, bool backward, bool log, int64_t rows, int64_t n, const void* x, const void* g,
                  void* out);

// The norm backward sums dweight and dbias over at most this many fixed row blocks (partial
// sums in double), then adds the blocks in order: the same bits on every run.
constexpr int64_t kNormRowBlocks = 64;
struct NormArgs {
  int device = 0;
  Dt dt = Dt::F32;
  int op = 0;  // 0 LayerNorm, 1 RmsNorm, 2 Backward (NormOp's values)
  int64_t rows = 0, n = 0;
  const void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;
  double eps = 0;
  void* y = nullptr;
  void* mean = nullptr;
  void* rstd = nullptr;
  const void* g = nullptr;
  void* dx = nullptr;
  void* dweight = nullptr;
  void* dbias = nullptr;
  double* partial = nullptr;  // Backward with dweight or dbias: min(rows, kNormRowBlocks) * n * (their count) doubles
};
void norm_rows(const NormArgs& a);

// ---- loss.cu: fused cross-entropy and logit distillation ----
struct CrossEntropyArgs {
  int device = 0;
  Dt dt = Dt::F32;
  bool backward = false;
  const void* logits = nullptr;
  int64_t ld = 0, N = 0, V = 0;
  const int32_t* targets = nullptr;
  int32_t ignore_index = -100;
  void* lse = nullptr;
  double* row_loss = nullptr;  // [N] device memory, forward
  double scale = 1;
  void* dlogits = nullptr;
};
void cross_entropy(const CrossEntropyArgs& a);

struct DistillArgs {
  int device = 0;
  Dt dt = Dt::F32;
  bool backward = false;
  const void* student = nullptr;
  const void* teacher = nullptr;
  int64_t ld = 0, N = 0, V = 0;
  const int32_t* targets = nullptr;
  int32_t ignore_index = -100;
  double temperature = 1;
  void* lse_student = nullptr;
  void* lse_teacher = nullptr;
  double* row_loss = nullptr;  // [N] device memory, forward
  double scale = 1;
  void* dstudent = nullptr;
};
void distill_loss(const DistillArgs& a);

// ---- misc.cu: rope, embedding, dropout, AdamW, clipping, block copies ----
struct RopeArgs {
  int device = 0;
  Dt dt = Dt::F32;
  const void* x = nullptr;
  void* y = nullptr;
  int64_t batch = 0, heads = 0, seq = 0, head_dim = 0;
  int64_t x_batch_stride = 0, x_head_stride = 0, x_row_stride = 0, x_dim_stride = 1;
  const int32_t* positions = nullptr;
  int64_t pos_batch_stride = 0, pos_row_stride = 1;
  const double* inv_freq = nullptr;  // [head_dim / 2]: base^(-2i / D), computed on the host as the CPU does
  bool inverse = false;
};
void rope(const RopeArgs& a);

void embedding_gather(int device, Dt dt, const int32_t* ids, int64_t n, int64_t C, const void* table, void* dst);
// dst[v, :] = sum of src[order[k], :] for k in [start[v], start[v + 1]), in k order (a stable
// sort of the positions by id, made on the host).
void embedding_scatter_add(int device, Dt dt, const int64_t* start, const int64_t* order, int64_t V, int64_t C,
                           const void* src, void* dst);

// Element i of the buffer (row r, column j with row_offsets) draws counter c = offset + i (or
// row_offsets[r] + j): word c % 4 of philox4x32(seed, philox_stream, c / 4); kept (times
// keep_scale) where the word >= threshold = ceil(p * 2^32). row_offsets is device memory.
void dropout(int device, Dt dt, const void* x, void* y, int64_t n, uint64_t threshold, double keep_scale,
             uint64_t seed, uint64_t philox_stream, uint64_t offset, const uint64_t* row_offsets, int64_t row_len);

struct AdamWArgs {
  int device = 0;
  Dt dt = Dt::F32;
  int64_t n = 0;
  // The CPU kernel's folded scalars, computed in double on the host and rounded to the dtype in the kernel.
  double decay = 1, beta1 = 0.9, one_minus_beta1 = 0.1, beta2 = 0.999, one_minus_beta2 = 0.001;
  double step_size = 0, inv_sqrt_bc2 = 1, eps = 1e-8;
  void* param = nullptr;
  const void* grad = nullptr;
  void* m = nullptr;
  void* v = nullptr;
};
void adamw(const AdamWArgs& a);

// The clip's sum of squares in blocks of kClipBlock elements: partial[b] = sum over block b
// (in double); the caller adds the blocks in order.
constexpr int64_t kClipBlock = int64_t{1} << 14;
void sum_squares_blocks(int device, Dt dt, int64_t n, const void* x, double* partial);
void scale_inplace(int device, Dt dt, int64_t n, void* x, double scale);

void copy_blocks(int device, void* dst, int64_t dst_stride, const void* src, int64_t src_stride, int64_t rows,
                 int64_t row_bytes);

}  // namespace strand::cuda
