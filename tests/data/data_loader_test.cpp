// Tests of the loader: the row rule against manual slicing, epochs, dp sharding, O(1) resume, shuffle, scoring.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <set>

#include "data/loader.h"
#include "data/shards.h"
#include "support/temp_dir.h"

namespace strand::data {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

std::vector<int32_t> stream_of(int64_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>((i * 2654435761u) % 1000);
  return v;
}

std::vector<int32_t> values(const Tensor& t) {
  const int32_t* p = t.data<int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

// The rows of a batch as the tokens of their first input position: unique per row for the
// stream below, which counts up, so row identity can be compared across loaders.
std::vector<int32_t> row_starts(const Batch& b) {
  std::vector<int32_t> starts;
  const int64_t B = b.inputs.size(0), T = b.inputs.size(1);
  for (int64_t r = 0; r < B; ++r) starts.push_back(b.inputs.data<int32_t>()[r * T]);
  return starts;
}

TEST(Loader, RowRuleMatchesManualSlicing) {
  const int64_t B = 3, T = 5, N = 200;
  const auto tokens = stream_of(N);
  TokenLoader loader(std::make_shared<MemoryTokens>(tokens), {B, T});
  EXPECT_EQ(loader.steps_per_epoch(), (N - 1) / T / B);  // 13
  for (int64_t b = 0; b < loader.steps_per_epoch(); ++b) {
    const Batch batch = loader.batch_at(b);
    ASSERT_EQ(batch.inputs.shape(), (Shape{B, T}));
    ASSERT_EQ(batch.targets.shape(), (Shape{B, T}));
    EXPECT_EQ(batch.inputs.dtype(), DType::I32);
    EXPECT_FALSE(batch.answer_targets.defined());
    const auto in = values(batch.inputs), tg = values(batch.targets);
    for (int64_t r = 0; r < B; ++r) {
      // Row r of batch b: tokens [(b*B + r)*T, (b*B + r)*T + T + 1).
      const int64_t begin = (b * B + r) * T;
      for (int64_t t = 0; t < T; ++t) {
        ASSERT_EQ(in[r * T + t], tokens[begin + t]) << b << "," << r << "," << t;
        ASSERT_EQ(tg[r * T + t], tokens[begin + t + 1]) << b << "," << r << "," << t;
      }
    }
  }
}

TEST(Loader, NextWalksTheStepsAndWrapsAtTheEpoch) {
  const int64_t B = 2, T = 4;
  const auto tokens = stream_of(50);  // 49 / 4 = 12 rows, 6 steps per epoch, the last token unread
  TokenLoader loader(std::make_shared<MemoryTokens>(tokens), {B, T});
  ASSERT_EQ(loader.steps_per_epoch(), 6);
  for (int64_t s = 0; s < 15; ++s) {
    const Batch b = loader.next();
    EXPECT_EQ(b.step, s);
    EXPECT_EQ(b.epoch, s / 6);
    const Batch same = loader.batch_at(s % 6);
    EXPECT_EQ(values(b.inputs), values(same.inputs)) << s;
    EXPECT_EQ(values(b.targets), values(same.targets)) << s;
  }
  EXPECT_EQ(loader.step(), 15);
}

TEST(Loader, ExactFitReadsTheLastToken) {
  // N = B*T*steps + 1: the final target is the stream's last token.
  const int64_t B = 2, T = 3;
  const auto tokens = stream_of(2 * 3 * 4 + 1);
  TokenLoader loader(std::make_shared<MemoryTokens>(tokens), {B, T});
  ASSERT_EQ(loader.steps_per_epoch(), 4);
  EXPECT_EQ(values(loader.batch_at(3).targets).back(), tokens.back());
}

TEST(Loader, DataParallelReplicasPartitionTheSingleProcessBatch) {
  const int64_t B = 2, T = 3, K = 3, N = 400;
  std::vector<int32_t> counting(N);
  for (int64_t i = 0; i < N; ++i) counting[i] = static_cast<int32_t>(i);
  const auto src = std::make_shared<MemoryTokens>(counting);
  TokenLoader single(src, {K * B, T});
  std::vector<std::unique_ptr<TokenLoader>> replicas;
  for (int64_t d = 0; d < K; ++d) replicas.push_back(std::make_unique<TokenLoader>(src, LoaderOptions{B, T, d, K}));
  const int64_t E = replicas[0]->steps_per_epoch();
  EXPECT_EQ(E, single.steps_per_epoch());
  std::set<int32_t> seen;
  for (int64_t s = 0; s < E; ++s) {
    // Concatenating the replicas' rows in rank order gives the single-process batch.
    std::vector<int32_t> joined_in, joined_tg;
    for (int64_t d = 0; d < K; ++d) {
      const Batch b = replicas[d]->batch_at(s);
      const auto in = values(b.inputs), tg = values(b.targets);
      joined_in.insert(joined_in.end(), in.begin(), in.end());
      joined_tg.insert(joined_tg.end(), tg.begin(), tg.end());
      for (int32_t start : row_starts(b)) EXPECT_TRUE(seen.insert(start).second) << "row read twice: " << start;
    }
    const Batch whole = single.batch_at(s);
    EXPECT_EQ(joined_in, values(whole.inputs)) << s;
    EXPECT_EQ(joined_tg, values(whole.targets)) << s;
  }
  // Over an epoch the replicas read every whole row exactly once.
  std::set<int32_t> all_rows;
  for (int64_t g = 0; g < E * K * B; ++g) all_rows.insert(static_cast<int32_t>(g * T));
  EXPECT_EQ(seen, all_rows);
}

TEST(Loader, ShuffledRowIsAPermutationForEverySize) {
  for (int64_t n : {1, 2, 3, 5, 16, 17, 100, 1000}) {
    std::set<int64_t> seen;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = shuffled_row(i, n, 7, 0);
      ASSERT_GE(j, 0);
      ASSERT_LT(j, n);
      seen.insert(j);
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), n) << "n = " << n;
  }
  // Another seed or epoch gives another order.
  std::vector<int64_t> a, b, c;
  for (int64_t i = 0; i < 100; ++i) {
    a.push_back(shuffled_row(i, 100, 7, 0));
    b.push_back(shuffled_row(i, 100, 7, 1));
    c.push_back(shuffled_row(i, 100, 8, 0));
  }
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
}

TEST(Loader, ShuffleReadsEachRowOncePerEpochInAnotherOrderEachEpoch) {
  const int64_t B = 2, T = 4, N = 201;  // 50 rows, 25 steps per epoch
  std::vector<int32_t> counting(N);
  for (int64_t i = 0; i < N; ++i) counting[i] = static_cast<int32_t>(i);
  const auto src = std::make_shared<MemoryTokens>(counting);
  LoaderOptions options{B, T};
  options.shuffle = true;
  options.shuffle_seed = 3;
  TokenLoader shuffled(src, options);
  TokenLoader ordered(src, {B, T});
  const int64_t E = shuffled.steps_per_epoch();
  ASSERT_EQ(E, 25);
  std::vector<std::vector<int32_t>> order(3);
  for (int64_t e = 0; e < 3; ++e) {
    std::set<int32_t> seen;
    for (int64_t s = e * E; s < (e + 1) * E; ++s) {
      const Batch b = shuffled.batch_at(s);
      EXPECT_EQ(b.epoch, e);
      const auto in = values(b.inputs), tg = values(b.targets);
      for (int64_t r = 0; r < B; ++r) {
        const int32_t start = in[r * T];
        EXPECT_EQ(start % T, 0) << "row not on a window boundary: " << start;
        for (int64_t t = 0; t < T; ++t) {  // a whole window: inputs and the shifted targets
          EXPECT_EQ(in[r * T + t], start + t);
          EXPECT_EQ(tg[r * T + t], start + t + 1);
        }
        EXPECT_TRUE(seen.insert(start).second) << "epoch " << e << " reads row " << start << " twice";
        order[e].push_back(start);
      }
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), E * B) << "epoch " << e;  // every row once
  }
  EXPECT_NE(order[0], order[1]);
  EXPECT_NE(order[1], order[2]);
  std::vector<int32_t> in_order;
  for (int64_t s = 0; s < E; ++s) {
    for (int32_t start : row_starts(ordered.batch_at(s))) in_order.push_back(start);
  }
  EXPECT_NE(order[0], in_order);  // shuffle on is not the stream order
  // A pure function of the step: another loader (a resumed run) reads the same rows.
  TokenLoader again(src, options);
  again.restore(shuffled.position());
  for (int64_t s : {0, 7, 31, 74}) EXPECT_EQ(values(again.batch_at(s).inputs), values(shuffled.batch_at(s).inputs));
  // Replicas of a dp split read the single process's shuffled rows, in rank order.
  LoaderOptions half = options;
  half.batch_size = 1;
  half.dp_size = 2;
  for (int64_t s : {0, 13, 26, 60}) {
    std::vector<int32_t> joined;
    for (int64_t d = 0; d < 2; ++d) {
      half.dp_rank = d;
      const auto in = values(TokenLoader(src, half).batch_at(s).inputs);
      joined.insert(joined.end(), in.begin(), in.end());
    }
    EXPECT_EQ(joined, values(shuffled.batch_at(s).inputs)) << "step " << s;
  }
}

TEST(MakeLoader, ShufflesTheTrainingSplitOnlyAndRefusesSyntheticData) {
  TempDir dir;
  std::vector<int32_t> counting(400);
  for (int64_t i = 0; i < 400; ++i) counting[i] = static_cast<int32_t>(i);
  write_token_shard(dir.file("c.bin"), counting);
  DataSpec spec;
  spec.format = config::DataFormat::Bin;
  spec.train = {dir.file("c.bin")};
  spec.val = {dir.file("c.bin")};
  spec.seq_len = 8;
  spec.batch_size = 4;
  spec.vocab_size = 1000;
  spec.seed = 1;
  const auto plain = make_loader(spec, Split::train);
  spec.shuffle = true;
  const auto train = make_loader(spec, Split::train);
  const auto val = make_loader(spec, Split::val);
  EXPECT_NE(values(train->batch_at(0).inputs), values(plain->batch_at(0).inputs));
  EXPECT_EQ(values(val->batch_at(0).inputs), values(plain->batch_at(0).inputs));
  spec.seed = 2;  // the order follows the seed
  EXPECT_NE(values(make_loader(spec, Split::train)->batch_at(0).inputs), values(train->batch_at(0).inputs));

  DataSpec synthetic;
  synthetic.format = config::DataFormat::Synthetic;
  synthetic.task = config::SyntheticTask::Copy;
  synthetic.seq_len = 32;
  synthetic.batch_size = 2;
  synthetic.vocab_size = 64;
  synthetic.shuffle = true;
  try {
    make_loader(synthetic, Split::train);
    ADD_FAILURE() << "expected ValueError naming data.shuffle";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("data.shuffle"), std::string::npos) << e.what();
  }
}

TEST(Loader, ResumeFromASavedPositionGivesTheSameNextBatches) {
  TempDir dir;
  write_token_shard(dir.file("train.bin"), stream_of(3000));
  const LoaderOptions opts{4, 16, 1, 2};
  TokenLoader first(open_token_files({dir.file("train.bin")}), opts);
  for (int k = 0; k < 37; ++k) first.next();  // past an epoch boundary (E = 23)
  const std::vector<int64_t> saved = first.position().to_ints();
  std::vector<Batch> expected;
  for (int k = 0; k < 5; ++k) expected.push_back(first.next());

  TokenLoader resumed(open_token_files({dir.file("train.bin")}), opts);
  resumed.restore(LoaderPosition::from_ints(saved));
  EXPECT_EQ(resumed.step(), 37);
  for (int k = 0; k < 5; ++k) {
    const Batch b = resumed.next();
    EXPECT_EQ(b.step, expected[k].step);
    EXPECT_EQ(b.epoch, expected[k].epoch);
    EXPECT_EQ(values(b.inputs), values(expected[k].inputs)) << k;
    EXPECT_EQ(values(b.targets), values(expected[k].targets)) << k;
  }
}

TEST(Loader, ResumeIsConstantTimeEvenFarAhead) {
  // A position a billion steps ahead restores at once: nothing is replayed.
  const auto tokens = stream_of(1000);
  TokenLoader loader(std::make_shared<MemoryTokens>(tokens), {2, 8});
  LoaderPosition pos = loader.position();
  pos.step = 1'000'000'007;
  loader.restore(pos);
  const Batch b = loader.next();
  EXPECT_EQ(values(b.inputs), values(loader.batch_at(1'000'000'007 % loader.steps_per_epoch()).inputs));
  EXPECT_EQ(b.epoch, 1'000'000'007 / loader.steps_per_epoch());
}

TEST(Loader, RestoreAcrossSplitsOfTheSameGlobalBatch) {
  // Saved by replica d of 2 with batch 1 at step 5; restored by one process with batch 2 and by
  // 2 replicas with batch 1: from there on they read the same global rows at every step.
  const auto src = std::make_shared<MemoryTokens>(stream_of(3000), "corpus.bin");
  TokenLoader saver(src, {1, 8, 1, 2});
  for (int k = 0; k < 5; ++k) saver.next();
  const LoaderPosition saved = saver.position();
  TokenLoader one(src, {2, 8});
  one.restore(saved);
  EXPECT_EQ(one.step(), 5);
  EXPECT_EQ(one.position().batch_size, 2) << "the position reports this run's geometry";
  std::vector<std::unique_ptr<TokenLoader>> replicas;
  for (int64_t d = 0; d < 2; ++d) {
    replicas.push_back(std::make_unique<TokenLoader>(src, LoaderOptions{1, 8, d, 2}));
    replicas.back()->restore(saved);
  }
  for (int k = 0; k < 4; ++k) {
    const Batch whole = one.next();
    std::vector<int32_t> joined;
    for (auto& r : replicas) {
      const auto in = values(r->next().inputs);
      joined.insert(joined.end(), in.begin(), in.end());
    }
    EXPECT_EQ(joined, values(whole.inputs)) << "step " << whole.step;
  }
}

TEST(Loader, RestoreRejectsAnotherGeometry) {
  const auto src = std::make_shared<MemoryTokens>(stream_of(1000), "corpus.bin");
  TokenLoader a(src, {2, 8});
  TokenLoader other_batch(src, {4, 8});
  TokenLoader other_dp(src, {2, 8, 0, 2});
  TokenLoader other_len(src, {2, 16});
  EXPECT_THROW(other_batch.restore(a.position()), DataError);
  EXPECT_THROW(other_len.restore(a.position()), DataError);
  try {
    other_dp.restore(a.position());
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    // Global batch 2 x 2 = 4 against the saved 2 x 1 = 2, said in the terms of the config.
    EXPECT_NE(std::string(e.what()).find("global batch 2 = batch_size 2 x dp 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("global batch 4 = batch_size 2 x dp 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("data.batch_size x parallel.dp"), std::string::npos) << e.what();
  }
  TokenLoader shorter(std::make_shared<MemoryTokens>(stream_of(999), "corpus.bin"), {2, 8});
  try {
    shorter.restore(a.position());
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("corpus.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("1000 tokens"), std::string::npos) << e.what();
  }
  EXPECT_THROW(LoaderPosition::from_ints(std::vector<int64_t>{1, 2, 3}), ValueError);
  EXPECT_THROW(LoaderPosition::from_ints(std::vector<int64_t>{9, 0, 2, 8, 1, 1000}), ValueError);
  EXPECT_EQ(LoaderPosition::from_ints(a.position().to_ints()), a.position());
}

TEST(Loader, TokensOutsideTheVocabularyAreNamed) {
  TempDir dir;
  auto tokens = stream_of(100);
  tokens[42] = 1500;
  write_token_shard(dir.file("v.bin"), tokens);
  TokenLoader loader(open_token_files({dir.file("v.bin")}), {1, 10, 0, 1, 1000});
  const Batch before = loader.batch_at(3);  // the row of tokens [30, 41), before token 42
  EXPECT_EQ(values(before.inputs), std::vector<int32_t>(tokens.begin() + 30, tokens.begin() + 40));
  EXPECT_EQ(values(before.targets), std::vector<int32_t>(tokens.begin() + 31, tokens.begin() + 41));
  try {
    loader.batch_at(4);  // tokens [40, 51)
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir.file("v.bin") + " (token 42)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1500"), std::string::npos) << msg;
  }
}

TEST(Loader, TooShortAStreamIsNamed) {
  const auto src = std::make_shared<MemoryTokens>(stream_of(64), "tiny.bin");
  EXPECT_EQ(TokenLoader(src, {1, 63}).steps_per_epoch(), 1);  // 64 tokens: one row of 63 and its target
  try {
    (void)TokenLoader(src, {2, 32});  // needs 65 tokens
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("tiny.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("65"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)TokenLoader(src, {0, 8}), ValueError);
  EXPECT_THROW((void)TokenLoader(src, {1, 8, 2, 2}), ValueError);
}

TEST(MakeLoader, BuildsEachFormatAndNamesBadKeys) {
  TempDir dir;
  write_token_shard(dir.file("t_train.bin"), stream_of(500));
  write_token_shard(dir.file("t_val.bin"), stream_of(300));
  DataSpec spec;
  spec.format = config::DataFormat::Bin;
  spec.train = {dir.file("t_train.bin")};
  spec.val = {dir.file("t_val.bin")};
  spec.seq_len = 16;
  spec.batch_size = 2;
  spec.vocab_size = 1000;
  EXPECT_EQ(make_loader(spec, Split::train)->stream_tokens(), 500);
  EXPECT_EQ(make_loader(spec, Split::val)->stream_tokens(), 300);

  auto expect_value_error = [](const DataSpec& s, Split split, const std::string& key) {
    try {
      make_loader(s, split);
      ADD_FAILURE() << "expected ValueError naming " << key;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  };
  DataSpec bad = spec;
  bad.val.clear();
  expect_value_error(bad, Split::val, "data.val");
  bad = spec;
  bad.seq_len = 0;
  expect_value_error(bad, Split::train, "data.seq_len");
  bad = spec;
  bad.train = {dir.file("missing.bin")};
  EXPECT_THROW(make_loader(bad, Split::train), DataError);
}

TEST(MakeLoader, SyntheticValRowsDifferFromTrainRows) {
  DataSpec spec;
  spec.format = config::DataFormat::Synthetic;
  spec.task = config::SyntheticTask::Copy;
  spec.seq_len = 32;
  spec.batch_size = 4;
  spec.vocab_size = 64;
  spec.seed = 5;
  const auto train = make_loader(spec, Split::train);
  const auto val = make_loader(spec, Split::val);
  EXPECT_EQ(train->steps_per_epoch(), 0);
  EXPECT_NE(values(train->batch_at(0).inputs), values(val->batch_at(0).inputs));
  EXPECT_EQ(values(train->batch_at(0).inputs), values(make_loader(spec, Split::train)->batch_at(0).inputs));
}

TEST(ScoreAnswers, CountsTokensAndWholeRows) {
  // Row 0: answers at t = 2, 3; row 1: none; row 2: answer at t = 0.
  const int32_t I = kIgnoreIndex;
  const Tensor answers = Tensor::from_vector({I, I, 5, 6, I, I, I, I, 9, I, I, I}, {3, 4}, DType::I32);
  const Tensor all_right = Tensor::from_vector({0, 0, 5, 6, 1, 1, 1, 1, 9, 0, 0, 0}, {3, 4}, DType::I32);
  AnswerScore s = score_answers(all_right, answers);
  EXPECT_EQ(s.tokens_total, 3);
  EXPECT_EQ(s.tokens_correct, 3);
  EXPECT_EQ(s.rows_total, 2);
  EXPECT_EQ(s.rows_correct, 2);
  EXPECT_DOUBLE_EQ(s.token_accuracy(), 1.0);
  const Tensor one_wrong = Tensor::from_vector({5, 6, 5, 7, 1, 1, 1, 1, 9, 0, 0, 0}, {3, 4}, DType::I32);
  s = score_answers(one_wrong, answers);
  EXPECT_EQ(s.tokens_correct, 2);
  EXPECT_EQ(s.rows_correct, 1);
  EXPECT_DOUBLE_EQ(s.row_accuracy(), 0.5);
  AnswerScore sum = s;
  sum += score_answers(all_right, answers);
  EXPECT_EQ(sum.tokens_total, 6);
  EXPECT_EQ(sum.rows_correct, 3);
}

TEST(ScoreAnswers, BadInputsNameTheFunctionAndShapes) {
  const Tensor a = Tensor::zeros({2, 3}, DType::I32);
  try {
    score_answers(Tensor::zeros({3, 2}, DType::I32), a);
    ADD_FAILURE() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("score_answers"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3, 2]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(score_answers(Tensor::zeros({2, 3}, DType::F32), a), DTypeError);
  EXPECT_THROW(score_answers(a, Tensor()), ValueError);
}

}  // namespace
}  // namespace strand::data
