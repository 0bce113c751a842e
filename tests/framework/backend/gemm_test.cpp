// The CPU GEMM against a float64 reference: float32 through the library chosen per shape and
// through oneDNN's sgemm directly, for every transpose, padded leading dimensions, shared and
// batched operands and sums over the batch; bfloat16/float16 inputs with a float32 or 16-bit C;
// the library choice is a fixed rule per shape, and a product repeats bit for bit.
#include <gtest/gtest.h>

#include <cblas.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "framework/backend/cpu/gemm.h"
#include "framework/backend/cpu/onednn.h"
#include "framework/core/error.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using testing::kEpsF32;

// A stored matrix: `rows` x `cols` values at data[i * ld + j] (ld >= cols), as float32 values
// that are exact in every dtype the test converts them to.
struct Stored {
  int64_t rows, cols, ld;
  std::vector<float> data;
};

Stored random_matrix(int64_t rows, int64_t cols, int64_t pad, uint32_t seed, DType exact_in) {
  Stored s{rows, cols, cols + pad, std::vector<float>(static_cast<size_t>(rows * (cols + pad)), 1e30f)};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      float v = u(rng);
      if (exact_in == DType::BF16) v = bf16_bits_to_float(float_to_bf16_bits(v));
      if (exact_in == DType::F16) v = f16_bits_to_float(float_to_f16_bits(v));
      s.data[static_cast<size_t>(i * s.ld + j)] = v;
    }
  return s;
}

// op(X)(i, j) of a stored matrix read as BLAS reads it.
double op_at(const Stored& x, bool trans, int64_t i, int64_t j) {
  return trans ? x.data[static_cast<size_t>(j * x.ld + i)] : x.data[static_cast<size_t>(i * x.ld + j)];
}

std::vector<uint16_t> to_half(const std::vector<float>& v, DType t) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = t == DType::BF16 ? float_to_bf16_bits(v[i]) : float_to_f16_bits(v[i]);
  return out;
}

// One product C[m, n] = op(A) op(B) (batch of `count` with A and B stepping by their whole
// matrices; B shared when shared_b; summed when sum), checked against float64 within
// k * eps(float32) * sum |a||b| (the float32 sum's bound), plus one rounding of the C dtype.
struct Case {
  int64_t m, n, k;
  bool ta, tb;
  int64_t pad = 0;
  int64_t count = 1;
  bool shared_b = false, sum = false;
  bool bias = false;  // a float32 C with a bias added to every row (GemmParams::bias)
};

void check_case(const Case& cs, DType in, DType out) {
  const int64_t a_rows = cs.ta ? cs.k : cs.m, a_cols = cs.ta ? cs.m : cs.k;
  const int64_t b_rows = cs.tb ? cs.n : cs.k, b_cols = cs.tb ? cs.k : cs.n;
  std::vector<Stored> as, bs;
  for (int64_t e = 0; e < cs.count; ++e) {
    as.push_back(random_matrix(a_rows, a_cols, cs.pad, static_cast<uint32_t>(11 + e), in));
    bs.push_back(random_matrix(b_rows, b_cols, cs.pad, static_cast<uint32_t>(101 + e), in));
  }
  // The batch lives in one buffer per operand, entries back to back.
  const int64_t a_size = a_rows * as[0].ld, b_size = b_rows * bs[0].ld;
  const int64_t ldc = cs.n + cs.pad, c_size = cs.m * ldc;
  std::vector<float> a32, b32;
  for (const Stored& s : as) a32.insert(a32.end(), s.data.begin(), s.data.end());
  for (const Stored& s : bs) b32.insert(b32.end(), s.data.begin(), s.data.end());
  const bool half = in != DType::F32;
  std::vector<uint16_t> a16 = half ? to_half(a32, in) : std::vector<uint16_t>{},
                        b16 = half ? to_half(b32, in) : std::vector<uint16_t>{};
  const int64_t c_entries = cs.sum ? 1 : cs.count;
  std::vector<float> c32(static_cast<size_t>(c_entries * c_size), 0.0f);
  std::vector<uint16_t> c16(static_cast<size_t>(c_entries * c_size), 0);
  std::vector<float> bias;
  for (int64_t j = 0; cs.bias && j < cs.n; ++j) bias.push_back(0.25f * static_cast<float>(j % 7) - 0.75f);

  backend::GemmParams p;
  p.dtype = in;
  if (out != in) p.c_dtype = out;
  p.m = cs.m, p.n = cs.n, p.k = cs.k;
  p.a = {half ? static_cast<const void*>(a16.data()) : a32.data(), as[0].ld, cs.ta};
  p.b = {half ? static_cast<const void*>(b16.data()) : b32.data(), bs[0].ld, cs.tb};
  p.c = out == DType::F32 ? static_cast<void*>(c32.data()) : c16.data();
  p.ldc = ldc;
  if (cs.count > 1) {
    p.batch = {cs.count};
    p.a_batch_strides = {a_size};
    p.b_batch_strides = {cs.shared_b ? 0 : b_size};
    p.c_batch_strides = {cs.sum ? 0 : c_size};
    p.sum_over_batch = cs.sum;
  }
  if (cs.bias) p.bias = bias.data();
  cpu::gemm(p);

  const double c_eps = out == DType::F32 ? 0.0 : out == DType::BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
  for (int64_t ce = 0; ce < c_entries; ++ce)
    for (int64_t i = 0; i < cs.m; ++i)
      for (int64_t j = 0; j < cs.n; ++j) {
        double want = cs.bias ? bias[static_cast<size_t>(j)] : 0.0, mag = std::fabs(want);
        for (int64_t e = cs.sum ? 0 : ce; e < (cs.sum ? cs.count : ce + 1); ++e) {
          const Stored& b = bs[static_cast<size_t>(cs.shared_b ? 0 : e)];
          for (int64_t q = 0; q < cs.k; ++q) {
            const double t = op_at(as[static_cast<size_t>(e)], cs.ta, i, q) * op_at(b, cs.tb, q, j);
            want += t;
            mag += std::fabs(t);
          }
        }
        const size_t at = static_cast<size_t>(ce * c_size + i * ldc + j);
        const double got = out == DType::F32   ? c32[at]
                           : out == DType::BF16 ? bf16_bits_to_float(c16[at])
                                                : f16_bits_to_float(c16[at]);
        const double terms = static_cast<double>(cs.k * (cs.sum ? cs.count : 1));
        const double tol = terms * kEpsF32 * mag + c_eps * std::fabs(want) * 1.01;
        ASSERT_NEAR(got, want, tol) << dtype_name(in) << "->" << dtype_name(out) << " m " << cs.m << " n " << cs.n
                                    << " k " << cs.k << " ta " << cs.ta << " tb " << cs.tb << " entry " << ce
                                    << " at (" << i << ", " << j << ")";
      }
}

// Shapes on both sides of the small-product rule, odd sizes, padding, every transpose.
std::vector<Case> cases() {
  std::vector<Case> out;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      out.push_back({5, 7, 3, ta, tb});
      out.push_back({37, 29, 61, ta, tb, 3});
      out.push_back({130, 67, 96, ta, tb, 5});                  // above the small-product rule
      out.push_back({70, 64, 80, ta, tb, 2, 2, false, true});   // summed, above the rule
      out.push_back({9, 11, 13, ta, tb, 2, 4});                 // batched
      out.push_back({9, 11, 13, ta, tb, 0, 3, true});           // shared B
      out.push_back({40, 33, 35, ta, tb, 1, 3, false, true});   // summed over the batch
    }
  return out;
}

TEST(Gemm, Float32MatchesFloat64ReferenceForEveryLayout) {
  for (const Case& c : cases()) check_case(c, DType::F32, DType::F32);
}

TEST(Gemm, Float32BiasRowsOnEveryLibrary) {
  // Above the small-product rule, n < k: with B transposed the rule picks oneDNN's matmul
  // primitive (bias in its epilogue) on AVX-512, else dnnl_sgemm (bias added after); below the
  // rule, OpenBLAS. Batched products add the bias to each entry's C.
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_case(Case{130, 67, 96, ta, tb, 5, 1, false, false, true}, DType::F32, DType::F32);
      check_case(Case{9, 11, 13, ta, tb, 2, 3, false, false, true}, DType::F32, DType::F32);
      check_case(Case{300, 520, 40, ta, tb, 0, 1, false, false, true}, DType::F32, DType::F32);
    }
}

TEST(Gemm, Bf16InputsWithFloat32OutputMatchReference) {
  for (const Case& c : cases()) check_case(c, DType::BF16, DType::F32);
}

TEST(Gemm, Bf16ProductsWiderThanATileMatchReference) {
  // More rows or columns of C than one oneDNN call takes (kBf16Tile, 8192): the tiles' operand
  // and C offsets for every transpose, with padding.
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const Case& c : {Case{8200, 9, 6, ta, tb, 3}, Case{7, 8300, 5, ta, tb, 2}}) {
        check_case(c, DType::BF16, DType::F32);
        check_case(c, DType::BF16, DType::BF16);
      }
}

TEST(Gemm, Bf16AndF16WithOwnTypeOutputRoundOnce) {
  for (const Case& c : cases()) {
    check_case(c, DType::BF16, DType::BF16);
    check_case(c, DType::F16, DType::F32);
    check_case(c, DType::F16, DType::F16);
  }
}

TEST(Gemm, OneDnnSgemmMatchesOpenBlasWithinFloat32Rounding) {
  if (!cpu::onednn::available()) {
    try {
      float x = 0;
      cpu::onednn::sgemm(false, false, 1, 1, 1, &x, 1, &x, 1, false, &x, 1);
      FAIL() << "the stand-in ran a GEMM";
    } catch (const DeviceError& e) {
      EXPECT_NE(std::string(e.what()).find("built without oneDNN"), std::string::npos) << e.what();
    }
    GTEST_SKIP() << cpu::onednn::version();
  }
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t m = 70, n = 45, k = 133;
      const Stored a = random_matrix(ta ? k : m, ta ? m : k, 2, 3, DType::F32);
      const Stored b = random_matrix(tb ? n : k, tb ? k : n, 1, 4, DType::F32);
      std::vector<float> c1(static_cast<size_t>(m * n)), c2(c1.size());
      cpu::onednn::sgemm(ta, tb, m, n, k, a.data.data(), a.ld, b.data.data(), b.ld, false, c1.data(), n);
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                  a.data.data(), static_cast<int>(a.ld), b.data.data(), static_cast<int>(b.ld), 0.0f, c2.data(), n);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double want = 0, mag = 0;
          for (int64_t q = 0; q < k; ++q) {
            want += op_at(a, ta, i, q) * op_at(b, tb, q, j);
            mag += std::fabs(op_at(a, ta, i, q) * op_at(b, tb, q, j));
          }
          const size_t at = static_cast<size_t>(i * n + j);
          ASSERT_NEAR(c1[at], want, k * kEpsF32 * mag) << "onednn ta " << ta << " tb " << tb;
          ASSERT_NEAR(c2[at], want, k * kEpsF32 * mag) << "openblas ta " << ta << " tb " << tb;
        }
    }
}

TEST(Gemm, LibraryChoiceIsAFixedRulePerShape) {
  const cpu::GemmLibrary big = cpu::gemm_library(1024, 1024, 1024), small = cpu::gemm_library(4, 4, 4);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(cpu::gemm_library(1024, 1024, 1024), big);
    EXPECT_EQ(cpu::gemm_library(4, 4, 4), small);
  }
  const std::string_view isa = cpu::onednn::isa();
  const bool fast = cpu::onednn::available() && (isa.starts_with("avx2") || isa.starts_with("avx512"));
  if (std::getenv("STRAND_GEMM") == nullptr) {
    EXPECT_EQ(big, fast ? cpu::GemmLibrary::OneDnn : cpu::GemmLibrary::OpenBlas) << isa;
    EXPECT_EQ(small, cpu::GemmLibrary::OpenBlas);
    // A linear layer's input gradient from a wider output (B transposed, n < k): the matmul
    // primitive on AVX-512; the same shape untransposed, or wider than its sum, stays on sgemm.
    const bool avx512 = cpu::onednn::available() && isa.starts_with("avx512");
    EXPECT_EQ(cpu::gemm_library(1024, 768, 3072, true), avx512 ? cpu::GemmLibrary::OneDnnMatmul : big) << isa;
    EXPECT_EQ(cpu::gemm_library(1024, 768, 3072, false), big);
    EXPECT_EQ(cpu::gemm_library(1024, 3072, 768, true), big);
  }
}

TEST(Gemm, RepeatsBitForBit) {
  for (DType in : {DType::F32, DType::BF16}) {
    const int64_t m = 256, n = 192, k = 320;
    const Stored a = random_matrix(m, k, 0, 7, in), b = random_matrix(k, n, 0, 8, in);
    const std::vector<uint16_t> a16 = to_half(a.data, DType::BF16), b16 = to_half(b.data, DType::BF16);
    std::vector<float> c1(static_cast<size_t>(m * n)), c2(c1.size());
    for (std::vector<float>* c : {&c1, &c2}) {
      backend::GemmParams p;
      p.dtype = in;
      p.c_dtype = DType::F32;
      p.m = m, p.n = n, p.k = k;
      p.a = {in == DType::F32 ? static_cast<const void*>(a.data.data()) : a16.data(), k, false};
      p.b = {in == DType::F32 ? static_cast<const void*>(b.data.data()) : b16.data(), n, false};
      p.c = c->data();
      p.ldc = n;
      cpu::gemm(p);
    }
    EXPECT_EQ(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)), 0) << dtype_name(in);
  }
}

TEST(Gemm, RefusesMixedTypesItHasNoKernelFor) {
  float x = 0;
  backend::GemmParams p;
  p.m = p.n = p.k = 1;
  p.a = {&x, 1, false};
  p.b = {&x, 1, false};
  p.c = &x;
  p.dtype = DType::F32;
  p.c_dtype = DType::BF16;
  EXPECT_THROW(cpu::gemm(p), DTypeError);
  p.dtype = DType::F64;
  p.c_dtype = DType::F32;
  EXPECT_THROW(cpu::gemm(p), DTypeError);
  p.dtype = DType::BF16;
  p.c_dtype = DType::F16;
  EXPECT_THROW(cpu::gemm(p), DTypeError);
}

}  // namespace
}  // namespace strand
