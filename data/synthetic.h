// Synthetic long-range tasks (passkey retrieval, associative recall, copy), generated from the seed.
#pragma once
#include <cstdint>
#include <span>
#include <string>

namespace strand::data {

// Token ids shared by the tasks; symbols (digits, keys, values, copied text) start at kSymbolBase.
// docs/data-format.md draws each layout.
inline constexpr int32_t kPadToken = 0;    // alignment padding and assoc_recall's gap
inline constexpr int32_t kBosToken = 1;    // first token of every row
inline constexpr int32_t kSepToken = 2;    // brackets the passkey; ends the copy source
inline constexpr int32_t kQueryToken = 3;  // the question: the answer follows it
inline constexpr int32_t kSymbolBase = 4;
inline constexpr int32_t kPasskeyDigits = 10;  // passkey digits are symbols 0..9

enum class SyntheticTask { passkey, assoc_recall, copy };

SyntheticTask parse_synthetic_task(const std::string& name);  // ValueError naming the value
const char* synthetic_task_name(SyntheticTask task);

struct SyntheticSpec {
  SyntheticTask task = SyntheticTask::passkey;
  int64_t vocab_size = 256;  // ids used are < vocab_size
  int64_t seq_len = 256;     // T: a row is T + 1 tokens (inputs and shifted targets)
  uint64_t seed = 0;
  int64_t passkey_len = 5;   // digits in the passkey
  int64_t num_pairs = 0;     // assoc_recall pairs; 0 = as many as the row and the key set allow
};

// Throws ValueError naming the task and the value when the vocabulary or the row is too small.
void validate_synthetic_spec(const SyntheticSpec& spec);

// Writes row `global_row` of the task: seq_len + 1 tokens into `tokens`, and into `is_answer`
// (same length) 1 where the token is part of the answer, else 0. A pure function of
// (spec, global_row): any row of any step is generated directly, on any rank.
void synthetic_row(const SyntheticSpec& spec, int64_t global_row, std::span<int32_t> tokens,
                   std::span<uint8_t> is_answer);

}  // namespace strand::data
