// Byte-level tokenizer, and the SentencePiece wrapper (training on a corpus, loading a model).
#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <unordered_map>

#include "data/shards.h"
#include "data/token_source.h"

namespace strand::data {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(std::span<const int32_t> ids) const {
  std::string text(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    STRAND_CHECK(ids[i] >= 0 && ids[i] < 256, ValueError, "ByteTokenizer::decode: id ", ids[i],
                 " at position ", i, " outside the byte vocabulary [0, 256)");
    text[i] = static_cast<char>(ids[i]);
  }
  return text;
}

struct SentencePieceTokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

// Feeds the trainer the lines of an in-memory corpus (SentencePiece trains on sentences; the
// newline itself is a user-defined piece, so it needs no training).
class LineIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(std::string_view text) : text_(text) { load(); }
  bool done() const override { return done_; }
  void Next() override { load(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void load() {
    if (pos_ > text_.size()) {
      done_ = true;
      return;
    }
    size_t end = text_.find('\n', pos_);
    if (end == std::string_view::npos) end = text_.size();
    line_.assign(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    if (line_.empty() && pos_ > text_.size()) done_ = true;  // no empty line after a final newline
  }
  std::string_view text_;
  size_t pos_ = 0;
  std::string line_;
  bool done_ = false;
};

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(std::unique_ptr<Impl> impl, std::string model_path)
    : impl_(std::move(impl)), model_path_(std::move(model_path)) {}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& model_path) {
  std::error_code ec;
  STRAND_CHECK(std::filesystem::is_regular_file(model_path, ec), DataError, model_path,
               ": SentencePiece model file not found");
  auto impl = std::make_unique<Impl>();
  const auto status = impl->processor.Load(model_path);
  STRAND_CHECK(status.ok(), DataError, model_path, ": not a SentencePiece model (", status.ToString(), ")");
  STRAND_CHECK(impl->processor.GetPieceSize() <= kShardMaxVocab, DataError, model_path, ": vocabulary of ",
               impl->processor.GetPieceSize(), " pieces does not fit uint16 token shards (at most ",
               kShardMaxVocab, ")");
  return std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(std::move(impl), model_path));
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::train(std::string_view corpus,
                                                                      const SentencePieceTrainOptions& options,
                                                                      const std::string& model_path) {
  STRAND_CHECK(options.vocab_size > 0 && options.vocab_size <= kShardMaxVocab, ValueError,
               "sentencepiece train: vocab_size ", options.vocab_size, " outside [1, ", kShardMaxVocab,
               "] (uint16 token shards)");
  STRAND_CHECK(options.model_type == "unigram" || options.model_type == "bpe", ValueError,
               "sentencepiece train: model_type '", options.model_type, "' is not unigram or bpe");
  STRAND_CHECK(!corpus.empty(), ValueError, "sentencepiece train: the corpus is empty");
  // Lossless settings: no NFKC, keep every space, newline as one piece, unknown bytes as
  // byte pieces; no dummy prefix, so text encoded in line-aligned chunks tokenizes as a whole.
  const std::unordered_map<std::string, std::string> args = {
      {"vocab_size", std::to_string(options.vocab_size)},
      {"model_type", options.model_type},
      {"character_coverage", "1.0"},
      {"byte_fallback", "true"},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "false"},
      {"remove_extra_whitespaces", "false"},
      {"user_defined_symbols", "\n"},
      {"input_sentence_size", std::to_string(options.max_sentences)},
      {"num_threads", std::to_string(std::max(1, options.num_threads))},
      {"minloglevel", "2"},  // SentencePiece logs every training round to stderr otherwise
  };
  LineIterator lines(corpus);
  std::string serialized;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &serialized);
  if (!status.ok()) {
    // SentencePiece's text names its own flags (--character_coverage), which strand does not
    // pass on; the bounds it reports are what a user needs, as --vocab-size of `strand data prepare`.
    const std::string text = status.ToString();
    const auto number_after = [&](const std::string& marker) -> std::string {
      const size_t at = text.find(marker);
      if (at == std::string::npos) return "";
      size_t begin = at + marker.size(), end = begin;
      while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
      return text.substr(begin, end - begin);
    };
    const std::string at_most = number_after("Please set it to a value <= ");
    const std::string at_least = number_after(std::to_string(options.vocab_size) + " vs ");
    const std::string what = !at_most.empty()
        ? detail::concat("vocab_size ", options.vocab_size, " is more pieces than this corpus has; use --vocab-size ",
                         at_most, " or less, or more text")
        : !at_least.empty() && text.find("required_chars") != std::string::npos
        ? detail::concat("vocab_size ", options.vocab_size, " is fewer pieces than the corpus's ", at_least,
                         " distinct characters and byte pieces; use --vocab-size ", at_least, " or more")
        : text;
    throw ValueError(detail::concat("sentencepiece train (", options.model_type, ") for ", model_path, ": ", what));
  }

  const std::string tmp = detail::concat(model_path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(serialized.data(), static_cast<std::streamsize>(serialized.size()));
    out.flush();
    if (!out.good()) {
      std::remove(tmp.c_str());
      throw DataError(detail::concat(model_path, ": cannot write the SentencePiece model"));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, model_path, ec);
  STRAND_CHECK(!ec, DataError, model_path, ": cannot rename the SentencePiece model into place (",
               ec.message(), ")");

  auto impl = std::make_unique<Impl>();
  const auto loaded = impl->processor.LoadFromSerializedProto(serialized);
  STRAND_CHECK(loaded.ok(), DataError, model_path, ": trained model does not load (", loaded.ToString(), ")");
  return std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(std::move(impl), model_path));
}

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = impl_->processor.Encode(text, &ids);
  STRAND_CHECK(status.ok(), ValueError, "sentencepiece encode (", model_path_, "): ", status.ToString());
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string SentencePieceTokenizer::decode(std::span<const int32_t> ids) const {
  const int64_t v = vocab_size();
  std::vector<int> sp_ids(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    STRAND_CHECK(ids[i] >= 0 && ids[i] < v, ValueError, "sentencepiece decode (", model_path_, "): id ", ids[i],
                 " at position ", i, " outside the vocabulary [0, ", v, ")");
    sp_ids[i] = ids[i];
  }
  std::string text;
  const auto status = impl_->processor.Decode(sp_ids, &text);
  STRAND_CHECK(status.ok(), ValueError, "sentencepiece decode (", model_path_, "): ", status.ToString());
  return text;
}

int64_t SentencePieceTokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }

std::optional<int32_t> SentencePieceTokenizer::end_of_document() const {
  const int eos = impl_->processor.eos_id();
  if (eos < 0) return std::nullopt;
  return eos;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& kind, const std::string& model_path) {
  if (kind == "byte") return std::make_unique<ByteTokenizer>();
  if (kind == "sentencepiece") {
    STRAND_CHECK(!model_path.empty(), ValueError, "tokenizer sentencepiece: no model file given");
    return SentencePieceTokenizer::load(model_path);
  }
  throw ValueError(detail::concat("tokenizer: unknown kind '", kind, "' (expected byte or sentencepiece)"));
}

}  // namespace strand::data
