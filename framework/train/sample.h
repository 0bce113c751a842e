// Text from a run: the run's tokenizer (data.tokenizer), the UTF-8 pieces of a stream of
// generated tokens, and the short sample the trainer prints every train.sample_every steps.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "framework/config/config.h"
#include "models/model.h"

namespace strand::train {

// The tokenizer of a run's text: data.tokenizer `byte`, a SentencePiece model path, or `auto`
// (PREFIX.model beside data.train's PREFIX_train*.bin shards when that file exists, else byte).
// ConfigError naming data.format for synthetic data, which has no text; DataError naming a
// SentencePiece model that is missing or broken.
std::unique_ptr<data::Tokenizer> run_tokenizer(const config::Config& config);

// Decodes a growing stream of tokens into text that can be printed piece by piece: push() returns
// the new complete UTF-8 text since the last call (a multi-byte character split over tokens waits
// for its last byte), finish() whatever is left. Bytes that are not well-formed UTF-8, control
// characters other than tab and newline, and ids the tokenizer does not know come out as U+FFFD.
class TextStream {
 public:
  explicit TextStream(const data::Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  std::string push(int32_t id);
  std::string finish();

 private:
  std::string decoded() const;
  static constexpr size_t kWindow = 64;  // ids decoded at most, past which the window restarts
  static constexpr size_t kContext = 4;  // ids kept as context when it does
  const data::Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;
  size_t printed_ = 0;  // bytes of decoded() already returned
};

// True when step is a sample step of train.sample_every.
bool sample_due(const config::Config& config, int64_t step);

// The trainer's sample line: 32 tokens generated (temperature 1, seeded by run.seed, the KV cache)
// after the first 16 tokens of the validation data (the training data without one), as
// `sample: "PROMPT" -> "CONTINUATION"` with both JSON-escaped. `model` must be a GPT.
std::string training_sample(const config::Config& config, models::Model& model);

}  // namespace strand::train
