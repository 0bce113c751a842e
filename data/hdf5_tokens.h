// HDF5 token datasets: a 1-D integer dataset `tokens` and optionally `doc_offsets`.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/token_source.h"

namespace strand::data {

inline constexpr const char* kHdf5TokensDataset = "tokens";
inline constexpr const char* kHdf5DocOffsetsDataset = "doc_offsets";

// Opens `path` and its 1-D integer dataset `tokens` for hyperslab reads (any integer type;
// values are converted to int32). Throws DataError naming the file (and the dataset) when the
// file is missing, is not HDF5 or is corrupt, lacks `tokens`, or `tokens` is not 1-D integer.
std::shared_ptr<const TokenSource> open_hdf5_tokens(const std::string& path);

// The whole `tokens` dataset in memory.
std::vector<int32_t> read_hdf5_tokens(const std::string& path);

// Document start offsets into `tokens`, or empty when the file has no `doc_offsets`. They must
// be non-decreasing and within [0, token count]; otherwise DataError naming file and dataset.
std::vector<int64_t> read_hdf5_doc_offsets(const std::string& path);

// Writes `tokens` (int32) and, when non-empty, `doc_offsets` (int64) to a new file at `path`.
void write_hdf5_tokens(const std::string& path, std::span<const int32_t> tokens,
                       std::span<const int64_t> doc_offsets = {});

}  // namespace strand::data
