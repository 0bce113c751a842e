// TokenSource: random access to a token stream (.bin shards, HDF5 datasets, memory), and DataError.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/error.h"

namespace strand {

// Bad data files: missing, truncated, wrong magic or version, corrupt HDF5. The message
// always names the file, so the CLI's one error line tells the user which file to fix.
// In namespace strand beside the other error types, so STRAND_CHECK(..., DataError, ...) works.
struct DataError : Error { using Error::Error; };

}  // namespace strand

namespace strand::data {

// A read-only stream of token ids with O(1) random access: the loader reads any row of any
// step directly, which is what makes resuming from a checkpoint O(1).
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual int64_t size() const = 0;
  // Copies tokens [start, start + count) into out; the range must lie inside [0, size()).
  virtual void read(int64_t start, int64_t count, int32_t* out) const = 0;
  // Where token `offset` lives, for error messages: "PATH (token 123)".
  virtual std::string where(int64_t offset) const = 0;
  // The file(s) behind the stream, for error messages.
  virtual std::string name() const = 0;
};

// Tokens held in memory (tests, small corpora).
class MemoryTokens final : public TokenSource {
 public:
  explicit MemoryTokens(std::vector<int32_t> tokens, std::string name = "<memory>");
  int64_t size() const override { return static_cast<int64_t>(tokens_.size()); }
  void read(int64_t start, int64_t count, int32_t* out) const override;
  std::string where(int64_t offset) const override;
  std::string name() const override { return name_; }

 private:
  std::vector<int32_t> tokens_;
  std::string name_;
};

// Several sources read as one stream, in the order given (llm.c's train_*.bin shards).
class ConcatTokens final : public TokenSource {
 public:
  explicit ConcatTokens(std::vector<std::shared_ptr<const TokenSource>> parts);
  int64_t size() const override { return starts_.back(); }
  void read(int64_t start, int64_t count, int32_t* out) const override;
  std::string where(int64_t offset) const override;
  std::string name() const override;

 private:
  size_t part_of(int64_t offset) const;  // index of the part holding token `offset`
  std::vector<std::shared_ptr<const TokenSource>> parts_;
  std::vector<int64_t> starts_;  // starts_[i] = first stream offset of part i; back() = total
};

// Expands each entry (a path or a glob pattern such as "data/train_*.bin") to sorted paths.
// Throws DataError naming the entry when a path is missing or a pattern matches nothing.
std::vector<std::string> expand_data_paths(const std::vector<std::string>& patterns);

// How open_token_files reads a file: llm.c .bin shards, HDF5 `tokens` datasets, or by the
// file's extension (.bin, .h5/.hdf5).
enum class TokenFiles { ByExtension, Bin, Hdf5 };

// Opens token files as `format`. Several files become one ConcatTokens stream in the order of
// expand_data_paths. DataError names the file that fails (or has an unknown extension).
std::shared_ptr<const TokenSource> open_token_files(const std::vector<std::string>& patterns,
                                                    TokenFiles format = TokenFiles::ByExtension);

}  // namespace strand::data
