// Tests of tokenizers and `data prepare` on the real tinyshakespeare corpus (found beside the repo).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/hdf5_tokens.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/shards.h"
#include "data/tokenizer.h"

namespace strand::data {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kShakespeareBytes = 1115394;

// The shared folder sits beside the checkout (/work/shared beside /work/main; ../shared beside
// a CI clone). STRAND_SHARED overrides; otherwise walk up from the working directory (tests run
// in BUILD/tests) and from the test binary, looking for shared/data/tinyshakespeare.txt.
fs::path corpus_path() {
  const fs::path rel = fs::path("data") / "tinyshakespeare.txt";
  if (const char* env = std::getenv("STRAND_SHARED")) return fs::path(env) / rel;
  std::error_code ec;
  for (fs::path start : {fs::current_path(ec), fs::read_symlink("/proc/self/exe", ec).parent_path()}) {
    for (fs::path dir = start; !dir.empty(); dir = dir.parent_path()) {
      if (fs::is_regular_file(dir / "shared" / rel, ec)) return dir / "shared" / rel;
      if (dir == dir.root_path()) break;
    }
  }
  return {};
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Corpus : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = corpus_path();
    ASSERT_TRUE(!path_.empty() && fs::is_regular_file(path_))
        << "tinyshakespeare.txt not found: set STRAND_SHARED or keep shared/ beside the checkout";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("strand_prepare_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string tmp(const std::string& name) const { return (dir_ / name).string(); }
  // The first `bytes` of the corpus, cut after a newline, written to a file.
  std::string slice(size_t bytes, const std::string& name) const {
    std::string text = read_file(path_).substr(0, bytes);
    text.resize(text.rfind('\n') + 1);
    std::ofstream(tmp(name), std::ios::binary) << text;
    return tmp(name);
  }
  fs::path path_, dir_;
};

TEST_F(Corpus, ByteTokenizerRoundTripsTheCorpus) {
  const std::string text = read_file(path_);
  ASSERT_EQ(static_cast<int64_t>(text.size()), kShakespeareBytes);
  ByteTokenizer tok;
  const auto ids = tok.encode(text);
  ASSERT_EQ(ids.size(), text.size());
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], static_cast<unsigned char>(text[i]));
  EXPECT_EQ(tok.decode(ids), text);
  const std::vector<int32_t> bad = {65, 256};
  EXPECT_THROW(tok.decode(bad), ValueError);
}

TEST_F(Corpus, PrepareWithBytesWritesTheWholeCorpusSplitAtTheTail) {
  PrepareOptions o;
  o.inputs = {path_.string()};
  o.out_prefix = tmp("out/shakespeare");
  o.progress = false;
  const PrepareResult r = prepare_dataset(o);
  const int64_t val = kShakespeareBytes / 10;  // floor(0.1 * N)
  EXPECT_EQ(r.documents, 1);
  EXPECT_EQ(r.input_bytes, kShakespeareBytes);
  EXPECT_EQ(r.vocab_size, 256);
  EXPECT_EQ(r.train_tokens, kShakespeareBytes - val);
  EXPECT_EQ(r.val_tokens, val);
  ASSERT_EQ(r.train_files, std::vector<std::string>{tmp("out/shakespeare_train.bin")});
  ASSERT_EQ(r.val_files, std::vector<std::string>{tmp("out/shakespeare_val.bin")});

  const std::string text = read_file(path_);
  const auto train = read_token_shard(r.train_files[0]);
  const auto val_tokens = read_token_shard(r.val_files[0]);
  ASSERT_EQ(static_cast<int64_t>(train.size()), kShakespeareBytes - val);
  ASSERT_EQ(static_cast<int64_t>(val_tokens.size()), val);
  for (size_t i = 0; i < train.size(); ++i) ASSERT_EQ(train[i], static_cast<unsigned char>(text[i])) << i;
  for (size_t i = 0; i < val_tokens.size(); ++i)
    ASSERT_EQ(val_tokens[i], static_cast<unsigned char>(text[train.size() + i])) << i;

  // The loader reads the prepared shard by the row rule: row (b, r) is text [(b*B + r)*T, ... + T + 1).
  DataSpec spec;
  spec.train = r.train_files;
  spec.seq_len = 64;
  spec.batch_size = 4;
  spec.vocab_size = 256;
  const auto loader = make_loader(spec, Split::train);
  const Batch b = loader->batch_at(100);
  const std::string row = text.substr((100 * 4 + 2) * 64, 65);
  for (int64_t t = 0; t < 64; ++t) {
    EXPECT_EQ(b.inputs.data<int32_t>()[2 * 64 + t], static_cast<unsigned char>(row[t]));
    EXPECT_EQ(b.targets.data<int32_t>()[2 * 64 + t], static_cast<unsigned char>(row[t + 1]));
  }
}

TEST_F(Corpus, PrepareSplitsLargeOutputsIntoNumberedShards) {
  const std::string small = slice(30000, "small.txt");
  const int64_t n = static_cast<int64_t>(fs::file_size(small));
  PrepareOptions o;
  o.inputs = {small};
  o.out_prefix = tmp("s");
  o.val_fraction = 0.0;
  o.shard_tokens = 8192;
  o.progress = false;
  const PrepareResult r = prepare_dataset(o);
  ASSERT_EQ(static_cast<int64_t>(r.train_files.size()), (n + 8191) / 8192);
  EXPECT_EQ(r.train_files[0], tmp("s_train_000000.bin"));
  EXPECT_TRUE(r.val_files.empty());
  // Read back as one stream through a glob, the shards are the file.
  const auto src = open_token_files({tmp("s_train_*.bin")});
  ASSERT_EQ(src->size(), n);
  std::vector<int32_t> all(static_cast<size_t>(n));
  src->read(0, n, all.data());
  EXPECT_EQ(ByteTokenizer().decode(all), read_file(small));
}

TEST_F(Corpus, PrepareReadsDirectoriesInSortedOrderAndTokenFilesAsTheyAre) {
  fs::create_directories(dir_ / "in" / "sub");
  std::ofstream(dir_ / "in" / "b.txt") << "bee";
  std::ofstream(dir_ / "in" / "a.txt") << "ay";
  std::ofstream(dir_ / "in" / ".hidden") << "skipped";
  write_hdf5_tokens((dir_ / "in" / "sub" / "c.h5").string(), std::vector<int32_t>{1000, 2000});
  write_token_shard((dir_ / "in" / "sub" / "d.bin").string(), std::vector<int32_t>{65535, 3});
  PrepareOptions o;
  o.inputs = {(dir_ / "in").string()};
  o.out_prefix = tmp("d");
  o.val_fraction = 0.0;
  o.progress = false;
  const PrepareResult r = prepare_dataset(o);
  EXPECT_EQ(r.documents, 4);
  EXPECT_EQ(read_token_shard(r.train_files[0]),
            (std::vector<int32_t>{'a', 'y', 'b', 'e', 'e', 1000, 2000, 65535, 3}));

  // A token file that does not fit uint16 shards, or a broken shard, is named.
  write_hdf5_tokens((dir_ / "in" / "sub" / "c.h5").string(), std::vector<int32_t>{70000});
  EXPECT_THROW(prepare_dataset(o), DataError);
  write_hdf5_tokens((dir_ / "in" / "sub" / "c.h5").string(), std::vector<int32_t>{1});
  fs::resize_file(dir_ / "in" / "sub" / "d.bin", 1025);
  try {
    prepare_dataset(o);
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find((dir_ / "in" / "sub" / "d.bin").string()), std::string::npos) << e.what();
  }
}

TEST_F(Corpus, PrepareRefusesInputsWithoutTokens) {
  std::ofstream(tmp("empty.txt")).close();
  PrepareOptions o;
  o.inputs = {tmp("empty.txt")};
  o.out_prefix = tmp("empty_out");
  o.progress = false;
  try {
    prepare_dataset(o);
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(tmp("empty.txt") + " holds no tokens"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp("empty_out_train.bin"))) << "no 0-token shard";
}

TEST_F(Corpus, PrepareNamesMissingInputsAndBadOptions) {
  PrepareOptions o;
  o.inputs = {tmp("missing.txt")};
  o.out_prefix = tmp("x");
  o.progress = false;
  try {
    prepare_dataset(o);
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(tmp("missing.txt")), std::string::npos) << e.what();
  }
  o.inputs = {path_.string()};
  o.val_fraction = 1.0;
  EXPECT_THROW(prepare_dataset(o), ValueError);
  o.val_fraction = 0.1;
  o.tokenizer = "wordpiece";
  EXPECT_THROW(prepare_dataset(o), ValueError);
  o.tokenizer = "sentencepiece";
  o.sp_model = tmp("none.model");
  try {
    prepare_dataset(o);
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(tmp("none.model")), std::string::npos) << e.what();
  }
}

TEST_F(Corpus, SentencePieceTrainedOnASliceRoundTripsAndReloads) {
  const std::string text = read_file(slice(100000, "slice.txt"));
  SentencePieceTrainOptions opts;
  opts.vocab_size = 400;
  const std::string model = tmp("sp.model");
  const auto trained = SentencePieceTokenizer::train(text, opts, model);
  ASSERT_TRUE(fs::is_regular_file(model));
  EXPECT_EQ(trained->vocab_size(), 400);
  const auto ids = trained->encode(text);
  EXPECT_LT(ids.size(), text.size() * 3 / 4);  // it merges: fewer tokens than bytes
  EXPECT_EQ(trained->decode(ids), text);

  const auto loaded = load_tokenizer("sentencepiece", model);
  EXPECT_EQ(loaded->name(), "sentencepiece");
  EXPECT_EQ(loaded->vocab_size(), 400);
  EXPECT_EQ(loaded->encode(text), ids);
  // Lossless beyond the training text: unseen characters fall back to bytes.
  const std::string unseen = "  héllo\twörld ☃\n\n  ";
  EXPECT_EQ(loaded->decode(loaded->encode(unseen)), unseen);
  ASSERT_TRUE(loaded->end_of_document().has_value());
  const std::vector<int32_t> bad = {1, 400};
  EXPECT_THROW(loaded->decode(bad), ValueError);
}

TEST_F(Corpus, PrepareWithSentencePieceTrainsThenAppendsEndOfDocument) {
  const std::string small = slice(60000, "small.txt");
  PrepareOptions o;
  o.inputs = {small};
  o.out_prefix = tmp("sp");
  o.tokenizer = "sentencepiece";
  o.sp_train.vocab_size = 360;  // above the 318 pieces byte fallback and the characters need
  o.sp_train.model_type = "bpe";
  o.val_fraction = 0.0;
  o.progress = false;
  const PrepareResult r = prepare_dataset(o);
  EXPECT_EQ(r.tokenizer_model, tmp("sp.model"));
  EXPECT_EQ(r.vocab_size, 360);
  const auto loaded = SentencePieceTokenizer::load(r.tokenizer_model);
  // The chunked encoding in prepare equals one encode of the whole document, plus eos.
  std::vector<int32_t> expected = loaded->encode(read_file(small));
  expected.push_back(*loaded->end_of_document());
  EXPECT_EQ(read_token_shard(r.train_files[0]), expected);

  // A second run loads the model instead of training. On the whole corpus (over 1 MiB) the
  // text is encoded in newline-cut chunks, which must give the ids of one whole encode.
  o.sp_model = r.tokenizer_model;
  o.inputs = {path_.string()};
  o.out_prefix = tmp("sp2");
  expected = loaded->encode(read_file(path_));
  expected.push_back(*loaded->end_of_document());
  EXPECT_EQ(read_token_shard(prepare_dataset(o).train_files[0]), expected);
}

TEST_F(Corpus, SentencePieceErrorsNameTheModelOrOption) {
  std::ofstream(tmp("junk.model")) << "not a model";
  try {
    SentencePieceTokenizer::load(tmp("junk.model"));
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(tmp("junk.model")), std::string::npos) << e.what();
  }
  EXPECT_THROW(SentencePieceTokenizer::load(tmp("absent.model")), DataError);
  SentencePieceTrainOptions opts;
  opts.vocab_size = 70000;
  EXPECT_THROW(SentencePieceTokenizer::train("some text\n", opts, tmp("m.model")), ValueError);
  opts.vocab_size = 300;
  opts.model_type = "word";
  EXPECT_THROW(SentencePieceTokenizer::train("some text\n", opts, tmp("m.model")), ValueError);
  EXPECT_THROW(load_tokenizer("bpe"), ValueError);
}

TEST_F(Corpus, AVocabularyTheCorpusCannotFillNamesTheBoundAsStrandsOption) {
  // SentencePiece's own text suggests its --character_coverage flag, which strand does not have.
  std::string corpus;
  for (int i = 0; i < 20; ++i) corpus += "hello world this is a tiny corpus\n";
  SentencePieceTrainOptions opts;
  for (const int64_t vocab : {2000, 10}) {
    opts.vocab_size = vocab;
    try {
      SentencePieceTokenizer::train(corpus, opts, tmp("v.model"));
      ADD_FAILURE() << "expected ValueError for vocab_size " << vocab;
    } catch (const ValueError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("use --vocab-size "), std::string::npos) << what;
      EXPECT_NE(what.find(vocab == 2000 ? " or less" : " or more"), std::string::npos) << what;
      EXPECT_EQ(what.find("character_coverage"), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

}  // namespace
}  // namespace strand::data
