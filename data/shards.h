// Token shards in llm.c's .bin format: 256 little-endian int32 of header, then uint16 tokens.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/token_source.h"

namespace strand::data {

// Header layout (docs/data-format.md): header[0] = magic, header[1] = version,
// header[2] = token count, the rest zero.
inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;  // uint16 tokens (llm.c's version 2, uint32, is not read)
inline constexpr int64_t kShardHeaderInts = 256;
inline constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;
inline constexpr int64_t kShardMaxVocab = 65536;  // tokens are uint16

// Writes tokens (each in [0, 65536)) to `path` through a temporary name and a rename, so a
// crash never leaves a half shard under the final name. Throws ValueError on an id out of
// range, DataError naming the file when it cannot be written.
void write_token_shard(const std::string& path, std::span<const int32_t> tokens);

// Validates the header against the file size and returns the token count. Throws DataError
// naming the file: missing, shorter than the header, wrong magic, wrong version, or a size
// that disagrees with the count (truncated, or trailing bytes).
int64_t read_shard_header(const std::string& path);

// Reads a whole shard into memory (after the checks of read_shard_header).
std::vector<int32_t> read_token_shard(const std::string& path);

// A shard mapped into memory: tokens are paged in on demand, so opening a 100M-token shard
// costs nothing and reading a row touches only its pages.
std::shared_ptr<const TokenSource> open_token_shard(const std::string& path);

}  // namespace strand::data
