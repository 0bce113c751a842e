// The run's tokenizer, streaming decode, and the trainer's text samples.
#include "framework/train/sample.h"

#include <algorithm>
#include <filesystem>

#include "data/token_source.h"
#include "framework/core/error.h"
#include "framework/core/json.h"
#include "models/gpt/decoder.h"

namespace strand::train {
namespace {

constexpr int64_t kSamplePromptTokens = 16;
constexpr int64_t kSampleNewTokens = 32;

// PREFIX.model for data.train PREFIX_train.bin, PREFIX_train_000000.bin or PREFIX_train*.bin.
std::string model_beside(const std::string& train) {
  const std::filesystem::path p(train);
  const std::string name = p.filename().string();
  const size_t cut = name.rfind("_train");
  if (cut == std::string::npos || cut == 0) return "";
  return (p.parent_path() / (name.substr(0, cut) + ".model")).string();
}

// Bytes [0, n) of s that end on a UTF-8 character boundary (an incomplete last character is held back).
size_t complete_utf8(const std::string& s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return back < len ? n - back : n;
  }
  return n;  // not UTF-8 at all: print the bytes as they come
}

// s with every byte that does not start a well-formed UTF-8 character, and every control
// character but tab and newline, replaced by U+FFFD: an untrained byte-level model emits
// arbitrary bytes, escape sequences included, and a terminal or log should get plain text.
std::string valid_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const bool control = (c < 0x20 && c != '\n' && c != '\t') || c == 0x7F;
    const size_t len = control                 ? 0
                       : c < 0x80                ? 1
                       : c >= 0xC2 && c < 0xE0   ? 2
                       : c >= 0xE0 && c < 0xF0   ? 3
                       : c >= 0xF0 && c < 0xF5   ? 4
                                                 : 0;  // 0: not a valid first byte
    bool ok = len > 0 && i + len <= s.size();
    for (size_t j = 1; ok && j < len; ++j) ok = (static_cast<unsigned char>(s[i + j]) & 0xC0) == 0x80;
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

}  // namespace

std::unique_ptr<data::Tokenizer> run_tokenizer(const config::Config& config) {
  STRAND_CHECK(config.data.format != config::DataFormat::Synthetic, config::ConfigError,
               "key 'data.format': synthetic task data has no text tokenizer (data.tokenizer applies to bin and hdf5 "
               "data)");
  const std::string& kind = config.data.tokenizer;
  if (kind == "byte") return data::load_tokenizer("byte");
  if (kind != "auto") return data::load_tokenizer("sentencepiece", kind);
  const std::string beside = model_beside(config.data.train);
  if (!beside.empty() && std::filesystem::exists(beside)) return data::load_tokenizer("sentencepiece", beside);
  return data::load_tokenizer("byte");
}

std::string TextStream::decoded() const {
  // Runs of known ids decode together (SentencePiece joins pieces); an unknown id is U+FFFD.
  std::string text;
  std::vector<int32_t> known;
  known.reserve(ids_.size());
  for (int32_t id : ids_) {
    if (id >= 0 && id < tokenizer_.vocab_size()) {
      known.push_back(id);
      continue;
    }
    text += tokenizer_.decode(known);
    known.clear();
    text += "\xEF\xBF\xBD";  // U+FFFD
  }
  return text + tokenizer_.decode(known);
}

std::string TextStream::push(int32_t id) {
  ids_.push_back(id);
  const std::string text = decoded();
  // Printed text cannot be taken back: should a later piece change earlier text (a decoder that
  // joins pieces), only what lies past the printed bytes is printed.
  const size_t end = complete_utf8(text);
  std::string out = end > printed_ ? text.substr(printed_, end - printed_) : std::string();
  printed_ = std::max(printed_, end);
  // Decoding grows with the stream: once everything is printed, keep only the last few ids as
  // the context the next pieces join to, so that a stream of any length costs the same per token.
  if (ids_.size() >= kWindow && printed_ == text.size()) {
    ids_.erase(ids_.begin(), ids_.end() - kContext);
    printed_ = decoded().size();
  }
  return valid_utf8(out);
}

std::string TextStream::finish() {
  const std::string text = decoded();
  std::string out = text.size() > printed_ ? text.substr(printed_) : std::string();
  printed_ = text.size();
  return valid_utf8(out);
}

bool sample_due(const config::Config& config, int64_t step) {
  return config.train.sample_every > 0 && step % config.train.sample_every == 0;
}

std::string training_sample(const config::Config& config, models::Model& model) {
  auto* gpt = dynamic_cast<models::Gpt*>(&model);
  STRAND_CHECK(gpt != nullptr, config::ConfigError, "key 'train.sample_every': text samples need a GPT model");
  const std::unique_ptr<data::Tokenizer> tokenizer = run_tokenizer(config);
  const std::string& source = config.data.val.empty() ? config.data.train : config.data.val;
  const auto tokens = data::open_token_files(
      {source}, config.data.format == config::DataFormat::Hdf5 ? data::TokenFiles::Hdf5 : data::TokenFiles::Bin);
  const int64_t n = std::min<int64_t>(kSamplePromptTokens, tokens->size());
  STRAND_CHECK(n > 0, DataError, source, ": no tokens to start a sample from");
  std::vector<int32_t> prompt(static_cast<size_t>(n));
  tokens->read(0, n, prompt.data());

  models::GenerateOptions options;
  options.max_new_tokens = kSampleNewTokens;
  // Positions past a learned table are not generated: the sample stops at model.max_seq_len.
  if (config.model.pos == config::PosEncoding::Learned)
    options.max_new_tokens = std::min<int64_t>(options.max_new_tokens, config.model.max_seq_len - n);
  options.sampling.temperature = 1.0;
  options.sampling.seed = static_cast<uint64_t>(config.run.seed);
  std::string text;
  if (options.max_new_tokens >= 1) {
    TextStream stream(*tokenizer);
    for (int32_t id : models::generate(*gpt, prompt, options)) text += stream.push(id);
    text += stream.finish();
  }
  TextStream prompt_text(*tokenizer);
  std::string shown;
  for (int32_t id : prompt) shown += prompt_text.push(id);
  shown += prompt_text.finish();
  return "sample: " + json_string(shown) + " -> " + json_string(text);
}

}  // namespace strand::train
