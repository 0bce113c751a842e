// The CUDA GEMM (cuBLASLt) against the CPU GEMM: float32 (full precision unless tf32 is allowed),
// float64, bfloat16 and float16 with a float32 or 16-bit C, every transpose and padded leading
// dimensions, strided and shared-operand batches, sums over the batch, an empty k. Then the CUDA
// runtime under the kernels: chunked pinned host copies, the caching allocator's stream-ordered
// reuse and counters, streams and events. Without a GPU every test says "skipped: no GPU".
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "framework/backend/gemm.h"
#include "tests/framework/backend/cuda_ops_support.h"
#if defined(STRAND_WITH_CUDA)
#include "framework/backend/cuda/runtime_api.h"
#endif

namespace strand {
namespace {

using cuda_test::DeviceBuffer;
using cuda_test::expect_bitwise;
using cuda_test::gpu;
using cuda_test::random_vector;

// Values of `t` as float (16-bit types stored as their bits).
std::vector<float> widen(const std::vector<uint8_t>& raw, DType t) {
  const size_t n = raw.size() / dtype_size(t);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == DType::F32) {
      std::memcpy(&out[i], raw.data() + 4 * i, 4);
    } else if (t == DType::F64) {
      double d;
      std::memcpy(&d, raw.data() + 8 * i, 8);
      out[i] = static_cast<float>(d);
    } else {
      uint16_t b;
      std::memcpy(&b, raw.data() + 2 * i, 2);
      out[i] = t == DType::BF16 ? bf16_bits_to_float(b) : f16_bits_to_float(b);
    }
  }
  return out;
}

// n random values in [-1, 1] stored as `t` (exact in every type they are read as).
std::vector<uint8_t> random_raw(size_t n, DType t, uint32_t seed) {
  const std::vector<float> v = random_vector<float>(n, seed, -1.0, 1.0);
  std::vector<uint8_t> raw(n * dtype_size(t));
  for (size_t i = 0; i < n; ++i) {
    if (t == DType::F32) {
      std::memcpy(raw.data() + 4 * i, &v[i], 4);
    } else if (t == DType::F64) {
      const double d = v[i];
      std::memcpy(raw.data() + 8 * i, &d, 8);
    } else {
      const uint16_t b = t == DType::BF16 ? float_to_bf16_bits(v[i]) : float_to_f16_bits(v[i]);
      std::memcpy(raw.data() + 2 * i, &b, 2);
    }
  }
  return raw;
}

struct Case {
  DType in = DType::F32, out = DType::F32;
  int64_t m = 37, n = 29, k = 45;
  bool ta = false, tb = false;
  int64_t pad = 0;     // extra leading dimension of A, B and C
  int64_t count = 1;   // batch entries (one batch axis), 1: no batch
  bool shared_b = false;
  bool sum = false;
  bool tf32 = false;
};

// Runs the case on the CPU and on cuda:0 and compares C within k * eps of the sum's type plus
// one rounding of a 16-bit C (the two sides may round a float32 sum to neighbouring values).
void check(const Case& c) {
  SCOPED_TRACE(::testing::Message() << dtype_name(c.in) << "->" << dtype_name(c.out) << " m" << c.m << " n" << c.n
                                  << " k" << c.k << " ta" << c.ta << " tb" << c.tb << " pad" << c.pad << " count"
                                  << c.count << " shared_b" << c.shared_b << " sum" << c.sum << " tf32" << c.tf32);
  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  const int64_t a_size = a_rows * lda, b_size = b_rows * ldb, c_size = c.m * ldc;
  const int64_t b_entries = c.shared_b ? 1 : c.count, c_entries = c.sum ? 1 : c.count;
  const std::vector<uint8_t> a = random_raw(static_cast<size_t>(a_size * c.count), c.in, 31);
  const std::vector<uint8_t> b = random_raw(static_cast<size_t>(b_size * b_entries), c.in, 32);
  const size_t c_bytes = static_cast<size_t>(c_size * c_entries) * dtype_size(c.out);
  std::vector<uint8_t> want(c_bytes, 0);
  const DeviceBuffer da(a), db(b), dc(want);

  backend::GemmParams p;
  p.dtype = c.in;
  if (c.out != c.in) p.c_dtype = c.out;
  p.m = c.m;
  p.n = c.n;
  p.k = c.k;
  p.a = {a.data(), lda, c.ta};
  p.b = {b.data(), ldb, c.tb};
  p.c = want.data();
  p.ldc = ldc;
  p.allow_tf32 = c.tf32;
  if (c.count > 1) {
    p.batch = {c.count};
    p.a_batch_strides = {a_size};
    p.b_batch_strides = {c.shared_b ? 0 : b_size};
    p.c_batch_strides = {c_size};
    p.sum_over_batch = c.sum;
  }
  backend::gemm(p);
  p.device = gpu();
  p.a.data = da.get();
  p.b.data = db.get();
  p.c = dc.get();
  backend::gemm(p);

  const std::vector<float> got = widen(dc.read<uint8_t>(c_bytes), c.out), ref = widen(want, c.out);
  const double sums = static_cast<double>(c.k * (c.sum ? c.count : 1));
  // float64 is compared after rounding both sides to float: a few float roundings.
  double rel = c.in == DType::F64 ? 4 * testing::kEpsF32 : 4 * sums * testing::kEpsF32;
  if (c.tf32) rel = 4 * sums * 0x1.0p-11;  // inputs rounded to tf32's 10-bit mantissa
  if (c.out == DType::BF16) rel += 0x1.0p-7;
  if (c.out == DType::F16) rel += 0x1.0p-10;
  size_t bad = 0;
  for (int64_t e = 0; e < c_entries; ++e)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        const size_t at = static_cast<size_t>(e * c_size + i * ldc + j);
        if (std::abs(got[at] - ref[at]) > rel * (1.0 + std::abs(ref[at])) && ++bad <= 5)
          ADD_FAILURE() << "C[" << e << ", " << i << ", " << j << "]: cuda " << got[at] << ", cpu " << ref[at];
      }
  EXPECT_EQ(bad, 0u);
  // The padding between rows of C is never written.
  for (int64_t i = 0; i + 1 < c.m && c.pad > 0; ++i)
    EXPECT_EQ(got[static_cast<size_t>(i * ldc + c.n)], 0.0f) << "padding of row " << i << " was written";
}

TEST(CudaGemm, Float32AndFloat64EveryTranspose) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  for (DType t : {DType::F32, DType::F64})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int64_t pad : {0, 3}) {
          Case c;
          c.in = c.out = t;
          c.ta = ta;
          c.tb = tb;
          c.pad = pad;
          check(c);
        }
}

TEST(CudaGemm, Float32IsFullPrecisionUnlessTf32IsAllowed) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  // At k = 64 tf32's input rounding (2^-11 relative) gives errors several times the float32
  // tolerance checked first, so this fails if tf32 were on by default.
  Case c;
  c.m = 128;
  c.n = 96;
  c.k = 64;
  check(c);
  c.tf32 = true;
  check(c);
}

TEST(CudaGemm, HalfInputsWithFloat32OrHalfOutput) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  for (DType in : {DType::BF16, DType::F16})
    for (DType out : {DType::F32, in})
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          Case c;
          c.in = in;
          c.out = out;
          c.ta = ta;
          c.tb = tb;
          c.m = 64;
          c.n = 40;
          c.k = 72;
          check(c);
        }
}

TEST(CudaGemm, BatchesStridedSharedAndSummed) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  for (DType in : {DType::F32, DType::F64, DType::BF16}) {
    for (bool shared : {false, true}) {
      Case c;
      c.in = c.out = in;
      c.count = 5;
      c.shared_b = shared;
      c.pad = 1;
      check(c);
    }
    Case s;
    s.in = s.out = in;
    s.count = 4;
    s.sum = true;
    check(s);
  }
  Case half_sum;  // a 16-bit C summed over the batch: one rounding at the end
  half_sum.in = half_sum.out = DType::F16;
  half_sum.count = 3;
  half_sum.sum = true;
  check(half_sum);
}

TEST(CudaGemm, EmptyKWritesZeros) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  const std::vector<float> ones(12, 1.0f);
  const DeviceBuffer dc(ones);
  backend::GemmParams p;
  p.device = gpu();
  p.m = 3;
  p.n = 4;
  p.k = 0;
  p.ldc = 4;
  p.c = dc.get();
  backend::gemm(p);
  EXPECT_EQ(dc.read<float>(12), std::vector<float>(12, 0.0f));
}

TEST(CudaRuntime, HostCopiesLargerThanTheStagingBuffer) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  const size_t n = (size_t{20} << 20) + 3;  // several 8 MiB chunks and a ragged end
  std::vector<uint8_t> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<uint8_t>(i * 131 + (i >> 13));
  const DeviceBuffer a(host), b(n);
  device_runtime(DeviceType::CUDA).copy_within(b.get(), a.get(), n, 0);
  expect_bitwise(b.read<uint8_t>(n), host, "host -> device -> device -> host");
}

TEST(CudaRuntime, AllocatorReusesAFreedBlockAtOnceAndCounts) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  const Device d = gpu();
  const memory::Stats before = memory::stats(d);
  void* p = memory::allocate(d, 3000);
  const memory::Stats live = memory::stats(d);
  EXPECT_EQ(live.current_bytes - before.current_bytes, 3072);  // the 512-byte size class
  EXPECT_GE(live.peak_bytes, live.current_bytes);
  memory::deallocate(d, p, 3000);
  // Freed and asked for again on the same (only) stream: the same block, no wait.
  void* q = memory::allocate(d, 2900);
  EXPECT_EQ(q, p);
  EXPECT_EQ(memory::stats(d).cache_hits, live.cache_hits + 1);
  memory::deallocate(d, q, 2900);
  EXPECT_EQ(memory::stats(d).current_bytes, before.current_bytes);
}

#if defined(STRAND_WITH_CUDA)
TEST(CudaRuntime, SideStreamJoinsTheComputeStreamThroughAnEvent) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  void* side = cuda::create_stream(0);
  void* done = cuda::create_event(0);
  const std::vector<float> v(1 << 20, 2.5f);
  const DeviceBuffer a(v), b(v.size() * sizeof(float));
  device_runtime(DeviceType::CUDA).copy_within(b.get(), a.get(), v.size() * sizeof(float), 0);
  cuda::record_event(done, cuda::compute_stream(0));
  cuda::stream_wait_event(side, done);
  cuda::event_synchronize(done);
  cuda::synchronize(0);
  EXPECT_EQ(b.read<float>(v.size()), v);
  cuda::destroy_event(done, 0);
  cuda::destroy_stream(side, 0);
}
#endif

}  // namespace
}  // namespace strand
