// Tokenizers: byte-level (built in) and SentencePiece (trained on a corpus, or loaded).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strand::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Throws ValueError on an id outside [0, vocab_size()).
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  // The token `strand data prepare` appends after each document, when the tokenizer has one.
  virtual std::optional<int32_t> end_of_document() const = 0;
  virtual std::string name() const = 0;  // "byte", "sentencepiece"
};

// One token per byte, id = byte value, vocab 256, no special tokens: lossless for any input.
class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  int64_t vocab_size() const override { return 256; }
  std::optional<int32_t> end_of_document() const override { return std::nullopt; }
  std::string name() const override { return "byte"; }
};

struct SentencePieceTrainOptions {
  int64_t vocab_size = 8000;          // at most 65536 (uint16 shards)
  std::string model_type = "unigram"; // unigram | bpe
  int64_t max_sentences = 2000000;    // lines sampled for training; 0 = all
  int num_threads = 2;
};

// A SentencePiece model (Debian's libsentencepiece). Models trained here are lossless:
// identity normalisation, whitespace kept, newline as its own piece and byte fallback, so
// decode(encode(text)) == text for any UTF-8 or binary input.
class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Loads a .model file; DataError naming the file when it is missing or not a model.
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& model_path);
  // Trains on the lines of `corpus` and writes the model to `model_path` (through a temporary
  // name). Throws ValueError when the options are out of range or training rejects them.
  static std::unique_ptr<SentencePieceTokenizer> train(std::string_view corpus,
                                                       const SentencePieceTrainOptions& options,
                                                       const std::string& model_path);
  ~SentencePieceTokenizer() override;

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  int64_t vocab_size() const override;
  std::optional<int32_t> end_of_document() const override;  // the model's eos, if any
  std::string name() const override { return "sentencepiece"; }
  const std::string& model_path() const { return model_path_; }

 private:
  struct Impl;
  SentencePieceTokenizer(std::unique_ptr<Impl> impl, std::string model_path);
  std::unique_ptr<Impl> impl_;
  std::string model_path_;
};

// "byte" gives ByteTokenizer; "sentencepiece" loads `model_path`. ValueError otherwise.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& kind, const std::string& model_path = "");

}  // namespace strand::data
