// Row generators of the synthetic tasks; each row depends only on (seed, task, global row index).
#include "data/synthetic.h"

#include <algorithm>
#include <array>
#include <numeric>
#include <vector>

#include "framework/core/error.h"
#include "framework/core/random.h"

namespace strand::data {

namespace {

// Passkey filler repeats a short phrase, like the "The grass is green..." of the original task:
// the model must learn to skip it, and the passkey is the only digit run in the row.
constexpr int64_t kFillerPeriod = 16;

// Random draws for one row: Philox with the row as its stream, so rows are independent of each
// other and of how they are grouped into batches and ranks.
class RowRandom {
 public:
  RowRandom(uint64_t seed, SyntheticTask task, int64_t row)
      : key_(seed ^ (0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(task) + 1))),
        stream_(static_cast<uint64_t>(row)) {}
  // Uniform in [0, n) (multiply-shift; the bias of 2^-32 * n is irrelevant here).
  int64_t below(int64_t n) {
    if (used_ == 4) {
      words_ = random::philox4x32(key_, stream_, index_++);
      used_ = 0;
    }
    return static_cast<int64_t>((static_cast<uint64_t>(words_[used_++]) * static_cast<uint64_t>(n)) >> 32);
  }

 private:
  uint64_t key_, stream_, index_ = 0;
  std::array<uint32_t, 4> words_{};
  int used_ = 4;
};

int64_t symbol_count(const SyntheticSpec& s) { return s.vocab_size - kSymbolBase; }
int64_t assoc_key_count(const SyntheticSpec& s) { return symbol_count(s) / 2; }
int64_t assoc_pairs(const SyntheticSpec& s) {
  if (s.num_pairs > 0) return s.num_pairs;
  return std::min((s.seq_len + 1 - 4) / 2, assoc_key_count(s));
}

// BOS, filler, [SEP digits SEP] at a random depth, filler, QUERY digits.
void passkey_row(const SyntheticSpec& s, RowRandom& rng, std::span<int32_t> tok, std::span<uint8_t> ans) {
  const int64_t L = static_cast<int64_t>(tok.size()), n = s.passkey_len;
  const int64_t filler_symbols = std::min(symbol_count(s) - kPasskeyDigits, kFillerPeriod);
  std::vector<int32_t> digits(static_cast<size_t>(n));
  for (auto& d : digits) d = kSymbolBase + static_cast<int32_t>(rng.below(kPasskeyDigits));
  const int64_t query_at = L - n - 1;
  const int64_t depth = 1 + rng.below(query_at - n - 2);  // the block [SEP digits SEP] ends before query_at
  tok[0] = kBosToken;
  for (int64_t i = 1; i < query_at; ++i) {
    tok[i] = kSymbolBase + kPasskeyDigits + static_cast<int32_t>(i % filler_symbols);
  }
  tok[depth] = kSepToken;
  std::copy(digits.begin(), digits.end(), tok.begin() + depth + 1);
  tok[depth + n + 1] = kSepToken;
  tok[query_at] = kQueryToken;
  std::copy(digits.begin(), digits.end(), tok.begin() + query_at + 1);
  std::fill(ans.begin() + query_at + 1, ans.end(), uint8_t{1});
}

// BOS, k1 v1 ... km vm (distinct keys), PAD gap, QUERY kq vq.
void assoc_recall_row(const SyntheticSpec& s, RowRandom& rng, std::span<int32_t> tok, std::span<uint8_t> ans) {
  const int64_t L = static_cast<int64_t>(tok.size()), m = assoc_pairs(s);
  const int64_t num_keys = assoc_key_count(s), num_values = symbol_count(s) - num_keys;
  // Partial Fisher-Yates: the first m entries become a uniform sample of distinct keys.
  std::vector<int32_t> keys(static_cast<size_t>(num_keys));
  std::iota(keys.begin(), keys.end(), 0);
  for (int64_t i = 0; i < m; ++i) std::swap(keys[i], keys[i + rng.below(num_keys - i)]);
  std::fill(tok.begin(), tok.end(), kPadToken);
  tok[0] = kBosToken;
  std::vector<int32_t> values(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) {
    values[i] = kSymbolBase + static_cast<int32_t>(num_keys + rng.below(num_values));
    tok[1 + 2 * i] = kSymbolBase + keys[i];
    tok[2 + 2 * i] = values[i];
  }
  const int64_t q = rng.below(m);
  tok[L - 3] = kQueryToken;
  tok[L - 2] = kSymbolBase + keys[q];
  tok[L - 1] = values[q];
  ans[L - 1] = 1;
}

// BOS, [PAD when the length is odd], x1..xn, SEP, x1..xn.
void copy_row(const SyntheticSpec& s, RowRandom& rng, std::span<int32_t> tok, std::span<uint8_t> ans) {
  const int64_t L = static_cast<int64_t>(tok.size()), n = (L - 2) / 2;
  const int64_t start = L - 2 * n - 1;  // 1, or 2 after one PAD
  tok[0] = kBosToken;
  if (start == 2) tok[1] = kPadToken;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t x = kSymbolBase + static_cast<int32_t>(rng.below(symbol_count(s)));
    tok[start + i] = x;
    tok[start + n + 1 + i] = x;
  }
  tok[start + n] = kSepToken;
  std::fill(ans.begin() + start + n + 1, ans.end(), uint8_t{1});
}

}  // namespace

SyntheticTask parse_synthetic_task(const std::string& name) {
  if (name == "passkey") return SyntheticTask::passkey;
  if (name == "assoc_recall") return SyntheticTask::assoc_recall;
  if (name == "copy") return SyntheticTask::copy;
  throw ValueError(detail::concat("data.task: unknown synthetic task '", name,
                                  "' (expected passkey, assoc_recall or copy)"));
}

const char* synthetic_task_name(SyntheticTask task) {
  switch (task) {
    case SyntheticTask::passkey: return "passkey";
    case SyntheticTask::assoc_recall: return "assoc_recall";
    case SyntheticTask::copy: return "copy";
  }
  return "?";
}

void validate_synthetic_spec(const SyntheticSpec& s) {
  const char* task = synthetic_task_name(s.task);
  const int64_t L = s.seq_len + 1;
  STRAND_CHECK(s.seq_len >= 1, ValueError, "synthetic ", task, ": seq_len ", s.seq_len, " must be positive");
  STRAND_CHECK(s.vocab_size <= (int64_t{1} << 31), ValueError, "synthetic ", task, ": vocab_size ", s.vocab_size,
               " exceeds int32 ids");
  switch (s.task) {
    case SyntheticTask::passkey:
      STRAND_CHECK(s.vocab_size >= kSymbolBase + kPasskeyDigits + 2, ValueError, "synthetic passkey: vocab_size ",
                   s.vocab_size, " is below ", kSymbolBase + kPasskeyDigits + 2,
                   " (4 special tokens, 10 digits, 2 filler symbols)");
      STRAND_CHECK(s.passkey_len >= 1, ValueError, "synthetic passkey: passkey_len ", s.passkey_len,
                   " must be positive");
      STRAND_CHECK(L >= 2 * s.passkey_len + 4, ValueError, "synthetic passkey: seq_len ", s.seq_len,
                   " too short for a ", s.passkey_len, "-digit passkey (needs seq_len >= ", 2 * s.passkey_len + 3, ")");
      break;
    case SyntheticTask::assoc_recall:
      STRAND_CHECK(s.vocab_size >= kSymbolBase + 4, ValueError, "synthetic assoc_recall: vocab_size ",
                   s.vocab_size, " is below ", kSymbolBase + 4, " (4 special tokens, 2 keys, 2 values)");
      STRAND_CHECK(s.num_pairs >= 0 && s.num_pairs <= assoc_key_count(s), ValueError,
                   "synthetic assoc_recall: num_pairs ", s.num_pairs, " outside [0, ", assoc_key_count(s),
                   "] (distinct keys available with vocab_size ", s.vocab_size, ")");
      STRAND_CHECK(assoc_pairs(s) >= 1 && L >= 2 * assoc_pairs(s) + 4, ValueError,
                   "synthetic assoc_recall: seq_len ", s.seq_len, " too short for ", std::max<int64_t>(1, assoc_pairs(s)),
                   " pairs (needs seq_len >= ", 2 * std::max<int64_t>(1, assoc_pairs(s)) + 3, ")");
      break;
    case SyntheticTask::copy:
      STRAND_CHECK(s.vocab_size >= kSymbolBase + 2, ValueError, "synthetic copy: vocab_size ", s.vocab_size,
                   " is below ", kSymbolBase + 2, " (4 special tokens, 2 symbols)");
      STRAND_CHECK(L >= 4, ValueError, "synthetic copy: seq_len ", s.seq_len, " too short (needs seq_len >= 3)");
      break;
  }
}

void synthetic_row(const SyntheticSpec& spec, int64_t global_row, std::span<int32_t> tokens,
                   std::span<uint8_t> is_answer) {
  STRAND_CHECK(static_cast<int64_t>(tokens.size()) == spec.seq_len + 1 && tokens.size() == is_answer.size(),
               ValueError, "synthetic_row: buffers of ", tokens.size(), " and ", is_answer.size(),
               " tokens, expected seq_len + 1 = ", spec.seq_len + 1);
  STRAND_CHECK(global_row >= 0, ValueError, "synthetic_row: negative row ", global_row);
  std::fill(is_answer.begin(), is_answer.end(), uint8_t{0});
  RowRandom rng(spec.seed, spec.task, global_row);
  switch (spec.task) {
    case SyntheticTask::passkey: passkey_row(spec, rng, tokens, is_answer); break;
    case SyntheticTask::assoc_recall: assoc_recall_row(spec, rng, tokens, is_answer); break;
    case SyntheticTask::copy: copy_row(spec, rng, tokens, is_answer); break;
  }
}

}  // namespace strand::data
