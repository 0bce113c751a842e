// Tests of HDF5 token datasets: round trip, hyperslab reads, doc_offsets, and corrupt files named in errors.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "data/hdf5_tokens.h"
#include "data/loader.h"
#include "support/temp_dir.h"

namespace strand::data {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

template <class Fn>
void expect_data_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// A file with one dataset of the given HDF5 type and shape, built with the C API directly,
// for the layouts write_hdf5_tokens never produces.
template <class T>
void write_dataset(const std::string& path, const char* name, hid_t file_type, hid_t mem_type,
                   const std::vector<hsize_t>& dims, const std::vector<T>& values) {
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t ds = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
  H5Dclose(ds);
  H5Sclose(space);
  H5Fclose(file);
}

std::vector<int32_t> ramp(int64_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>((i * 31337) % 50257);
  return v;
}

TEST(Hdf5Tokens, RoundTripWithDocOffsets) {
  TempDir dir;
  const auto tokens = ramp(1000);
  const std::vector<int64_t> docs = {0, 10, 10, 500, 1000};
  write_hdf5_tokens(dir.file("t.h5"), tokens, docs);
  EXPECT_EQ(read_hdf5_tokens(dir.file("t.h5")), tokens);
  EXPECT_EQ(read_hdf5_doc_offsets(dir.file("t.h5")), docs);
  write_hdf5_tokens(dir.file("nodocs.h5"), tokens);
  EXPECT_TRUE(read_hdf5_doc_offsets(dir.file("nodocs.h5")).empty());
}

TEST(Hdf5Tokens, HyperslabReadsMatchAnyRange) {
  TempDir dir;
  const auto tokens = ramp(777);
  write_hdf5_tokens(dir.file("t.hdf5"), tokens);
  const auto src = open_hdf5_tokens(dir.file("t.hdf5"));
  ASSERT_EQ(src->size(), 777);
  for (int64_t start : {0, 1, 300, 700}) {
    std::vector<int32_t> got(77);
    src->read(start, 77, got.data());
    for (int i = 0; i < 77; ++i) ASSERT_EQ(got[i], tokens[start + i]) << start << "+" << i;
  }
  EXPECT_NE(src->where(5).find(dir.file("t.hdf5")), std::string::npos);
}

TEST(Hdf5Tokens, AnyIntegerTypeIsConverted) {
  TempDir dir;
  const std::vector<uint16_t> u16 = {0, 1, 65535, 42};
  write_dataset(dir.file("u16.h5"), "tokens", H5T_STD_U16LE, H5T_NATIVE_UINT16, {4}, u16);
  EXPECT_EQ(read_hdf5_tokens(dir.file("u16.h5")), (std::vector<int32_t>{0, 1, 65535, 42}));
  const std::vector<int64_t> i64 = {7, 50256, 3};
  write_dataset(dir.file("i64.h5"), "tokens", H5T_STD_I64BE, H5T_NATIVE_INT64, {3}, i64);
  EXPECT_EQ(read_hdf5_tokens(dir.file("i64.h5")), (std::vector<int32_t>{7, 50256, 3}));
}

TEST(Hdf5Tokens, LoaderReadsTheRowRuleFromHdf5) {
  TempDir dir;
  const auto tokens = ramp(200);
  write_hdf5_tokens(dir.file("t.h5"), tokens);
  DataSpec spec;
  spec.format = config::DataFormat::Hdf5;
  spec.train = {dir.file("t.h5")};
  spec.seq_len = 8;
  spec.batch_size = 2;
  const auto loader = make_loader(spec, Split::train);
  const Batch b = loader->batch_at(3);
  for (int64_t r = 0; r < 2; ++r) {
    for (int64_t t = 0; t < 8; ++t) {
      const int64_t g = (3 * 2 + r) * 8 + t;
      EXPECT_EQ(b.inputs.data<int32_t>()[r * 8 + t], tokens[g]);
      EXPECT_EQ(b.targets.data<int32_t>()[r * 8 + t], tokens[g + 1]);
    }
  }
}

TEST(Hdf5TokensErrors, MissingFileIsNamed) {
  TempDir dir;
  expect_data_error([&] { open_hdf5_tokens(dir.file("nope.h5")); }, {dir.file("nope.h5"), "not found"});
}

TEST(Hdf5TokensErrors, NotHdf5IsCorrupt) {
  TempDir dir;
  const std::string path = dir.file("garbage.h5");
  std::ofstream(path) << "this is not an HDF5 file, just text that happens to end in .h5\n";
  expect_data_error([&] { open_hdf5_tokens(path); }, {path, "corrupt HDF5"});
}

TEST(Hdf5TokensErrors, TruncatedHdf5IsCorrupt) {
  TempDir dir;
  const std::string path = dir.file("cut.h5");
  write_hdf5_tokens(path, ramp(100000));
  fs::resize_file(path, fs::file_size(path) / 2);  // signature intact, data and metadata cut
  expect_data_error(
      [&] {
        const auto src = open_hdf5_tokens(path);
        std::vector<int32_t> all(static_cast<size_t>(src->size()));
        src->read(0, src->size(), all.data());
      },
      {path, "corrupt HDF5"});
}

TEST(Hdf5TokensErrors, MissingWrongTypeOrWrongRankDatasetIsNamed) {
  TempDir dir;
  write_dataset(dir.file("other.h5"), "ids", H5T_STD_I32LE, H5T_NATIVE_INT32, {3}, std::vector<int32_t>{1, 2, 3});
  expect_data_error([&] { open_hdf5_tokens(dir.file("other.h5")); }, {dir.file("other.h5"), "'tokens' not found"});
  write_dataset(dir.file("float.h5"), "tokens", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {2}, std::vector<float>{1, 2});
  expect_data_error([&] { open_hdf5_tokens(dir.file("float.h5")); }, {dir.file("float.h5"), "'tokens'", "integers"});
  write_dataset(dir.file("2d.h5"), "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, {2, 2}, std::vector<int32_t>{1, 2, 3, 4});
  expect_data_error([&] { open_hdf5_tokens(dir.file("2d.h5")); }, {dir.file("2d.h5"), "'tokens'", "1-D", "2"});
}

TEST(Hdf5TokensErrors, BadDocOffsetsAreNamed) {
  TempDir dir;
  write_hdf5_tokens(dir.file("dec.h5"), ramp(10), std::vector<int64_t>{0, 5, 3});
  expect_data_error([&] { read_hdf5_doc_offsets(dir.file("dec.h5")); }, {dir.file("dec.h5"), "doc_offsets", "decreases"});
  write_hdf5_tokens(dir.file("big.h5"), ramp(10), std::vector<int64_t>{0, 11});
  expect_data_error([&] { read_hdf5_doc_offsets(dir.file("big.h5")); }, {dir.file("big.h5"), "doc_offsets", "11"});
  // Opening the file for training checks them too.
  expect_data_error([&] { open_hdf5_tokens(dir.file("dec.h5")); }, {dir.file("dec.h5"), "doc_offsets", "decreases"});
  expect_data_error([&] { open_token_files({dir.file("big.h5")}); }, {dir.file("big.h5"), "doc_offsets", "11"});
}

}  // namespace
}  // namespace strand::data
