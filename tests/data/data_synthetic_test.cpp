// Tests of the synthetic tasks: determinism, each layout's structure, answer positions, sharding, bad specs.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "data/loader.h"
#include "data/synthetic.h"

namespace strand::data {
namespace {

struct Row {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> answer;
};

Row make_row(const SyntheticSpec& spec, int64_t g) {
  Row row{std::vector<int32_t>(static_cast<size_t>(spec.seq_len + 1)),
          std::vector<uint8_t>(static_cast<size_t>(spec.seq_len + 1))};
  synthetic_row(spec, g, row.tokens, row.answer);
  return row;
}

SyntheticSpec spec_of(SyntheticTask task, int64_t vocab, int64_t seq_len, uint64_t seed = 1234) {
  SyntheticSpec s;
  s.task = task;
  s.vocab_size = vocab;
  s.seq_len = seq_len;
  s.seed = seed;
  return s;
}

bool is_digit(int32_t id) { return id >= kSymbolBase && id < kSymbolBase + kPasskeyDigits; }

void expect_ids_in_vocab(const Row& row, int64_t vocab) {
  for (int32_t id : row.tokens) ASSERT_TRUE(id >= 0 && id < vocab) << id;
}

class SyntheticAllTasks : public ::testing::TestWithParam<SyntheticTask> {};

TEST_P(SyntheticAllTasks, RowsAreAPureFunctionOfSeedAndRow) {
  const SyntheticSpec spec = spec_of(GetParam(), 64, 100);
  for (int64_t g : {int64_t{0}, int64_t{1}, int64_t{17}, int64_t{1'000'000'000'000}}) {
    const Row a = make_row(spec, g), b = make_row(spec, g);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.answer, b.answer);
    expect_ids_in_vocab(a, 64);
  }
  EXPECT_NE(make_row(spec, 3).tokens, make_row(spec, 4).tokens);
  EXPECT_NE(make_row(spec, 3).tokens, make_row(spec_of(GetParam(), 64, 100, 1235), 3).tokens);
}

TEST_P(SyntheticAllTasks, BatchAnswerTargetsMarkExactlyTheAnswerTokens) {
  const SyntheticSpec spec = spec_of(GetParam(), 32, 40);
  const int64_t B = 3, T = 40;
  SyntheticLoader loader(spec, {B, T, 1, 2, 32});
  const Batch batch = loader.batch_at(5);
  ASSERT_EQ(batch.answer_targets.shape(), (Shape{B, T}));
  const int32_t* in = batch.inputs.data<int32_t>();
  const int32_t* tg = batch.targets.data<int32_t>();
  const int32_t* ans = batch.answer_targets.data<int32_t>();
  for (int64_t r = 0; r < B; ++r) {
    const Row row = make_row(spec, (5 * 2 + 1) * B + r);  // the row rule, replica 1 of 2
    int64_t answers = 0;
    for (int64_t t = 0; t < T; ++t) {
      ASSERT_EQ(in[r * T + t], row.tokens[t]);
      ASSERT_EQ(tg[r * T + t], row.tokens[t + 1]);
      // Target t predicts token t + 1: an answer target exactly where token t + 1 is an answer.
      ASSERT_EQ(ans[r * T + t], row.answer[t + 1] ? row.tokens[t + 1] : kIgnoreIndex) << r << "," << t;
      answers += row.answer[t + 1];
    }
    EXPECT_GT(answers, 0);
    EXPECT_EQ(row.answer[0], 0);  // the first token is never predicted, so never an answer
  }
  // A perfect predictor scores 1.
  const AnswerScore s = score_answers(batch.targets, batch.answer_targets);
  EXPECT_EQ(s.tokens_correct, s.tokens_total);
  EXPECT_EQ(s.rows_total, B);
}

TEST_P(SyntheticAllTasks, ReplicasPartitionTheSingleProcessBatch) {
  const SyntheticSpec spec = spec_of(GetParam(), 48, 24);
  const int64_t B = 2, K = 4;
  SyntheticLoader single(spec, {K * B, 24});
  for (int64_t s : {0, 9}) {
    std::vector<int32_t> joined;
    for (int64_t d = 0; d < K; ++d) {
      const Batch b = SyntheticLoader(spec, {B, 24, d, K}).batch_at(s);
      joined.insert(joined.end(), b.inputs.data<int32_t>(), b.inputs.data<int32_t>() + b.inputs.numel());
    }
    const Batch whole = single.batch_at(s);
    EXPECT_EQ(joined, std::vector<int32_t>(whole.inputs.data<int32_t>(),
                                           whole.inputs.data<int32_t>() + whole.inputs.numel()));
  }
}

TEST_P(SyntheticAllTasks, ResumeRestoresTheNextBatches) {
  const SyntheticSpec spec = spec_of(GetParam(), 40, 30);
  SyntheticLoader a(spec, {2, 30});
  for (int i = 0; i < 11; ++i) a.next();
  const LoaderPosition pos = a.position();
  const Batch expected = a.next();
  SyntheticLoader b(spec, {2, 30});
  b.restore(LoaderPosition::from_ints(pos.to_ints()));
  const Batch got = b.next();
  EXPECT_EQ(got.step, 11);
  for (int64_t i = 0; i < 60; ++i) {
    ASSERT_EQ(got.inputs.data<int32_t>()[i], expected.inputs.data<int32_t>()[i]);
    ASSERT_EQ(got.answer_targets.data<int32_t>()[i], expected.answer_targets.data<int32_t>()[i]);
  }
}

INSTANTIATE_TEST_SUITE_P(Tasks, SyntheticAllTasks,
                         ::testing::Values(SyntheticTask::passkey, SyntheticTask::assoc_recall, SyntheticTask::copy),
                         [](const auto& info) { return std::string(synthetic_task_name(info.param)); });

TEST(SyntheticPasskey, DigitsHiddenInFillerAreAskedForAtTheEnd) {
  for (int64_t vocab : {16, 256}) {
    SyntheticSpec spec = spec_of(SyntheticTask::passkey, vocab, 200);
    spec.passkey_len = 6;
    std::set<int64_t> depths;
    for (int64_t g = 0; g < 200; ++g) {
      const Row row = make_row(spec, g);
      const auto& tok = row.tokens;
      const int64_t L = 201, n = 6;
      EXPECT_EQ(tok[0], kBosToken);
      // The question: QUERY and the n digits, the last n tokens, which are the answer.
      ASSERT_EQ(tok[L - n - 1], kQueryToken);
      const std::vector<int32_t> answer(tok.end() - n, tok.end());
      for (int64_t i = 0; i < L; ++i) EXPECT_EQ(row.answer[i], i >= L - n ? 1 : 0) << i;
      // Exactly one [SEP digits SEP] block before the question, holding the same digits.
      std::vector<int64_t> seps;
      for (int64_t i = 0; i < L; ++i)
        if (tok[i] == kSepToken) seps.push_back(i);
      ASSERT_EQ(seps.size(), 2u);
      ASSERT_EQ(seps[1] - seps[0], n + 1);
      EXPECT_EQ(std::vector<int32_t>(tok.begin() + seps[0] + 1, tok.begin() + seps[1]), answer);
      for (int32_t d : answer) EXPECT_TRUE(is_digit(d)) << d;
      depths.insert(seps[0]);
      // Everything else is filler, and filler holds no digit.
      for (int64_t i = 1; i < L - n - 1; ++i) {
        if (i >= seps[0] && i <= seps[1]) continue;
        EXPECT_GE(tok[i], kSymbolBase + kPasskeyDigits) << i;
        EXPECT_LT(tok[i], vocab) << i;
      }
    }
    EXPECT_GT(depths.size(), 50u);  // the depth is random, spread over the row
  }
}

TEST(SyntheticAssocRecall, TheQueriedKeysValueIsTheAnswer) {
  const SyntheticSpec spec = spec_of(SyntheticTask::assoc_recall, 36, 64);  // 32 symbols: 16 keys, 16 values
  std::set<int32_t> queried;
  for (int64_t g = 0; g < 300; ++g) {
    const Row row = make_row(spec, g);
    const auto& tok = row.tokens;
    const int64_t L = 65, m = 16;  // min((65 - 4) / 2, 16 keys)
    EXPECT_EQ(tok[0], kBosToken);
    std::set<int32_t> keys;
    int32_t expected_value = -1;
    for (int64_t i = 0; i < m; ++i) {
      const int32_t k = tok[1 + 2 * i], v = tok[2 + 2 * i];
      EXPECT_TRUE(k >= kSymbolBase && k < kSymbolBase + 16) << k;
      EXPECT_TRUE(v >= kSymbolBase + 16 && v < 36) << v;
      EXPECT_TRUE(keys.insert(k).second) << "duplicate key " << k;
      if (k == tok[L - 2]) expected_value = v;
    }
    for (int64_t i = 1 + 2 * m; i < L - 3; ++i) EXPECT_EQ(tok[i], kPadToken) << i;
    EXPECT_EQ(tok[L - 3], kQueryToken);
    EXPECT_EQ(tok[L - 1], expected_value);
    for (int64_t i = 0; i < L; ++i) EXPECT_EQ(row.answer[i], i == L - 1 ? 1 : 0) << i;
    queried.insert(tok[L - 2]);
  }
  EXPECT_EQ(queried.size(), 16u);
}

TEST(SyntheticAssocRecall, NumPairsLeavesALongGap) {
  SyntheticSpec spec = spec_of(SyntheticTask::assoc_recall, 64, 500);
  spec.num_pairs = 5;
  const Row row = make_row(spec, 7);
  EXPECT_EQ(row.tokens[11], kPadToken);  // BOS + 5 pairs end at index 10
  EXPECT_EQ(row.tokens[498], kQueryToken);  // L = 501: QUERY key value are the last three
  bool found = false;
  for (int i = 0; i < 5; ++i) found |= row.tokens[1 + 2 * i] == row.tokens[499] && row.tokens[2 + 2 * i] == row.tokens[500];
  EXPECT_TRUE(found);
}

TEST(SyntheticCopy, TheSecondHalfRepeatsTheFirst) {
  for (int64_t seq_len : {20, 21}) {  // even and odd rows (L = 21, 22)
    const SyntheticSpec spec = spec_of(SyntheticTask::copy, 10, seq_len);
    const Row row = make_row(spec, 2);
    const auto& tok = row.tokens;
    const int64_t L = seq_len + 1, n = (L - 2) / 2, start = L - 2 * n - 1;
    EXPECT_EQ(tok[0], kBosToken);
    if (start == 2) {
      EXPECT_EQ(tok[1], kPadToken);
    }
    EXPECT_EQ(tok[start + n], kSepToken);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_GE(tok[start + i], kSymbolBase);
      EXPECT_EQ(tok[start + n + 1 + i], tok[start + i]) << i;
    }
    for (int64_t i = 0; i < L; ++i) EXPECT_EQ(row.answer[i], i > start + n ? 1 : 0) << i;
  }
}

TEST(SyntheticErrors, TooSmallVocabularyOrRowIsNamed) {
  auto expect_error = [](const SyntheticSpec& spec, const std::string& task, const std::string& what) {
    try {
      validate_synthetic_spec(spec);
      ADD_FAILURE() << "expected ValueError for " << task << " " << what;
    } catch (const ValueError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(task), std::string::npos) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
  };
  expect_error(spec_of(SyntheticTask::passkey, 15, 100), "passkey", "vocab_size 15");
  expect_error(spec_of(SyntheticTask::passkey, 64, 12), "passkey", "seq_len 12");
  EXPECT_NO_THROW(validate_synthetic_spec(spec_of(SyntheticTask::passkey, 16, 13)));
  expect_error(spec_of(SyntheticTask::assoc_recall, 7, 100), "assoc_recall", "vocab_size 7");
  expect_error(spec_of(SyntheticTask::assoc_recall, 64, 4), "assoc_recall", "seq_len 4");
  SyntheticSpec many = spec_of(SyntheticTask::assoc_recall, 12, 100);
  many.num_pairs = 5;  // 8 symbols: 4 keys
  expect_error(many, "assoc_recall", "num_pairs 5");
  expect_error(spec_of(SyntheticTask::copy, 5, 100), "copy", "vocab_size 5");
  expect_error(spec_of(SyntheticTask::copy, 8, 2), "copy", "seq_len 2");
  EXPECT_THROW((void)SyntheticLoader(spec_of(SyntheticTask::copy, 8, 20), {1, 21}), ValueError);
  EXPECT_THROW(parse_synthetic_task("sort"), ValueError);
}

}  // namespace
}  // namespace strand::data
