// GEMM kernels: the library chosen per shape (oneDNN or OpenBLAS) for float32, OpenBLAS for
// float64, oneDNN's bf16 matmul (or a float32 copy) for 16-bit inputs, and the batch loop.
#include "framework/backend/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "framework/backend/cpu/onednn.h"
#include "framework/core/error.h"

namespace strand::cpu {
namespace {

// Below this many multiply-adds per product, a batch runs one product per thread: neither
// library would split such a product across threads anyway, so the batch is the parallelism.
constexpr int64_t kSmallProduct = int64_t{128} * 128 * 128;

// Products of fewer multiply-adds than this run through OpenBLAS: its lower call overhead made
// it 1.1-3x faster than oneDNN's sgemm below 64^3 on an AVX-512 Zen machine, oneDNN faster from
// there up (docs/benchmarks.md, "GEMMs through oneDNN").
constexpr int64_t kOneDnnMinProduct = int64_t{64} * 64 * 64;

// STRAND_GEMM=onednn|openblas forces one library for every float32 product (tests, benchmarks).
// Read once, so that one shape takes one library for the whole run.
std::optional<GemmLibrary> forced_library() {
  static const std::optional<GemmLibrary> forced = []() -> std::optional<GemmLibrary> {
    const char* v = std::getenv("STRAND_GEMM");
    if (v == nullptr || *v == '\0') return std::nullopt;
    if (std::strcmp(v, "openblas") == 0) return GemmLibrary::OpenBlas;
    const bool matmul = std::strcmp(v, "onednn-matmul") == 0;
    STRAND_CHECK(matmul || std::strcmp(v, "onednn") == 0, ValueError, "STRAND_GEMM=", v,
                 ": expected onednn, onednn-matmul or openblas (unset: chosen per shape)");
    STRAND_CHECK(onednn::available(), DeviceError, "STRAND_GEMM=", v,
                 ": strand was built without oneDNN (install libdnnl-dev and configure again)");
    return matmul ? GemmLibrary::OneDnnMatmul : GemmLibrary::OneDnn;
  }();
  return forced;
}

// oneDNN's sgemm JIT-compiles AVX2 and AVX-512 kernels; on older ISAs OpenBLAS is the better choice.
bool onednn_has_fast_sgemm() {
  static const bool fast = [] {
    if (!onednn::available()) return false;
    const std::string_view isa = onednn::isa();
    return isa.starts_with("avx2") || isa.starts_with("avx512");
  }();
  return fast;
}

// oneDNN's matmul primitive has AVX-512 brgemm kernels for float32 (elsewhere it falls back to
// the sgemm path, so the rule below keeps sgemm there).
bool onednn_has_brgemm() {
  static const bool brgemm = onednn::available() && std::string_view(onednn::isa()).starts_with("avx512");
  return brgemm;
}

blasint to_blas(int64_t v, const char* what) {
  STRAND_CHECK(v >= 0 && v <= INT_MAX, ValueError, "gemm: ", what, " = ", v, " does not fit a BLAS int");
  return static_cast<blasint>(v);
}

CBLAS_TRANSPOSE blas_trans(bool t) { return t ? CblasTrans : CblasNoTrans; }

// Element offset of batch entry `index` (row-major over `shape`) under `strides`.
int64_t batch_offset(int64_t index, const Shape& shape, const Shape& strides) {
  int64_t off = 0;
  for (size_t d = shape.size(); d-- > 0;) {
    off += (index % shape[d]) * strides[d];
    index /= shape[d];
  }
  return off;
}

// Byte pointers of one batch entry's operands.
struct Entry {
  const char* a;
  const char* b;
  char* c;
};

// Calls product(entry, accumulate) for every product of p: in batch order into the one C when
// summing over the batch (the same sum for every thread count), otherwise each entry into its
// own C, one per thread when the products are small.
template <class Product>
void for_each_product(const backend::GemmParams& p, size_t in_size, size_t c_size, Product&& product) {
  const int64_t count = numel_of(p.batch);
  auto entry = [&](int64_t e) {
    return Entry{static_cast<const char*>(p.a.data) + batch_offset(e, p.batch, p.a_batch_strides) * in_size,
                 static_cast<const char*>(p.b.data) + batch_offset(e, p.batch, p.b_batch_strides) * in_size,
                 static_cast<char*>(p.c) + (p.sum_over_batch ? 0 : batch_offset(e, p.batch, p.c_batch_strides)) * c_size};
  };
  if (p.sum_over_batch) {
    for (int64_t e = 0; e < count; ++e) product(entry(e), e > 0);
    return;
  }
  const bool per_thread = count > 1 && p.m * p.n * p.k <= kSmallProduct && omp_get_max_threads() > 1;
  if (!per_thread) {
    // Not inside a parallel construct, not even an inactive `if (false)` one: the library's own
    // parallel region would then be nested, and libgomp starts fresh threads for a nested team
    // on every call while the process's pooled worker spins idle beside them (seen in perf: a
    // new thread per GEMM, the worker in libgomp). Out here the library reuses the pool.
    for (int64_t e = 0; e < count; ++e) product(entry(e), false);
    return;
  }
  #pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < count; ++e) product(entry(e), false);
}

// C[m, n] (leading dimension ldc) += bias on every row: the bias of GemmParams where the library
// does not add it itself.
template <class T>
void add_bias_rows(char* c, int64_t ldc, int64_t m, int64_t n, const void* bias) {
  if (bias == nullptr) return;
  const T* b = static_cast<const T*>(bias);
  // Across the threads for a large C (a linear layer's output: GPT-2's MLP adds its bias to 3M
  // values a layer); inside a batch's per-thread products the region is inactive, one thread.
  #pragma omp parallel for schedule(static) if (m * n >= (int64_t{1} << 16))
  for (int64_t i = 0; i < m; ++i) {
    T* row = reinterpret_cast<T*>(c) + i * ldc;
    #pragma omp simd
    for (int64_t j = 0; j < n; ++j) row[j] += b[j];
  }
}

// float32 and float64: C = op(A) op(B) (+ C) through the library chosen for the shape, which
// it returns (float64: always OpenBLAS).
GemmLibrary gemm_float(const backend::GemmParams& p) {
  const blasint m = to_blas(p.m, "m"), n = to_blas(p.n, "n"), k = to_blas(p.k, "k");
  const blasint lda = to_blas(p.a.ld, "lda"), ldb = to_blas(p.b.ld, "ldb"), ldc = to_blas(p.ldc, "ldc");
  if (p.dtype == DType::F64) {
    for_each_product(p, sizeof(double), sizeof(double), [&](const Entry& e, bool acc) {
      cblas_dgemm(CblasRowMajor, blas_trans(p.a.trans), blas_trans(p.b.trans), m, n, k, 1.0,
                  reinterpret_cast<const double*>(e.a), lda, reinterpret_cast<const double*>(e.b), ldb,
                  acc ? 1.0 : 0.0, reinterpret_cast<double*>(e.c), ldc);
      add_bias_rows<double>(e.c, ldc, m, n, p.bias);
    });
    return GemmLibrary::OpenBlas;
  }
  const GemmLibrary library = gemm_library(p.m, p.n, p.k, p.b.trans);
  for_each_product(p, sizeof(float), sizeof(float), [&](const Entry& e, bool acc) {
    const auto* a = reinterpret_cast<const float*>(e.a);
    const auto* b = reinterpret_cast<const float*>(e.b);
    auto* c = reinterpret_cast<float*>(e.c);
    switch (library) {
      case GemmLibrary::OneDnnMatmul:  // the bias rides in the primitive's epilogue
        onednn::matmul_f32(p.a.trans, p.b.trans, m, n, k, a, lda, b, ldb, acc, c, ldc,
                           static_cast<const float*>(p.bias));
        return;
      case GemmLibrary::OneDnn: onednn::sgemm(p.a.trans, p.b.trans, m, n, k, a, lda, b, ldb, acc, c, ldc); break;
      case GemmLibrary::OpenBlas:
        cblas_sgemm(CblasRowMajor, blas_trans(p.a.trans), blas_trans(p.b.trans), m, n, k, 1.0f, a, lda, b, ldb,
                    acc ? 1.0f : 0.0f, c, ldc);
        break;
    }
    add_bias_rows<float>(e.c, ldc, m, n, p.bias);
  });
  return library;
}

float to_float(const char* base, int64_t i, DType t) {
  uint16_t bits;
  std::memcpy(&bits, base + i * 2, 2);
  return t == DType::BF16 ? bf16_bits_to_float(bits) : f16_bits_to_float(bits);
}

uint16_t from_float(float v, DType t) { return t == DType::BF16 ? float_to_bf16_bits(v) : float_to_f16_bits(v); }

// The stored [rows, cols] matrix (leading dimension ld) of 16-bit values as contiguous float32.
std::vector<float> widen(const char* x, int64_t rows, int64_t cols, int64_t ld, DType t) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) out[static_cast<size_t>(i * cols + j)] = to_float(x, i * ld + j, t);
  return out;
}

// Rows and columns of C per oneDNN bf16 call. A product wider than this (GPT-2's LM head:
// 50,257 vocabulary rows or columns) runs as tiles of at most this size, whose operands stay in
// the last-level cache while oneDNN walks them: 10-25 % faster than one call on the AVX-512
// BF16 Zen 4 machine of docs/benchmarks.md. Each element of C is still one call's sum over all
// of k, so only the bf16 path's order of work changes, not what any element adds up.
constexpr int64_t kBf16Tile = 8192;

// oneDNN's bf16 matmul only where the CPU has bf16 dot products; elsewhere it would emulate
// them (or, on AVX2, refuse), and the float32 copy is as fast.
bool native_bf16(DType in) {
  return in == DType::BF16 && onednn::has_bf16_isa() && forced_library() != GemmLibrary::OpenBlas;
}

// One bf16 product of backend::GemmParams (A, B bf16; C float32 or bf16 at c with ldc) on
// oneDNN's matmul, tiled over the rows and columns of C.
void native_bf16_tiles(const backend::GemmParams& p, const char* a, const char* b, bool acc, void* c, DType c_type,
                       int64_t ldc) {
  const size_t c_size = dtype_size(c_type);
  const auto* bias = static_cast<const float*>(p.bias);
  for (int64_t i0 = 0; i0 < p.m; i0 += kBf16Tile) {
    const int64_t rows = std::min(kBf16Tile, p.m - i0);
    const char* a_tile = a + (p.a.trans ? i0 : i0 * p.a.ld) * 2;
    for (int64_t j0 = 0; j0 < p.n; j0 += kBf16Tile) {
      const int64_t cols = std::min(kBf16Tile, p.n - j0);
      const char* b_tile = b + (p.b.trans ? j0 * p.b.ld : j0) * 2;
      onednn::matmul_bf16(p.a.trans, p.b.trans, rows, cols, p.k, reinterpret_cast<const bfloat16*>(a_tile), p.a.ld,
                          reinterpret_cast<const bfloat16*>(b_tile), p.b.ld, acc,
                          static_cast<char*>(c) + (i0 * ldc + j0) * static_cast<int64_t>(c_size), c_type, ldc,
                          bias != nullptr ? bias + j0 : nullptr);
    }
  }
}

// bfloat16 / float16 A and B. bfloat16 runs on oneDNN's matmul where the CPU has native bf16
// dot products; otherwise, and for float16, the operands are widened to float32 and the
// float32 GEMM runs. Sums are float32 throughout; a 16-bit C is rounded once, at the end.
// Returns the library that ran (the matmul primitive, or the one the widened copy ran on).
GemmLibrary gemm_half(const backend::GemmParams& p, DType c_type) {
  const DType in = p.dtype;
  const bool c_f32 = c_type == DType::F32;
  const bool native = native_bf16(in);
  const GemmLibrary widened =
      gemm_library(p.m, p.n, p.k) == GemmLibrary::OpenBlas ? GemmLibrary::OpenBlas : GemmLibrary::OneDnn;
  // A 16-bit C summed over the batch is summed in a float32 scratch C, rounded once.
  const bool scratch_c = !c_f32 && (p.sum_over_batch || !native);
  std::vector<float> sum;
  if (scratch_c && p.sum_over_batch) sum.assign(static_cast<size_t>(p.m * p.n), 0.0f);
  for_each_product(p, 2, c_f32 ? sizeof(float) : 2, [&](const Entry& e, bool acc) {
    std::vector<float> local;
    float* c32 = c_f32 ? reinterpret_cast<float*>(e.c) : nullptr;
    int64_t ldc = p.ldc;
    if (scratch_c) {
      if (p.sum_over_batch) {
        c32 = sum.data();
      } else {
        local.resize(static_cast<size_t>(p.m * p.n));
        c32 = local.data();
      }
      ldc = p.n;
    }
    if (native) {
      native_bf16_tiles(p, e.a, e.b, acc, c32 ? static_cast<void*>(c32) : static_cast<void*>(e.c),
                        c32 ? DType::F32 : c_type, c32 ? ldc : p.ldc);
    } else {
      const std::vector<float> a = widen(e.a, p.a.trans ? p.k : p.m, p.a.trans ? p.m : p.k, p.a.ld, in);
      const std::vector<float> b = widen(e.b, p.b.trans ? p.n : p.k, p.b.trans ? p.k : p.n, p.b.ld, in);
      const int64_t lda = p.a.trans ? p.m : p.k, ldb = p.b.trans ? p.k : p.n;
      if (widened == GemmLibrary::OneDnn)
        onednn::sgemm(p.a.trans, p.b.trans, p.m, p.n, p.k, a.data(), lda, b.data(), ldb, acc, c32, ldc);
      else
        cblas_sgemm(CblasRowMajor, blas_trans(p.a.trans), blas_trans(p.b.trans), to_blas(p.m, "m"),
                    to_blas(p.n, "n"), to_blas(p.k, "k"), 1.0f, a.data(), to_blas(lda, "lda"), b.data(),
                    to_blas(ldb, "ldb"), acc ? 1.0f : 0.0f, c32, to_blas(ldc, "ldc"));
      add_bias_rows<float>(reinterpret_cast<char*>(c32), ldc, p.m, p.n, p.bias);
    }
    if (scratch_c && !p.sum_over_batch) {
      for (int64_t i = 0; i < p.m; ++i)
        for (int64_t j = 0; j < p.n; ++j) {
          const uint16_t bits = from_float(local[static_cast<size_t>(i * p.n + j)], c_type);
          std::memcpy(e.c + (i * p.ldc + j) * 2, &bits, 2);
        }
    }
  });
  if (scratch_c && p.sum_over_batch) {
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) {
        const uint16_t bits = from_float(sum[static_cast<size_t>(i * p.n + j)], c_type);
        std::memcpy(static_cast<char*>(p.c) + (i * p.ldc + j) * 2, &bits, 2);
      }
  }
  return native ? GemmLibrary::OneDnnMatmul : widened;
}

// The profile of gemm_profile_start/stop: shapes keyed by what GemmShapeTime names them by.
struct Profile {
  std::atomic<bool> on{false};
  std::mutex mu;
  std::map<std::tuple<int, bool, bool, int64_t, int64_t, int64_t, int64_t>, GemmShapeTime> shapes;
};

Profile& profile() {
  static Profile* p = new Profile;  // never destroyed: a product may run after main returns
  return *p;
}

void record(const backend::GemmParams& p, int64_t count, GemmLibrary library, double seconds) {
  Profile& prof = profile();
  std::lock_guard lock(prof.mu);
  const auto it = prof.shapes.try_emplace(
      {static_cast<int>(p.dtype), p.a.trans, p.b.trans, p.m, p.n, p.k, count},
      GemmShapeTime{p.dtype, p.a.trans, p.b.trans, p.m, p.n, p.k, count, library}).first;
  ++it->second.calls;
  it->second.seconds += seconds;
}

}  // namespace

void gemm_profile_start() {
  Profile& prof = profile();
  std::lock_guard lock(prof.mu);
  prof.shapes.clear();
  prof.on.store(true, std::memory_order_relaxed);
}

std::vector<GemmShapeTime> gemm_profile_stop() {
  Profile& prof = profile();
  std::lock_guard lock(prof.mu);
  prof.on.store(false, std::memory_order_relaxed);
  std::vector<GemmShapeTime> out;
  for (const auto& [key, shape] : prof.shapes) out.push_back(shape);
  std::sort(out.begin(), out.end(), [](const GemmShapeTime& a, const GemmShapeTime& b) { return a.seconds > b.seconds; });
  return out;
}

GemmLibrary gemm_library(int64_t m, int64_t n, int64_t k, bool b_trans) {
  if (auto forced = forced_library()) return *forced;
  if (!onednn_has_fast_sgemm() || m * n * k < kOneDnnMinProduct) return GemmLibrary::OpenBlas;
  // A transposed B narrower than its sum (n < k: a linear layer's input gradient, dY W^T, from
  // a wider output) is where dnnl_sgemm falls behind: 158-168 GFLOP/s against the matmul
  // primitive's 203-208 at GPT-2's 1024 x 768 x 3072 inside a training step, while the
  // primitive was no faster, or slower, on every other training shape (docs/benchmarks.md,
  // "GEMMs through oneDNN").
  if (b_trans && n < k && onednn_has_brgemm()) return GemmLibrary::OneDnnMatmul;
  return GemmLibrary::OneDnn;
}

const char* gemm_library_name(GemmLibrary lib) {
  switch (lib) {
    case GemmLibrary::OneDnn: return "onednn";
    case GemmLibrary::OneDnnMatmul: return "onednn-matmul";
    case GemmLibrary::OpenBlas: break;
  }
  return "openblas";
}

void gemm(const backend::GemmParams& p) {
  const DType c_type = p.c_dtype.value_or(p.dtype);
  const bool half_in = p.dtype == DType::BF16 || p.dtype == DType::F16;
  STRAND_CHECK(((p.dtype == DType::F32 || p.dtype == DType::F64) && c_type == p.dtype) ||
                   (half_in && (c_type == DType::F32 || c_type == p.dtype)),
               DTypeError, "gemm: the cpu kernel takes float32 or float64 (C of the same type), or bfloat16/float16 A "
                           "and B with a float32 C or one of their type; got ",
               dtype_name(p.dtype), " inputs and a ", dtype_name(c_type), " output");
  STRAND_CHECK(p.a_batch_strides.size() == p.batch.size() && p.b_batch_strides.size() == p.batch.size() &&
                   (p.sum_over_batch || p.c_batch_strides.size() == p.batch.size()),
               ValueError, "gemm: batch ", shape_str(p.batch), " needs one stride per axis for each operand");
  STRAND_CHECK(p.bias == nullptr || ((c_type == DType::F32 || c_type == DType::F64) && !p.sum_over_batch), ValueError,
               "gemm: a bias needs a float32 or float64 C and no sum over the batch");
  if (p.m == 0 || p.n == 0) return;
  const int64_t count = numel_of(p.batch);
  if (p.k == 0 || count == 0) {
    // An empty sum: C is zero (the only case where C is filled rather than written by a GEMM).
    // Zero has all bits clear in every float type.
    const size_t c_size = dtype_size(c_type);
    const int64_t entries = p.sum_over_batch || count == 0 ? 1 : count;
    for (int64_t e = 0; e < entries; ++e) {
      char* c = static_cast<char*>(p.c) + (p.sum_over_batch ? 0 : batch_offset(e, p.batch, p.c_batch_strides)) * c_size;
      for (int64_t i = 0; i < p.m; ++i) std::memset(c + i * p.ldc * c_size, 0, static_cast<size_t>(p.n) * c_size);
      if (c_type == DType::F64) add_bias_rows<double>(c, p.ldc, p.m, p.n, p.bias);
      else if (c_type == DType::F32) add_bias_rows<float>(c, p.ldc, p.m, p.n, p.bias);
    }
    return;
  }
  const bool timed = profile().on.load(std::memory_order_relaxed);
  const auto start = timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  const GemmLibrary library = half_in ? gemm_half(p, c_type) : gemm_float(p);
  if (timed)
    record(p, count, library, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace strand::cpu
