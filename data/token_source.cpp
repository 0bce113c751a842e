// Token streams in memory and concatenated, path/glob expansion, and opening token files by extension.
#include "data/token_source.h"

#include <glob.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "data/hdf5_tokens.h"
#include "data/shards.h"

namespace strand::data {

namespace {

void check_range(const TokenSource& src, int64_t start, int64_t count) {
  STRAND_CHECK(start >= 0 && count >= 0 && start + count <= src.size(), ValueError,
               "TokenSource::read: range [", start, ", ", start + count, ") outside ", src.name(),
               " of ", src.size(), " tokens");
}

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

}  // namespace

MemoryTokens::MemoryTokens(std::vector<int32_t> tokens, std::string name)
    : tokens_(std::move(tokens)), name_(std::move(name)) {}

void MemoryTokens::read(int64_t start, int64_t count, int32_t* out) const {
  check_range(*this, start, count);
  std::memcpy(out, tokens_.data() + start, static_cast<size_t>(count) * sizeof(int32_t));
}

std::string MemoryTokens::where(int64_t offset) const {
  return detail::concat(name_, " (token ", offset, ")");
}

ConcatTokens::ConcatTokens(std::vector<std::shared_ptr<const TokenSource>> parts)
    : parts_(std::move(parts)) {
  STRAND_CHECK(!parts_.empty(), ValueError, "ConcatTokens: no token sources given");
  starts_.reserve(parts_.size() + 1);
  starts_.push_back(0);
  for (const auto& p : parts_) starts_.push_back(starts_.back() + p->size());
}

size_t ConcatTokens::part_of(int64_t offset) const {
  // The last start <= offset; empty parts are skipped because their start equals the next one's.
  auto it = std::upper_bound(starts_.begin(), starts_.end() - 1, offset);
  return static_cast<size_t>(it - starts_.begin()) - 1;
}

void ConcatTokens::read(int64_t start, int64_t count, int32_t* out) const {
  check_range(*this, start, count);
  while (count > 0) {
    const size_t i = part_of(start);
    const int64_t local = start - starts_[i];
    const int64_t n = std::min(count, parts_[i]->size() - local);
    parts_[i]->read(local, n, out);
    start += n;
    count -= n;
    out += n;
  }
}

std::string ConcatTokens::where(int64_t offset) const {
  if (offset < 0 || offset >= size()) return detail::concat(name(), " (token ", offset, ")");
  const size_t i = part_of(offset);
  return parts_[i]->where(offset - starts_[i]);
}

std::string ConcatTokens::name() const {
  std::string s = parts_.front()->name();
  if (parts_.size() > 1) s += detail::concat(" and ", parts_.size() - 1, " more");
  return s;
}

std::vector<std::string> expand_data_paths(const std::vector<std::string>& patterns) {
  STRAND_CHECK(!patterns.empty(), DataError, "data: no data files given");
  std::vector<std::string> paths;
  for (const auto& pattern : patterns) {
    if (!has_glob_chars(pattern)) {
      STRAND_CHECK(std::filesystem::is_regular_file(pattern), DataError, pattern,
                   ": data file not found");
      paths.push_back(pattern);
      continue;
    }
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
    std::vector<std::string> found;
    if (rc == 0) found.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    ::globfree(&g);
    STRAND_CHECK(!found.empty(), DataError, pattern, ": no data file matches this pattern");
    std::sort(found.begin(), found.end());  // glob sorts too; be explicit, the order is the stream
    paths.insert(paths.end(), found.begin(), found.end());
  }
  return paths;
}

std::shared_ptr<const TokenSource> open_token_files(const std::vector<std::string>& patterns,
                                                    TokenFiles format) {
  std::vector<std::shared_ptr<const TokenSource>> parts;
  for (const auto& path : expand_data_paths(patterns)) {
    TokenFiles as = format;
    if (as == TokenFiles::ByExtension) {
      const std::string ext = lower_extension(path);
      if (ext == ".h5" || ext == ".hdf5") {
        as = TokenFiles::Hdf5;
      } else if (ext == ".bin") {
        as = TokenFiles::Bin;
      } else {
        throw DataError(detail::concat(path, ": unknown token file type '", ext,
                                       "' (expected .bin shards or .h5/.hdf5 datasets)"));
      }
    }
    parts.push_back(as == TokenFiles::Hdf5 ? open_hdf5_tokens(path) : open_token_shard(path));
  }
  if (parts.size() == 1) return parts.front();
  return std::make_shared<ConcatTokens>(std::move(parts));
}

}  // namespace strand::data
