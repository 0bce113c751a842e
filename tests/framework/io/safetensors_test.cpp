// safetensors writer and reader: the exact bytes of a small file worked out from the format's
// specification, bit-exact round trips of every dtype (non-contiguous input included), header
// alignment, and one-line errors for truncated, overlong and malformed files.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "framework/io/safetensors.h"

namespace strand::io {
namespace {
namespace fs = std::filesystem;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("strand_st_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

std::string read_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected CheckpointError, got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected CheckpointError, nothing was thrown";
  return "";
}

bool bytes_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

// The file for {"a": float32 [2] = {1, 2}} with metadata format=pt, byte by byte as the
// specification lays it out: u64 header length, JSON padded with spaces to a multiple of 8
// (together with the 8 length bytes), then the data.
TEST_F(SafetensorsTest, SmallFileHasTheSpecifiedBytes) {
  write_safetensors(path("a.safetensors"), {{"a", Tensor::from_vector({1.0, 2.0}, {2})}}, {{"format", "pt"}});
  std::string json = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  while ((8 + json.size()) % 8 != 0) json += ' ';
  std::string expected(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) expected[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  expected += json;
  const float values[2] = {1.0f, 2.0f};  // IEEE float32, little-endian on this host
  expected.append(reinterpret_cast<const char*>(values), sizeof values);
  EXPECT_EQ(read_bytes(path("a.safetensors")), expected);
}

TEST_F(SafetensorsTest, RoundTripIsBitExactForEveryDtypeInOrder) {
  Tensor f32 = Tensor::randn({3, 5}, 1);
  f32.data<float>()[0] = -0.0f;
  f32.data<float>()[1] = std::numeric_limits<float>::denorm_min();
  f32.data<float>()[2] = std::numeric_limits<float>::infinity();
  Tensor f64 = Tensor::randn({7}, 2, DType::F64);
  Tensor i32 = Tensor::from_vector({-3, 0, 7, 2147483647.0, -2147483648.0, 1}, {1, 2, 3}, DType::I32);
  Tensor bf16 = Tensor::randn({4}, 3, DType::BF16);
  Tensor f16 = Tensor::randn({2, 2}, 4, DType::F16);
  Tensor scalar = Tensor::full({}, 3.5);
  Tensor empty = Tensor::zeros({0, 4});
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"z.last.first", f32}, {"b", f64}, {"ints", i32}, {"bf", bf16}, {"half", f16},
      {"scalar", scalar},    {"empty", empty}, {"name with \"quote\" and \\ slash", Tensor::ones({1})}};
  write_safetensors(path("t.safetensors"), tensors, {{"format", "pt"}, {"note", "line\nbreak"}});

  const SafetensorsFile back = read_safetensors(path("t.safetensors"));
  EXPECT_EQ(back.metadata.at("format"), "pt");
  EXPECT_EQ(back.metadata.at("note"), "line\nbreak");
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(back.tensors[i].first, tensors[i].first);
    EXPECT_TRUE(bytes_equal(back.tensors[i].second, tensors[i].second)) << tensors[i].first;
  }
  // The data starts 8-byte aligned and the file is exactly header + data.
  const std::string bytes = read_bytes(path("t.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  size_t data = 0;
  for (const auto& [name, t] : tensors) data += t.nbytes();
  EXPECT_EQ(bytes.size(), 8 + n + data);
}

TEST_F(SafetensorsTest, NonContiguousInputIsWrittenRowMajor) {
  const Tensor base = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor transposed = base.as_strided({3, 2}, {1, 3}, 0);  // [[1,4],[2,5],[3,6]]
  write_safetensors(path("t.safetensors"), {{"t", transposed}});
  const SafetensorsFile back = read_safetensors(path("t.safetensors"));
  ASSERT_EQ(back.tensors.size(), 1u);
  EXPECT_EQ(back.tensors[0].second.shape(), (Shape{3, 2}));
  EXPECT_EQ(back.tensors[0].second.to_vector(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  EXPECT_TRUE(back.metadata.empty());
}

TEST_F(SafetensorsTest, BadNamesAreRefusedAndLeaveTheOldFile) {
  const std::string p = path("t.safetensors");
  write_safetensors(p, {{"keep", Tensor::ones({2})}});
  const std::string before = read_bytes(p);
  EXPECT_CONTAINS(error_of([&] { write_safetensors(p, {{"x", Tensor::ones({1})}, {"x", Tensor::ones({1})}}); }),
                  "'x'");
  EXPECT_CONTAINS(error_of([&] { write_safetensors(p, {{"__metadata__", Tensor::ones({1})}}); }), "__metadata__");
  EXPECT_CONTAINS(error_of([&] { write_safetensors(p, {{"", Tensor::ones({1})}}); }), p);
  EXPECT_EQ(read_bytes(p), before);
  for (const auto& e : fs::directory_iterator(dir_)) EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u);
}

TEST_F(SafetensorsTest, DamagedFilesAreOneLineNamingTheFile) {
  const std::string good = path("good.safetensors");
  write_safetensors(good, {{"a", Tensor::ones({4})}, {"b", Tensor::ones({2, 2})}});
  const std::string bytes = read_bytes(good);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);

  const std::string truncated = path("truncated.safetensors");
  write_bytes(truncated, bytes.substr(0, bytes.size() - 3));
  std::string msg = error_of([&] { read_safetensors(truncated); });
  EXPECT_CONTAINS(msg, truncated);
  EXPECT_CONTAINS(msg, "truncated");

  const std::string trailing = path("trailing.safetensors");
  write_bytes(trailing, bytes + "xx");
  EXPECT_CONTAINS(error_of([&] { read_safetensors(trailing); }), "trailing bytes");

  const std::string short_file = path("short.safetensors");
  write_bytes(short_file, "abc");
  EXPECT_CONTAINS(error_of([&] { read_safetensors(short_file); }), short_file);

  std::string overlong = bytes;
  const uint64_t huge = bytes.size();  // a header longer than what follows the length field
  std::memcpy(overlong.data(), &huge, 8);
  write_bytes(path("overlong.safetensors"), overlong);
  EXPECT_CONTAINS(error_of([&] { read_safetensors(path("overlong.safetensors")); }), "header length");

  std::string broken = bytes;
  broken[8 + 5] = ']';  // inside the JSON
  write_bytes(path("broken.safetensors"), broken);
  msg = error_of([&] { read_safetensors(path("broken.safetensors")); });
  EXPECT_CONTAINS(msg, "broken.safetensors");
  EXPECT_EQ(msg.find('\n'), std::string::npos);

  // A shape that disagrees with its byte range.
  std::string reshaped = bytes;
  const size_t at = reshaped.find("\"shape\":[4]");
  ASSERT_NE(at, std::string::npos);
  reshaped.replace(at, 11, "\"shape\":[3]");
  write_bytes(path("reshaped.safetensors"), reshaped);
  EXPECT_CONTAINS(error_of([&] { read_safetensors(path("reshaped.safetensors")); }), "tensor 'a' of shape [3]");

  EXPECT_CONTAINS(error_of([&] { read_safetensors(path("missing.safetensors")); }), "missing.safetensors");
}

TEST(SafetensorsDTypeName, EveryNameTheFormatUses) {
  EXPECT_STREQ(safetensors_dtype_name(DType::F32), "F32");
  EXPECT_STREQ(safetensors_dtype_name(DType::F64), "F64");
  EXPECT_STREQ(safetensors_dtype_name(DType::BF16), "BF16");
  EXPECT_STREQ(safetensors_dtype_name(DType::F16), "F16");
  EXPECT_STREQ(safetensors_dtype_name(DType::I32), "I32");
}

}  // namespace
}  // namespace strand::io
