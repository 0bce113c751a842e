// HDF5 token datasets through the HDF5 C library: open and validate, hyperslab reads, writing.
#include "data/hdf5_tokens.h"

#include <hdf5.h>

#include <filesystem>
#include <utility>

#include "framework/io/hdf5_handle.h"

namespace strand::data {

namespace {

using io::hdf5::Handle;
using QuietHdf5Errors = io::hdf5::QuietErrors;

std::string hdf5_reason() {
  const std::string reason = io::hdf5::error_reason();
  return reason.empty() ? std::string("unknown HDF5 error") : reason;
}

Handle open_file(const std::string& path) {
  std::error_code ec;
  STRAND_CHECK(std::filesystem::is_regular_file(path, ec), DataError, path, ": data file not found");
  QuietHdf5Errors quiet;
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (is_h5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw DataError(detail::concat(path, ": corrupt HDF5 file: no HDF5 signature"));
  }
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  STRAND_CHECK(file.valid(), DataError, path, ": corrupt HDF5 file: ", hdf5_reason());
  return file;
}

// Opens a 1-D integer dataset and returns it with its length; `required` false returns an
// invalid handle when the dataset is absent.
std::pair<Handle, int64_t> open_1d_integer(const Handle& file, const std::string& path,
                                           const char* dataset, bool required) {
  QuietHdf5Errors quiet;
  const htri_t exists = H5Lexists(file.get(), dataset, H5P_DEFAULT);
  STRAND_CHECK(exists >= 0, DataError, path, ": corrupt HDF5 file: ", hdf5_reason());
  if (exists == 0) {
    STRAND_CHECK(!required, DataError, path, ": HDF5 dataset '", dataset, "' not found");
    return {Handle(), 0};
  }
  Handle ds(H5Dopen2(file.get(), dataset, H5P_DEFAULT), H5Dclose);
  STRAND_CHECK(ds.valid(), DataError, path, ": HDF5 dataset '", dataset, "' cannot be opened: ", hdf5_reason());
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  STRAND_CHECK(type.valid() && H5Tget_class(type.get()) == H5T_INTEGER, DataError, path,
               ": HDF5 dataset '", dataset, "' must hold integers");
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  STRAND_CHECK(space.valid(), DataError, path, ": HDF5 dataset '", dataset, "': ", hdf5_reason());
  const int rank = H5Sget_simple_extent_ndims(space.get());
  STRAND_CHECK(rank == 1, DataError, path, ": HDF5 dataset '", dataset, "' must be 1-D, it has ", rank,
               " dimensions");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space.get(), &n, nullptr);
  return {std::move(ds), static_cast<int64_t>(n)};
}

// Reads [start, start + count) of a 1-D dataset converted to `mem_type`.
void read_range(const Handle& ds, const std::string& path, const char* dataset, hid_t mem_type,
                int64_t start, int64_t count, void* out) {
  if (count == 0) return;
  QuietHdf5Errors quiet;
  Handle file_space(H5Dget_space(ds.get()), H5Sclose);
  const hsize_t offset = static_cast<hsize_t>(start), n = static_cast<hsize_t>(count);
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &offset, nullptr, &n, nullptr);
  Handle mem_space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  const herr_t rc = H5Dread(ds.get(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out);
  STRAND_CHECK(rc >= 0, DataError, path, ": corrupt HDF5 dataset '", dataset, "': read of [", start, ", ",
               start + count, ") failed: ", hdf5_reason());
}

// The open file and its `tokens` dataset. HDF5 (serial build) is not thread-safe: the loader
// reads from one thread.
class Hdf5Tokens final : public TokenSource {
 public:
  explicit Hdf5Tokens(const std::string& path) : path_(path), file_(open_file(path)) {
    auto [ds, n] = open_1d_integer(file_, path, kHdf5TokensDataset, true);
    tokens_ = std::move(ds);
    size_ = n;
  }
  int64_t size() const override { return size_; }
  void read(int64_t start, int64_t count, int32_t* out) const override {
    STRAND_CHECK(start >= 0 && count >= 0 && start + count <= size_, ValueError, "HDF5 token read: range [",
                 start, ", ", start + count, ") outside ", path_, " of ", size_, " tokens");
    read_range(tokens_, path_, kHdf5TokensDataset, H5T_NATIVE_INT32, start, count, out);
  }
  std::string where(int64_t offset) const override {
    return detail::concat(path_, " (dataset 'tokens', token ", offset, ")");
  }
  std::string name() const override { return path_; }

 private:
  std::string path_;
  Handle file_;
  Handle tokens_;
  int64_t size_ = 0;
};

}  // namespace

std::shared_ptr<const TokenSource> open_hdf5_tokens(const std::string& path) {
  auto source = std::make_shared<Hdf5Tokens>(path);
  // The loader does not use document offsets, but a file whose offsets are invalid is corrupt
  // or was written for another token stream: refuse it rather than train on it.
  read_hdf5_doc_offsets(path);
  return source;
}

std::vector<int32_t> read_hdf5_tokens(const std::string& path) {
  const Hdf5Tokens src(path);
  std::vector<int32_t> tokens(static_cast<size_t>(src.size()));
  src.read(0, src.size(), tokens.data());
  return tokens;
}

std::vector<int64_t> read_hdf5_doc_offsets(const std::string& path) {
  const Handle file = open_file(path);
  auto [tokens, num_tokens] = open_1d_integer(file, path, kHdf5TokensDataset, true);
  auto [ds, n] = open_1d_integer(file, path, kHdf5DocOffsetsDataset, false);
  if (!ds.valid()) return {};
  std::vector<int64_t> offsets(static_cast<size_t>(n));
  read_range(ds, path, kHdf5DocOffsetsDataset, H5T_NATIVE_INT64, 0, n, offsets.data());
  for (size_t i = 0; i < offsets.size(); ++i) {
    STRAND_CHECK(offsets[i] >= 0 && offsets[i] <= num_tokens, DataError, path, ": HDF5 dataset 'doc_offsets'[",
                 i, "] = ", offsets[i], " outside [0, ", num_tokens, "]");
    STRAND_CHECK(i == 0 || offsets[i] >= offsets[i - 1], DataError, path, ": HDF5 dataset 'doc_offsets' ",
                 "decreases at ", i, " (", offsets[i - 1], " then ", offsets[i], ")");
  }
  return offsets;
}

void write_hdf5_tokens(const std::string& path, std::span<const int32_t> tokens,
                       std::span<const int64_t> doc_offsets) {
  QuietHdf5Errors quiet;
  Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  STRAND_CHECK(file.valid(), DataError, path, ": cannot create HDF5 file: ", hdf5_reason());
  auto write_1d = [&](const char* name, hid_t file_type, hid_t mem_type, const void* data, size_t n) {
    const hsize_t dims = n;
    Handle space(H5Screate_simple(1, &dims, nullptr), H5Sclose);
    Handle ds(H5Dcreate2(file.get(), name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
              H5Dclose);
    STRAND_CHECK(ds.valid(), DataError, path, ": cannot create HDF5 dataset '", name, "': ", hdf5_reason());
    if (n > 0) {
      STRAND_CHECK(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, DataError, path,
                   ": cannot write HDF5 dataset '", name, "': ", hdf5_reason());
    }
  };
  write_1d(kHdf5TokensDataset, H5T_STD_I32LE, H5T_NATIVE_INT32, tokens.data(), tokens.size());
  if (!doc_offsets.empty()) {
    write_1d(kHdf5DocOffsetsDataset, H5T_STD_I64LE, H5T_NATIVE_INT64, doc_offsets.data(), doc_offsets.size());
  }
}

}  // namespace strand::data
