// Reading, validating, writing and memory-mapping llm.c .bin token shards.
#include "data/shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace strand::data {

// The format is little-endian and we copy it byte for byte; a big-endian port would swap here.
static_assert(std::endian::native == std::endian::little, "token shards assume a little-endian host");

namespace {

struct ShardInfo {
  int64_t num_tokens = 0;
  int64_t file_bytes = 0;
};

ShardInfo validate_shard(const std::string& path) {
  std::error_code ec;
  STRAND_CHECK(std::filesystem::is_regular_file(path, ec), DataError, path, ": data file not found");
  const auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  STRAND_CHECK(!ec, DataError, path, ": cannot read the file size (", ec.message(), ")");
  STRAND_CHECK(file_bytes >= kShardHeaderBytes, DataError, path, ": truncated token shard: ",
               file_bytes, " bytes, shorter than the ", kShardHeaderBytes, "-byte header");

  int32_t header[kShardHeaderInts];
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(header), kShardHeaderBytes);
  STRAND_CHECK(in.good(), DataError, path, ": cannot read the token shard header");
  STRAND_CHECK(header[0] == kShardMagic, DataError, path, ": not a token shard: magic ", header[0],
               ", expected ", kShardMagic);
  STRAND_CHECK(header[1] == kShardVersion, DataError, path, ": unsupported token shard version ",
               header[1], ", expected ", kShardVersion, " (uint16 tokens)");
  const int64_t n = header[2];
  STRAND_CHECK(n >= 0, DataError, path, ": corrupt token shard: negative token count ", n);
  const int64_t expected = kShardHeaderBytes + 2 * n;
  STRAND_CHECK(file_bytes >= expected, DataError, path, ": truncated token shard: header says ", n,
               " tokens (", expected, " bytes), file has ", file_bytes, " bytes");
  STRAND_CHECK(file_bytes == expected, DataError, path, ": corrupt token shard: header says ", n,
               " tokens (", expected, " bytes), file has ", file_bytes - expected, " trailing bytes");
  return {n, file_bytes};
}

// The mapping of one shard; unmapped when the last reader lets go.
class MappedShard final : public TokenSource {
 public:
  explicit MappedShard(const std::string& path) : path_(path) {
    const ShardInfo info = validate_shard(path);
    num_tokens_ = info.num_tokens;
    map_bytes_ = static_cast<size_t>(info.file_bytes);
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    STRAND_CHECK(fd_ >= 0, DataError, path, ": cannot open (", std::strerror(errno), ")");
    void* p = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd_, 0);
    const int map_errno = errno;
    if (p == MAP_FAILED) ::close(fd_);
    STRAND_CHECK(p != MAP_FAILED, DataError, path, ": cannot map the file (", std::strerror(map_errno), ")");
    base_ = p;
    tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(p) + kShardHeaderBytes);
  }
  ~MappedShard() override {
    ::munmap(base_, map_bytes_);
    ::close(fd_);
  }
  MappedShard(const MappedShard&) = delete;
  MappedShard& operator=(const MappedShard&) = delete;

  int64_t size() const override { return num_tokens_; }
  void read(int64_t start, int64_t count, int32_t* out) const override {
    STRAND_CHECK(start >= 0 && count >= 0 && start + count <= num_tokens_, ValueError,
                 "token shard read: range [", start, ", ", start + count, ") outside ", path_, " of ",
                 num_tokens_, " tokens");
    // A page of a mapping past the end of a file cut short under the run would raise SIGBUS:
    // the file's size is checked first (kept open for that; a file replaced by rename keeps
    // the mapped one alive and readable).
    struct stat st {};
    const int64_t needed = kShardHeaderBytes + 2 * (start + count);
    STRAND_CHECK(::fstat(fd_, &st) == 0 && st.st_size >= needed, DataError, path_, ": the file shrank to ",
                 static_cast<int64_t>(st.st_size), " bytes while this run reads it (cut or overwritten in place); "
                 "tokens [", start, ", ", start + count, ") are gone");
    const uint16_t* src = tokens_ + start;
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) out[i] = src[i];
  }
  std::string where(int64_t offset) const override {
    return detail::concat(path_, " (token ", offset, ")");
  }
  std::string name() const override { return path_; }

 private:
  std::string path_;
  int64_t num_tokens_ = 0;
  size_t map_bytes_ = 0;
  int fd_ = -1;  // open for the size check of each read
  void* base_ = nullptr;
  const uint16_t* tokens_ = nullptr;
};

}  // namespace

void write_token_shard(const std::string& path, std::span<const int32_t> tokens) {
  const auto n = static_cast<int64_t>(tokens.size());
  STRAND_CHECK(n <= INT32_MAX, ValueError, "write_token_shard: ", path, ": ", n,
               " tokens exceed the int32 count of the header; write several shards");
  std::vector<uint16_t> body(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    STRAND_CHECK(tokens[i] >= 0 && tokens[i] < kShardMaxVocab, ValueError, "write_token_shard: ", path,
                 ": token ", tokens[i], " at position ", i, " does not fit uint16 [0, ", kShardMaxVocab, ")");
    body[i] = static_cast<uint16_t>(tokens[i]);
  }
  int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(n);

  const std::string tmp = detail::concat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    STRAND_CHECK(out.is_open(), DataError, path, ": cannot open for writing (", std::strerror(errno), ")");
    out.write(reinterpret_cast<const char*>(header), kShardHeaderBytes);
    out.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size() * 2));
    out.flush();
    if (!out.good()) {
      std::remove(tmp.c_str());
      throw DataError(detail::concat(path, ": write failed (disk full?)"));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw DataError(detail::concat(path, ": cannot rename the finished shard into place (", ec.message(), ")"));
  }
}

int64_t read_shard_header(const std::string& path) { return validate_shard(path).num_tokens; }

std::vector<int32_t> read_token_shard(const std::string& path) {
  const int64_t n = validate_shard(path).num_tokens;
  std::vector<uint16_t> body(static_cast<size_t>(n));
  std::ifstream in(path, std::ios::binary);
  in.seekg(kShardHeaderBytes);
  in.read(reinterpret_cast<char*>(body.data()), static_cast<std::streamsize>(n * 2));
  STRAND_CHECK(in.good() || n == 0, DataError, path, ": read of ", n, " tokens failed");
  return std::vector<int32_t>(body.begin(), body.end());
}

std::shared_ptr<const TokenSource> open_token_shard(const std::string& path) {
  return std::make_shared<MappedShard>(path);
}

}  // namespace strand::data
