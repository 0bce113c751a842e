// Tests of .bin token shards: round trip, memory mapping, concatenation, and bad files named in errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "data/shards.h"
#include "data/token_source.h"
#include "support/temp_dir.h"

namespace strand::data {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

std::vector<int32_t> ramp(int64_t n, int32_t mul = 7919, int32_t mod = 65536) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>((i * mul) % mod);
  return v;
}

// Asserts that `fn` throws DataError whose message contains every one of `parts`.
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

void write_raw(const std::string& path, const std::vector<int32_t>& header, const std::vector<uint16_t>& body) {
  std::vector<int32_t> h(256, 0);
  std::copy(header.begin(), header.end(), h.begin());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(h.data()), 1024);
  out.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size() * 2));
}

TEST(TokenShard, RoundTripKeepsEveryTokenAndTheLlmcHeader) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const auto tokens = ramp(5000);
  write_token_shard(path, tokens);
  EXPECT_EQ(read_shard_header(path), 5000);
  EXPECT_EQ(read_token_shard(path), tokens);
  EXPECT_EQ(fs::file_size(path), 1024u + 2u * 5000u);

  // The header is exactly llm.c's: magic, version, count, then zeros.
  std::ifstream in(path, std::ios::binary);
  std::vector<int32_t> header(256);
  in.read(reinterpret_cast<char*>(header.data()), 1024);
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], 5000);
  for (int i = 3; i < 256; ++i) EXPECT_EQ(header[i], 0) << i;
  // Tokens are little-endian uint16 right after the header.
  std::vector<uint16_t> body(5000);
  in.read(reinterpret_cast<char*>(body.data()), 10000);
  for (size_t i = 0; i < body.size(); ++i) ASSERT_EQ(body[i], tokens[i]) << i;
}

TEST(TokenShard, EmptyShardAndTheLargestId) {
  TempDir dir;
  write_token_shard(dir.file("e.bin"), std::vector<int32_t>{});
  EXPECT_EQ(read_shard_header(dir.file("e.bin")), 0);
  EXPECT_TRUE(read_token_shard(dir.file("e.bin")).empty());
  write_token_shard(dir.file("m.bin"), std::vector<int32_t>{0, 65535, 1});
  EXPECT_EQ(read_token_shard(dir.file("m.bin")), (std::vector<int32_t>{0, 65535, 1}));
}

TEST(TokenShard, MappedReadsMatchAnyRange) {
  TempDir dir;
  const auto tokens = ramp(3001);
  write_token_shard(dir.file("a.bin"), tokens);
  const auto src = open_token_shard(dir.file("a.bin"));
  ASSERT_EQ(src->size(), 3001);
  EXPECT_EQ(src->name(), dir.file("a.bin"));
  for (int64_t start : {0, 1, 777, 2999}) {
    const int64_t n = std::min<int64_t>(65, 3001 - start);
    std::vector<int32_t> got(static_cast<size_t>(n));
    src->read(start, n, got.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], tokens[start + i]) << start << "+" << i;
  }
  std::vector<int32_t> out(10);
  EXPECT_THROW(src->read(2995, 10, out.data()), ValueError);
}

TEST(TokenShard, WriteRejectsIdsOutsideUint16) {
  TempDir dir;
  const std::string path = dir.file("bad.bin");
  for (int32_t bad : {-1, 65536}) {
    try {
      write_token_shard(path, std::vector<int32_t>{1, bad});
      ADD_FAILURE() << "expected ValueError for " << bad;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::to_string(bad)), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(path));  // nothing half-written under the final name
}

TEST(TokenShardErrors, MissingFileIsNamed) {
  TempDir dir;
  const std::string path = dir.file("nope.bin");
  expect_data_error([&] { read_shard_header(path); }, {path, "not found"});
  expect_data_error([&] { open_token_shard(path); }, {path, "not found"});
  expect_data_error([&] { open_token_files({path}); }, {path, "not found"});
  expect_data_error([&] { expand_data_paths({dir.file("train_*.bin")}); }, {dir.file("train_*.bin"), "matches"});
}

TEST(TokenShardErrors, TruncatedBodyIsNamedWithTheCounts) {
  TempDir dir;
  const std::string path = dir.file("t.bin");
  write_token_shard(path, ramp(100));
  fs::resize_file(path, 1024 + 2 * 100 - 2);  // one token short
  expect_data_error([&] { read_token_shard(path); }, {path, "truncated", "100 tokens"});
  expect_data_error([&] { open_token_shard(path); }, {path, "truncated"});
}

TEST(TokenShardErrors, AShardCutShortWhileOpenIsAnErrorNotSigbus) {
  // The file is cut under a reader that mapped it whole (as `truncate` or an overwrite in
  // place would): reads past the new end are a DataError, reads before it still work.
  TempDir dir;
  const std::string path = dir.file("live.bin");
  const auto tokens = ramp(20000);
  write_token_shard(path, tokens);
  const auto src = open_token_shard(path);
  fs::resize_file(path, 1024 + 2 * 5000);
  std::vector<int32_t> out(100);
  expect_data_error([&] { src->read(15000, 100, out.data()); },
                    {path, ": the file shrank to 11024 bytes while this run reads it", "tokens [15000, 15100) are gone"});
  src->read(1000, 100, out.data());
  EXPECT_EQ(out[0], tokens[1000]);
}

TEST(TokenShardErrors, TruncatedHeaderIsNamed) {
  TempDir dir;
  const std::string path = dir.file("h.bin");
  write_token_shard(path, ramp(10));
  fs::resize_file(path, 100);
  expect_data_error([&] { read_shard_header(path); }, {path, "truncated", "header"});
}

TEST(TokenShardErrors, WrongMagicAndVersionAreNamed) {
  TempDir dir;
  write_raw(dir.file("magic.bin"), {20240521, 1, 3}, {1, 2, 3});
  expect_data_error([&] { read_token_shard(dir.file("magic.bin")); }, {dir.file("magic.bin"), "magic", "20240521"});
  write_raw(dir.file("v2.bin"), {20240520, 2, 3}, {1, 2, 3});
  expect_data_error([&] { open_token_shard(dir.file("v2.bin")); }, {dir.file("v2.bin"), "version 2"});
}

TEST(TokenShardErrors, TrailingBytesAndNegativeCountAreCorrupt) {
  TempDir dir;
  write_raw(dir.file("long.bin"), {20240520, 1, 2}, {1, 2, 3});
  expect_data_error([&] { read_token_shard(dir.file("long.bin")); }, {dir.file("long.bin"), "trailing"});
  write_raw(dir.file("neg.bin"), {20240520, 1, -5}, {});
  expect_data_error([&] { read_token_shard(dir.file("neg.bin")); }, {dir.file("neg.bin"), "negative"});
}

TEST(TokenFiles, GlobConcatenatesShardsInSortedOrder) {
  TempDir dir;
  const auto a = ramp(50, 3), b = ramp(7, 5), c = ramp(120, 11);
  // Written out of order: the stream order is the sorted path order.
  write_token_shard(dir.file("train_000002.bin"), c);
  write_token_shard(dir.file("train_000000.bin"), a);
  write_token_shard(dir.file("train_000001.bin"), b);
  const auto src = open_token_files({dir.file("train_*.bin")});
  std::vector<int32_t> expected = a;
  expected.insert(expected.end(), b.begin(), b.end());
  expected.insert(expected.end(), c.begin(), c.end());
  ASSERT_EQ(src->size(), static_cast<int64_t>(expected.size()));
  std::vector<int32_t> all(expected.size());
  src->read(0, src->size(), all.data());
  EXPECT_EQ(all, expected);
  // A read across two part boundaries.
  std::vector<int32_t> mid(20);
  src->read(45, 20, mid.data());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(mid[i], expected[45 + i]);
  // where() points into the file that holds the token.
  EXPECT_EQ(src->where(52), dir.file("train_000001.bin") + " (token 2)");
  EXPECT_EQ(src->where(57), dir.file("train_000002.bin") + " (token 0)");
}

TEST(TokenFiles, ConcatSkipsEmptyParts) {
  const auto a = std::make_shared<MemoryTokens>(std::vector<int32_t>{1, 2}, "a");
  const auto e = std::make_shared<MemoryTokens>(std::vector<int32_t>{}, "e");
  const auto b = std::make_shared<MemoryTokens>(std::vector<int32_t>{3, 4, 5}, "b");
  ConcatTokens cat({a, e, e, b, e});
  ASSERT_EQ(cat.size(), 5);
  std::vector<int32_t> all(5);
  cat.read(0, 5, all.data());
  EXPECT_EQ(all, (std::vector<int32_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(cat.where(2), "b (token 0)");
  EXPECT_EQ(cat.name(), "a and 4 more");
}

TEST(TokenFiles, FormatIsForcedOrTakenFromTheExtension) {
  TempDir dir;
  write_token_shard(dir.file("x.tokens"), ramp(10));
  expect_data_error([&] { open_token_files({dir.file("x.tokens")}); }, {dir.file("x.tokens"), "unknown token file type"});
  EXPECT_EQ(open_token_files({dir.file("x.tokens")}, TokenFiles::Bin)->size(), 10);
  // A shard read as HDF5 fails naming the file.
  expect_data_error([&] { open_token_files({dir.file("x.tokens")}, TokenFiles::Hdf5); }, {dir.file("x.tokens"), "HDF5"});
}

}  // namespace
}  // namespace strand::data
