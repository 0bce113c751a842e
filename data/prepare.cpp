// The prepare pipeline: list inputs, tokenize with a progress bar, split train/val, write shards.
#include "data/prepare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <span>

#include "data/hdf5_tokens.h"
#include "data/shards.h"
#include "data/token_source.h"
#include "framework/core/progress.h"

namespace strand::data {

namespace {

namespace fs = std::filesystem;

// Texts are encoded in chunks of about this size, cut after a newline, so the bar moves on
// large files and SentencePiece never sees one huge string.
constexpr size_t kEncodeChunkBytes = size_t{1} << 20;

std::string lower_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

// .bin shards and HDF5 datasets already hold tokens: prepare copies them (re-split, re-sharded).
bool is_token_file(const std::string& path) {
  const std::string ext = lower_extension(path);
  return ext == ".bin" || ext == ".h5" || ext == ".hdf5";
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  STRAND_CHECK(in.is_open(), DataError, path, ": cannot open the input file");
  std::string text;
  std::error_code ec;
  text.resize(static_cast<size_t>(fs::file_size(path, ec)));
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  STRAND_CHECK(!ec && in.gcount() == static_cast<std::streamsize>(text.size()), DataError, path,
               ": read of the input file failed");
  return text;
}

// Appends the tokens of `text`, chunk by chunk, reporting bytes consumed.
void encode_document(const Tokenizer& tok, std::string_view text, std::vector<int32_t>& out, int64_t& bytes_done,
                     Progress& bar) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = std::min(text.size(), pos + kEncodeChunkBytes);
    if (end < text.size()) {
      const size_t nl = text.find('\n', end);
      end = nl == std::string_view::npos ? text.size() : nl + 1;
    }
    const auto ids = tok.encode(text.substr(pos, end - pos));
    out.insert(out.end(), ids.begin(), ids.end());
    bytes_done += static_cast<int64_t>(end - pos);
    bar.update(bytes_done);
    pos = end;
  }
}

// Writes tokens as PREFIX_SPLIT.bin, or PREFIX_SPLIT_000000.bin, ... when over shard_tokens.
std::vector<std::string> write_split(const std::string& prefix, const char* split, std::span<const int32_t> tokens,
                                     int64_t shard_tokens) {
  std::vector<std::string> files;
  const auto n = static_cast<int64_t>(tokens.size());
  const int64_t shards = std::max<int64_t>(1, (n + shard_tokens - 1) / shard_tokens);
  for (int64_t s = 0; s < shards; ++s) {
    char suffix[32];
    if (shards == 1) {
      std::snprintf(suffix, sizeof suffix, "_%s.bin", split);
    } else {
      std::snprintf(suffix, sizeof suffix, "_%s_%06lld.bin", split, static_cast<long long>(s));
    }
    const std::string path = prefix + suffix;
    const int64_t begin = s * shard_tokens, end = std::min(n, begin + shard_tokens);
    write_token_shard(path, tokens.subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin)));
    files.push_back(path);
  }
  return files;
}

std::unique_ptr<Tokenizer> make_prepare_tokenizer(const PrepareOptions& o, const std::vector<std::string>& files,
                                                  std::string& model_path) {
  if (o.tokenizer == "byte") return std::make_unique<ByteTokenizer>();
  STRAND_CHECK(o.tokenizer == "sentencepiece", ValueError, "data prepare: --tokenizer '", o.tokenizer,
               "' is not byte or sentencepiece");
  if (!o.sp_model.empty()) {
    model_path = o.sp_model;
    return SentencePieceTokenizer::load(o.sp_model);
  }
  // Train on the text inputs, documents separated by newlines (lines are the training sentences).
  std::string corpus;
  for (const auto& f : files) {
    if (is_token_file(f)) continue;
    corpus += read_text_file(f);
    if (!corpus.empty() && corpus.back() != '\n') corpus += '\n';
  }
  STRAND_CHECK(!corpus.empty(), ValueError, "data prepare: no text to train a SentencePiece model on");
  model_path = o.out_prefix + ".model";
  if (o.progress) {
    std::fprintf(stderr, "training SentencePiece %s model, vocab %lld, on %.1f MB\n", o.sp_train.model_type.c_str(),
                 static_cast<long long>(o.sp_train.vocab_size), static_cast<double>(corpus.size()) / 1e6);
  }
  return SentencePieceTokenizer::train(corpus, o.sp_train, model_path);
}

}  // namespace

std::vector<std::string> list_input_files(const std::vector<std::string>& inputs) {
  STRAND_CHECK(!inputs.empty(), ValueError, "data prepare: no --input given");
  std::vector<std::string> files;
  for (const auto& input : inputs) {
    std::error_code ec;
    if (fs::is_directory(input, ec)) {
      std::vector<std::string> found;
      for (const auto& entry : fs::recursive_directory_iterator(input, ec)) {
        const std::string name = entry.path().filename().string();
        if (entry.is_regular_file() && !name.empty() && name[0] != '.') found.push_back(entry.path().string());
      }
      STRAND_CHECK(!ec, DataError, input, ": cannot list the input directory (", ec.message(), ")");
      STRAND_CHECK(!found.empty(), DataError, input, ": input directory holds no files");
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      STRAND_CHECK(fs::is_regular_file(input, ec), DataError, input, ": input file not found");
      files.push_back(input);
    }
  }
  return files;
}

PrepareResult prepare_dataset(const PrepareOptions& o) {
  STRAND_CHECK(!o.out_prefix.empty(), ValueError, "data prepare: --out is empty");
  STRAND_CHECK(o.val_fraction >= 0.0 && o.val_fraction < 1.0, ValueError, "data prepare: --val-fraction ",
               o.val_fraction, " outside [0, 1)");
  STRAND_CHECK(o.shard_tokens >= 1 && o.shard_tokens <= INT32_MAX, ValueError, "data prepare: --shard-tokens ",
               o.shard_tokens, " outside [1, 2^31)");
  const std::vector<std::string> files = list_input_files(o.inputs);
  const fs::path parent = fs::path(o.out_prefix).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    STRAND_CHECK(!ec, DataError, parent.string(), ": cannot create the output directory (", ec.message(), ")");
  }

  PrepareResult result;
  const auto tokenizer = make_prepare_tokenizer(o, files, result.tokenizer_model);
  result.vocab_size = tokenizer->vocab_size();
  const auto end_of_document = tokenizer->end_of_document();

  int64_t total_bytes = 0;
  for (const auto& f : files) total_bytes += static_cast<int64_t>(fs::file_size(f));
  result.input_bytes = total_bytes;

  std::vector<int32_t> stream;
  int64_t bytes_done = 0;
  ProgressOptions bar_options;
  bar_options.label = detail::concat("tokenizing (", tokenizer->name(), ")");
  bar_options.total = total_bytes;
  bar_options.unit = "MB";
  bar_options.unit_scale = 1e6;
  if (!o.progress) bar_options.mode = ProgressMode::Off;
  Progress bar(bar_options);
  for (const auto& f : files) {
    if (is_token_file(f)) {
      const bool hdf5 = lower_extension(f) != ".bin";
      const std::vector<int32_t> tokens = hdf5 ? read_hdf5_tokens(f) : read_token_shard(f);
      for (size_t i = 0; hdf5 && i < tokens.size(); ++i) {  // .bin tokens are uint16 already
        STRAND_CHECK(tokens[i] >= 0 && tokens[i] < kShardMaxVocab, DataError, f, ": HDF5 dataset 'tokens'[", i,
                     "] = ", tokens[i], " does not fit uint16 token shards");
      }
      stream.insert(stream.end(), tokens.begin(), tokens.end());
      bytes_done += static_cast<int64_t>(fs::file_size(f));
      bar.update(bytes_done);
    } else {
      encode_document(*tokenizer, read_text_file(f), stream, bytes_done, bar);
      if (end_of_document) stream.push_back(*end_of_document);
    }
    ++result.documents;
  }
  bar.finish();
  const size_t markers = end_of_document ? static_cast<size_t>(std::count(stream.begin(), stream.end(), *end_of_document))
                                         : 0;
  STRAND_CHECK(stream.size() > markers, DataError, "data prepare: ",
               files.size() == 1 ? "the input " + files.front() + " holds"
                                 : detail::concat("the inputs (", files.size(), " files) hold"),
               " no tokens; nothing to write");

  const auto total = static_cast<int64_t>(stream.size());
  const auto val_tokens = static_cast<int64_t>(std::floor(static_cast<double>(total) * o.val_fraction));
  const std::span<const int32_t> all(stream);
  result.train_tokens = total - val_tokens;
  result.val_tokens = val_tokens;
  result.train_files = write_split(o.out_prefix, "train", all.first(static_cast<size_t>(result.train_tokens)),
                                   o.shard_tokens);
  if (val_tokens > 0) {
    result.val_files = write_split(o.out_prefix, "val", all.last(static_cast<size_t>(val_tokens)), o.shard_tokens);
  }
  return result;
}

}  // namespace strand::data
