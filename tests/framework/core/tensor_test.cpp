// Tensor core: bfloat16/float16 rounding (exact bit patterns), views sharing storage and
// version counters, as_strided, copies across dtypes and strides, allocator statistics,
// random factories, and the errors bad factory input raises.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "framework/core/allocator.h"
#include "framework/core/error.h"
#include "framework/core/tensor.h"
#include "framework/ops/view.h"

namespace strand {
namespace {

float from_bits(uint32_t u) { return std::bit_cast<float>(u); }
uint16_t bf16_bits_via_tensor(double v) {
  return Tensor::from_vector({v}, {1}, DType::BF16).data<bfloat16>()[0].bits;
}
uint16_t f16_bits_via_tensor(double v) { return Tensor::from_vector({v}, {1}, DType::F16).data<float16>()[0].bits; }

TEST(DTypeConversion, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16_bits(-2.0f), 0xC000);
  EXPECT_EQ(float_to_bf16_bits(0.0f), 0x0000);
  EXPECT_EQ(float_to_bf16_bits(-0.0f), 0x8000);
  // 1 + 2^-8 lies halfway between 1 (0x3F80) and 1 + 2^-7 (0x3F81): ties go to the even 0x3F80.
  EXPECT_EQ(float_to_bf16_bits(1.0f + 0x1p-8f), 0x3F80);
  // 1 + 3 * 2^-8 lies halfway between 0x3F81 and 0x3F82: the even one is 0x3F82.
  EXPECT_EQ(float_to_bf16_bits(1.0f + 3 * 0x1p-8f), 0x3F82);
  // Just above the tie rounds up.
  EXPECT_EQ(float_to_bf16_bits(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);
  // The largest float rounds past the largest bfloat16 to infinity.
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(float_to_bf16_bits(-std::numeric_limits<float>::infinity()), 0xFF80);
  // NaN stays NaN, including a signalling NaN whose payload sits in the low bits only.
  const uint16_t qnan = float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN());
  const uint16_t snan = float_to_bf16_bits(from_bits(0x7F800001u));
  EXPECT_GT(qnan & 0x7FFF, 0x7F80);
  EXPECT_GT(snan & 0x7FFF, 0x7F80);
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(snan)));
  EXPECT_EQ(bf16_bits_to_float(0x3F82), 1.0f + 0x1p-6f);
  // The same rounding through the tensor factories.
  EXPECT_EQ(bf16_bits_via_tensor(1.0 + 0x1p-8), 0x3F80);
  EXPECT_EQ(bf16_bits_via_tensor(1.0 + 3 * 0x1p-8), 0x3F82);
}

TEST(DTypeConversion, Float16RoundsToNearestEven) {
  EXPECT_EQ(float_to_f16_bits(1.0f), 0x3C00);
  EXPECT_EQ(float_to_f16_bits(-2.0f), 0xC000);
  EXPECT_EQ(float_to_f16_bits(-0.0f), 0x8000);
  EXPECT_EQ(float_to_f16_bits(65504.0f), 0x7BFF) << "largest float16";
  EXPECT_EQ(float_to_f16_bits(65519.0f), 0x7BFF) << "below the midpoint to 2^16";
  EXPECT_EQ(float_to_f16_bits(65520.0f), 0x7C00) << "the midpoint rounds (to even) to infinity";
  EXPECT_EQ(float_to_f16_bits(1e6f), 0x7C00);
  EXPECT_EQ(float_to_f16_bits(-1e6f), 0xFC00);
  EXPECT_EQ(float_to_f16_bits(1.0f + 0x1p-11f), 0x3C00) << "tie to even";
  EXPECT_EQ(float_to_f16_bits(1.0f + 3 * 0x1p-11f), 0x3C02) << "tie to even";
  EXPECT_EQ(float_to_f16_bits(0x1p-14f), 0x0400) << "smallest normal";
  EXPECT_EQ(float_to_f16_bits(0x1p-24f), 0x0001) << "smallest subnormal";
  EXPECT_EQ(float_to_f16_bits(0x1p-25f), 0x0000) << "half the smallest subnormal ties to even zero";
  EXPECT_EQ(float_to_f16_bits(3 * 0x1p-26f), 0x0001) << "0.75 of the smallest subnormal rounds up";
  EXPECT_EQ(float_to_f16_bits(3 * 0x1p-25f), 0x0002) << "1.5 subnormal units ties to even 2";
  EXPECT_EQ(float_to_f16_bits(1023.5f * 0x1p-24f), 0x0400) << "ties from the subnormal range into the normals";
  EXPECT_EQ(float_to_f16_bits(std::numeric_limits<float>::infinity()), 0x7C00);
  const uint16_t nan = float_to_f16_bits(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  // Back to float: exact.
  EXPECT_EQ(f16_bits_to_float(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_bits_to_float(0x03FF), 1023 * 0x1p-24f);
  EXPECT_EQ(f16_bits_to_float(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_bits_to_float(0x8000), -0.0f);
  EXPECT_TRUE(std::signbit(f16_bits_to_float(0x8000)));
  EXPECT_TRUE(std::isinf(f16_bits_to_float(0xFC00)));
  EXPECT_TRUE(std::isnan(f16_bits_to_float(0x7E00)));
  // Every finite float16 survives float16 -> float -> float16.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00) continue;  // inf and NaN
    ASSERT_EQ(float_to_f16_bits(f16_bits_to_float(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
  EXPECT_EQ(f16_bits_via_tensor(65520.0), 0x7C00);
  EXPECT_EQ(f16_bits_via_tensor(0x1p-24), 0x0001);
}

TEST(TensorViews, ShareStorageAndVersionCounter) {
  Tensor t = Tensor::zeros({4, 4});
  Tensor v = t.as_strided({2, 2}, {4, 1}, 5);  // the centre 2x2 block
  EXPECT_EQ(v.storage(), t.storage());
  EXPECT_FALSE(v.is_contiguous());
  const uint64_t before = t.version();
  v.fill_(1.0);
  EXPECT_GT(t.version(), before) << "a write through a view bumps the shared counter";
  EXPECT_EQ(t.version(), v.version());
  const auto tv = t.to_vector();
  for (int i = 0; i < 16; ++i) EXPECT_EQ(tv[i], (i == 5 || i == 6 || i == 9 || i == 10) ? 1.0 : 0.0) << i;
  // Recorded views from ops share storage as well.
  Tensor tr = ops::transpose(t, 0, 1);
  EXPECT_EQ(tr.storage(), t.storage());
  EXPECT_EQ(tr.strides(), (Shape{1, 4}));
  Tensor r = ops::reshape(t, {16});
  EXPECT_EQ(r.storage(), t.storage());
  r.fill_(2.0);
  EXPECT_EQ(tr.to_vector(), std::vector<double>(16, 2.0));
  EXPECT_EQ(r.version(), tr.version());
}

TEST(TensorViews, AsStridedReadsThroughStridesAndOffset) {
  Tensor a = Tensor::arange(6, DType::F64);
  // Overlapping windows: [[0,1,2],[1,2,3],[2,3,4]] (stride 1 on both axes).
  EXPECT_EQ(a.as_strided({3, 3}, {1, 1}, 0).to_vector(), (std::vector<double>{0, 1, 2, 1, 2, 3, 2, 3, 4}));
  // Stride 0 repeats an element; offset shifts the start.
  EXPECT_EQ(a.as_strided({2, 3}, {0, 2}, 1).to_vector(), (std::vector<double>{1, 3, 5, 1, 3, 5}));
  Tensor s = a.as_strided({}, {}, 4);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item(), 4.0);
  EXPECT_EQ(s.offset(), 4);
  EXPECT_EQ(*s.data<double>(), 4.0) << "data() points at the offset element";
}

TEST(TensorCopy, CopyFromAcrossDTypesAndStrides) {
  const std::vector<double> vals = {1.5, -2.25, 3.0, 0.125, -7.0, 96.0};
  Tensor src64 = Tensor::from_vector(vals, {2, 3}, DType::F64);
  Tensor src_t = src64.as_strided({3, 2}, {1, 3}, 0);  // transposed view
  const std::vector<double> transposed = {1.5, 0.125, -2.25, -7.0, 3.0, 96.0};
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    // Contiguous destination from a strided source (values exact in every dtype).
    Tensor dst = Tensor::zeros({3, 2}, dt);
    dst.copy_from(src_t);
    EXPECT_EQ(dst.to_vector(), transposed) << dtype_name(dt);
    // Strided destination from a contiguous source of another dtype.
    Tensor big = Tensor::zeros({3, 4}, dt);
    Tensor cols = big.as_strided({3, 2}, {4, 2}, 1);  // columns 1 and 3
    cols.copy_from(dst.copy_as(DType::F32, Device::cpu()));
    const auto bv = big.to_vector();
    for (int r = 0; r < 3; ++r) {
      EXPECT_EQ(bv[r * 4 + 0], 0.0);
      EXPECT_EQ(bv[r * 4 + 1], transposed[r * 2]);
      EXPECT_EQ(bv[r * 4 + 2], 0.0);
      EXPECT_EQ(bv[r * 4 + 3], transposed[r * 2 + 1]);
    }
  }
  // Rounding on the way: float64 -> bfloat16 rounds to nearest even (1 + 2^-8 -> 1).
  Tensor b = Tensor::zeros({1}, DType::BF16);
  b.copy_from(Tensor::from_vector({1.0 + 0x1p-8}, {1}, DType::F64));
  EXPECT_EQ(b.item(), 1.0);
  // To int32 and back.
  Tensor i = Tensor::zeros({3}, DType::I32);
  i.copy_from(Tensor::from_vector({4, -5, 6}, {3}));
  EXPECT_EQ(i.data<int32_t>()[1], -5);
  // A copy bumps the destination version and leaves the source alone.
  const uint64_t sv = src64.version(), dv = b.version();
  b.copy_from(Tensor::ones({1}));
  EXPECT_GT(b.version(), dv);
  EXPECT_EQ(src64.version(), sv);
  // Large strided copy (parallel gather path).
  Tensor big = Tensor::randn({512, 300}, 3);
  Tensor bt = ops::transpose(big, 0, 1);
  Tensor packed = bt.copy_as(DType::F64, Device::cpu());
  const auto bigv = big.to_vector(), pv = packed.to_vector();
  for (int64_t r = 0; r < 300; r += 7)
    for (int64_t c = 0; c < 512; c += 11) ASSERT_EQ(pv[r * 512 + c], bigv[c * 300 + r]);
}

TEST(Allocator, StatsFollowTensorLifetimes) {
  const Device cpu = Device::cpu();
  const int64_t block = 4 << 20;  // 4 MiB: a whole size class, so no rounding
  memory::empty_cache(cpu);
  const memory::Stats s0 = memory::stats(cpu);
  {
    Tensor a = Tensor::empty({block / 4}, DType::F32);
    const memory::Stats s1 = memory::stats(cpu);
    EXPECT_EQ(s1.current_bytes, s0.current_bytes + block);
    EXPECT_EQ(s1.reserved_bytes, s0.reserved_bytes + block);
    EXPECT_GE(s1.peak_bytes, s1.current_bytes);
    EXPECT_EQ(s1.allocations, s0.allocations + 1);
    EXPECT_EQ(s1.cache_hits, s0.cache_hits) << "the cache was empty";
    Tensor b = Tensor::empty({block / 8}, DType::F64);
    EXPECT_EQ(memory::stats(cpu).current_bytes, s0.current_bytes + 2 * block);
    Tensor view = a.as_strided({10}, {1}, 0);
    EXPECT_EQ(memory::stats(cpu).current_bytes, s0.current_bytes + 2 * block) << "views allocate nothing";
  }
  const memory::Stats s2 = memory::stats(cpu);
  EXPECT_EQ(s2.current_bytes, s0.current_bytes) << "freed blocks no longer count as in use";
  EXPECT_EQ(s2.peak_bytes, std::max(s0.peak_bytes, s0.current_bytes + 2 * block));
  EXPECT_EQ(s2.reserved_bytes, s0.reserved_bytes + 2 * block) << "they stay cached";
  {
    Tensor c = Tensor::empty({block / 4}, DType::F32);
    const memory::Stats s3 = memory::stats(cpu);
    EXPECT_EQ(s3.cache_hits, s2.cache_hits + 1) << "a block of the same size class is reused";
    EXPECT_EQ(s3.reserved_bytes, s2.reserved_bytes);
  }
  memory::reset_peak(cpu);
  const memory::Stats s4 = memory::stats(cpu);
  EXPECT_EQ(s4.peak_bytes, s4.current_bytes);
  memory::empty_cache(cpu);
  EXPECT_EQ(memory::stats(cpu).reserved_bytes, s0.reserved_bytes);
  // Small blocks are counted in whole size classes, never less than asked.
  {
    Tensor tiny = Tensor::empty({3}, DType::F32);
    EXPECT_GE(memory::stats(cpu).current_bytes, s4.current_bytes + 12);
  }
  EXPECT_EQ(memory::stats(cpu).current_bytes, s4.current_bytes);
}

TEST(TensorFactories, RandnAndUniformAreDeterministic) {
  Tensor a = Tensor::randn({1000}, 42), b = Tensor::randn({1000}, 42), c = Tensor::randn({1000}, 43);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_NE(a.to_vector(), c.to_vector());
  // The stream is the same for every dtype: float32 is the float64 draw rounded.
  const auto d64 = Tensor::randn({50}, 42, DType::F64, 2.0).to_vector();
  const auto av = a.to_vector();
  for (int i = 0; i < 50; ++i) EXPECT_EQ(av[i], static_cast<double>(static_cast<float>(d64[i] / 2.0)));
  // Moments of 20000 draws within five standard errors.
  const auto big = Tensor::randn({20000}, 1, DType::F64, 3.0).to_vector();
  const double n = static_cast<double>(big.size());
  double mean = 0, var = 0;
  for (double x : big) mean += x / n;
  for (double x : big) var += (x - mean) * (x - mean) / (n - 1);
  EXPECT_NEAR(mean, 0.0, 5 * 3.0 / std::sqrt(n));
  EXPECT_NEAR(std::sqrt(var), 3.0, 5 * 3.0 / std::sqrt(2 * n));
  const auto u = Tensor::uniform({5000}, 7, -2.0, 3.0, DType::F64).to_vector();
  EXPECT_EQ(u, Tensor::uniform({5000}, 7, -2.0, 3.0, DType::F64).to_vector());
  double umean = 0;
  for (double x : u) {
    ASSERT_GE(x, -2.0);
    ASSERT_LT(x, 3.0);
    umean += x / 5000;
  }
  EXPECT_NEAR(umean, 0.5, 5 * 5.0 / std::sqrt(12.0 * 5000));
  EXPECT_EQ(Tensor::arange(4).to_vector(), (std::vector<double>{0, 1, 2, 3}));
  EXPECT_EQ(Tensor::full({2}, -1.5, DType::BF16).to_vector(), (std::vector<double>{-1.5, -1.5}));
}

template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return "";
}

TEST(TensorFactories, BadInputNamesTheCall) {
  std::string msg = error_of<ShapeError>([] { Tensor::empty({2, -3}); });
  EXPECT_NE(msg.find("empty"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, -3]"), std::string::npos) << msg;
  msg = error_of<ShapeError>([] { Tensor::from_vector({1, 2, 3}, {2, 2}); });
  EXPECT_NE(msg.find("from_vector: 3 values for shape [2, 2]"), std::string::npos) << msg;
  EXPECT_THROW(Tensor::zeros({-1}), ShapeError);
  EXPECT_THROW(Tensor::randn({4, -1}, 1), ShapeError);
  msg = error_of<DTypeError>([] { Tensor::zeros({2}).data<double>(); });
  EXPECT_NE(msg.find("float32"), std::string::npos) << msg;
  msg = error_of<DTypeError>([] { Tensor::zeros({2}, DType::I32).set_requires_grad(true); });
  EXPECT_NE(msg.find("int32"), std::string::npos) << msg;
  msg = error_of<ShapeError>([] { Tensor::zeros({2, 2}).item(); });
  EXPECT_NE(msg.find("item"), std::string::npos) << msg;
  msg = error_of<ShapeError>([] { Tensor::zeros({2, 2}).copy_from(Tensor::zeros({4})); });
  EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  EXPECT_THROW(Tensor::zeros({4}).as_strided({2, 2}, {1}, 0), ShapeError);
  EXPECT_THROW(Tensor::zeros({4}).size(3), ValueError);
  Tensor x = Tensor::zeros({2});
  x.set_requires_grad(true);
  Tensor y = ops::reshape(x, {1, 2});
  EXPECT_THROW(y.set_requires_grad(false), AutogradError) << "only leaves change requires_grad";
  msg = error_of<AutogradError>([&] { x.set_grad(Tensor::zeros({3})); });
  EXPECT_NE(msg.find("set_grad"), std::string::npos) << msg;
}

}  // namespace
}  // namespace strand
