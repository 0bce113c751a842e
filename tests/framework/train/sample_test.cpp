// Text samples during training (train.sample_every) and the pieces behind them: the run's
// tokenizer (data.tokenizer auto / byte / a SentencePiece model), the streaming UTF-8 decode, and
// the configs that cannot sample, refused naming the key.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "data/shards.h"
#include "data/token_source.h"
#include "framework/config/config.h"
#include "framework/train/sample.h"
#include "framework/train/trainer.h"
#include "models/model.h"
#include "support/temp_dir.h"

namespace strand::train {
namespace {

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

std::vector<int32_t> bytes_of(const std::string& s) {
  std::vector<int32_t> ids;
  for (unsigned char c : s) ids.push_back(c);
  return ids;
}

std::string text_config(const testing::TempDir& dir, const std::string& train_extra) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "Hello, world. ";
  data::write_token_shard(dir.file("t_train.bin"), bytes_of(text));
  data::write_token_shard(dir.file("t_val.bin"), bytes_of("Once upon a time, there was a test."));
  return "run: {dir: " + dir.file("run") + ", seed: 2}\n"
         "model: {vocab_size: 256, n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 64, pos: rope}\n"
         "data: {train: " + dir.file("t_train.bin") + ", val: " + dir.file("t_val.bin") +
         ", seq_len: 16, batch_size: 2}\n"
         "train: {steps: 5, log_every: 5, " + train_extra + "}\n";
}

TEST(TrainSample, PrintsATextSampleEverySampleEverySteps) {
  const testing::TempDir dir;
  const Config config = parse_config(text_config(dir, "sample_every: 2"), "t.yaml");
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  TrainerOptions options;
  options.out = out;
  options.write_files = false;
  make_trainer(config, models::build_model(config), nullptr, options).run();
  std::rewind(out);
  std::string printed;
  for (int c; (c = std::fgetc(out)) != EOF;) printed += static_cast<char>(c);
  std::fclose(out);
  // Steps 2 and 4 of 5, each from the first 16 bytes of the validation data.
  const std::string line = "sample: \"Once upon a time\" -> \"";
  size_t count = 0;
  for (size_t at = printed.find(line); at != std::string::npos; at = printed.find(line, at + 1)) ++count;
  EXPECT_EQ(count, 2u) << printed;

  // Off by default: no sample line.
  const Config quiet = parse_config(text_config(dir, "sample_every: 0"), "t.yaml");
  std::FILE* out2 = std::tmpfile();
  options.out = out2;
  make_trainer(quiet, models::build_model(quiet), nullptr, options).run();
  std::rewind(out2);
  std::string printed2;
  for (int c; (c = std::fgetc(out2)) != EOF;) printed2 += static_cast<char>(c);
  std::fclose(out2);
  EXPECT_EQ(printed2.find("sample:"), std::string::npos) << printed2;
}

TEST(TrainSample, ConfigsThatCannotSampleAreRefusedNamingTheKey) {
  const testing::TempDir dir;
  const std::string yaml = text_config(dir, "sample_every: 2");
  for (const std::vector<std::string>& set :
       {std::vector<std::string>{"data.format=synthetic"},
        {"model.arch=encoder", "model.attention.pattern=full"},
        {"model.attention.pattern=longformer"},
        {"model.attention.pattern=linear"}}) {
    try {
      parse_config(yaml, "t.yaml", set);
      ADD_FAILURE() << set[0] << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_CONTAINS(e.what(), "train.sample_every");
    }
  }
}

TEST(RunTokenizer, AutoFindsTheSentencePieceModelBesideTheShardsElseBytes) {
  const testing::TempDir dir;
  Config config = parse_config(text_config(dir, "sample_every: 0"), "t.yaml");
  EXPECT_EQ(run_tokenizer(config)->name(), "byte") << "no t.model beside t_train.bin";
  // PREFIX.model beside PREFIX_train.bin is the one auto takes (a broken file is named).
  std::ofstream(dir.file("t.model")) << "not a model";
  try {
    run_tokenizer(config);
    ADD_FAILURE() << "auto did not read t.model";
  } catch (const DataError& e) {
    EXPECT_CONTAINS(e.what(), dir.file("t.model"));
  }
  config.data.tokenizer = "byte";
  EXPECT_EQ(run_tokenizer(config)->name(), "byte");
  config.data.tokenizer = dir.file("other.model");
  EXPECT_THROW(run_tokenizer(config), DataError);
  config.data.format = config::DataFormat::Synthetic;
  EXPECT_THROW(run_tokenizer(config), ConfigError);
}

TEST(TextStream, HoldsBackAMultiByteCharacterUntilItsLastByte) {
  const data::ByteTokenizer bytes;
  TextStream stream(bytes);
  std::string shown;
  std::vector<std::string> pieces;
  for (int32_t id : bytes_of("a\xC3\xA9\xE2\x82\xAC!")) pieces.push_back(stream.push(id));  // a é € !
  EXPECT_EQ(pieces, (std::vector<std::string>{"a", "", "\xC3\xA9", "", "", "\xE2\x82\xAC", "!"}));
  // A long stream (past the decode window) prints exactly its text.
  std::string text;
  for (int i = 0; i < 50; ++i) text += "caf\xC3\xA9 \xE2\x82\xAC ";
  std::string printed;
  for (int32_t id : bytes_of(text)) printed += stream.push(id);
  EXPECT_EQ(printed, text);
  // Bytes that are not UTF-8 come out as U+FFFD: a lone continuation byte, a lead byte followed
  // by ASCII, and an unfinished character at the end.
  EXPECT_EQ(stream.push(0x80), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.push(0xC3), "");
  EXPECT_EQ(stream.push('A'), "\xEF\xBF\xBD" "A");
  EXPECT_EQ(stream.push(0x1B), "\xEF\xBF\xBD") << "no terminal escape sequences";
  EXPECT_EQ(stream.push('\n'), "\n");
  EXPECT_EQ(stream.push(0xE2), "");
  EXPECT_EQ(stream.finish(), "\xEF\xBF\xBD");
  const data::ByteTokenizer other;
  TextStream unknown(other);
  EXPECT_EQ(unknown.push(300), "\xEF\xBF\xBD") << "an id past the tokenizer's vocabulary";
}

}  // namespace
}  // namespace strand::train
