// `strand generate` as users run it: on a checkpoint trained here for a few steps on byte-level
// text (with train.sample_every printing samples), it prints text and exits 0, the same text
// for the same seed; every bad input is one `strand: error:` line naming the flag, key or file.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "launch/run_compare.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using testing_support::CommandResult;
using testing_support::one_error_line;
using testing_support::run_command;
using testing_support::strand_binary;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

class GenerateCliTest : public ::testing::Test {
 protected:
  // One trained checkpoint for the whole suite: a byte-level GPT, 4 steps on a small text.
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("strand_generate_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::string text;
    for (int i = 0; i < 200; ++i) text += "To be, or not to be: that is the question. Caf\xC3\xA9 au lait.\n";
    std::ofstream(path("corpus.txt")) << text;
    prepare_ = strand("data prepare --input " + path("corpus.txt") + " --out " + path("data/tiny") + " --quiet");
    std::ofstream(path("gpt.yaml"))
        << "run: {dir: " << path("run") << ", seed: 3}\n"
        << "model: {vocab_size: 256, n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 64}\n"
        << "data: {train: " << path("data/tiny_train.bin") << ", val: " << path("data/tiny_val.bin")
        << ", seq_len: 32, batch_size: 2}\n"
        << "train: {steps: 4, log_every: 2, sample_every: 2}\n";
    train_ = strand("train " + path("gpt.yaml"));
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string path(const std::string& name) { return (dir_ / name).string(); }
  static CommandResult strand(const std::string& args) {
    return run_command("OMP_NUM_THREADS=1 " + strand_binary() + " " + args, dir_);
  }
  static std::string checkpoint() { return path("run/checkpoints/step_00000004.h5"); }
  static CommandResult generate(const std::string& flags) {
    return strand("generate " + path("gpt.yaml") + " --checkpoint " + checkpoint() + " " + flags);
  }

  static inline fs::path dir_;
  static inline CommandResult prepare_, train_;
};

TEST_F(GenerateCliTest, TrainingPrintsASampleEverySampleEverySteps) {
  ASSERT_EQ(prepare_.exit_code, 0) << prepare_.err;
  ASSERT_EQ(train_.exit_code, 0) << train_.err;
  size_t samples = 0;
  const std::string line = "sample: \"To be, or not to\" -> \"";  // the first 16 bytes of the val data
  for (size_t at = train_.out.find(line); at != std::string::npos; at = train_.out.find(line, at + 1))
    ++samples;
  EXPECT_EQ(samples, 2u) << train_.out;
}

TEST_F(GenerateCliTest, PrintsTextAndTheSameTextForTheSameSeed) {
  ASSERT_EQ(train_.exit_code, 0) << train_.err;
  const CommandResult a = generate("--prompt 'To be' --max-new-tokens 40 --seed 5 --top-k 20 --top-p 0.9");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_GE(a.out.size(), 10u) << a.out;
  EXPECT_CONTAINS(a.err, "generated 40 tokens");
  const CommandResult b = generate("--prompt 'To be' --max-new-tokens 40 --seed 5 --top-k 20 --top-p 0.9");
  EXPECT_EQ(a.out, b.out);
  // Greedy with and without the cache: the same text.
  std::ofstream(path("prompt.txt")) << "Caf\xC3\xA9";
  const CommandResult cached = generate("--prompt-file " + path("prompt.txt") + " --max-new-tokens 30 --temperature 0");
  const CommandResult recomputed =
      generate("--prompt-file " + path("prompt.txt") + " --max-new-tokens 30 --temperature 0 --no-cache");
  ASSERT_EQ(cached.exit_code, 0) << cached.err;
  EXPECT_EQ(cached.out, recomputed.out);
}

TEST_F(GenerateCliTest, AnalyzeWritesStatisticsAndPicturesOfAShortInput) {
  ASSERT_EQ(train_.exit_code, 0) << train_.err;
  const std::string out = path("analysis");
  const CommandResult r = strand("analyze " + path("gpt.yaml") + " --checkpoint " + checkpoint() +
                                 " --text 'To be, or not' --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* file : {"analysis.json", "head_view.png", "rollout.png"})
    EXPECT_TRUE(fs::exists(fs::path(out) / file)) << file << "\n" << r.out;
  std::ifstream in(fs::path(out) / "analysis.json");
  const std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* key : {"\"tokens\": 13", "\"entropy\": ", "\"distance\": ", "\"rollout\": ", "\"maps\": "})
    EXPECT_CONTAINS(json, key);
  // A checkpoint of a strand prune run: its report's last round drawn as head-importance bars.
  std::ofstream(path("run/prune_report.json"))
      << R"({"rounds": [{"round": 0, "kept_heads": [[0, 1]], "scores": []},)"
      << R"( {"round": 1, "kept_heads": [[1]], "scores": [[0.3, 0.7]]}]})";
  const CommandResult pruned = strand("analyze " + path("gpt.yaml") + " --checkpoint " + checkpoint() +
                                      " --text 'To be' --out " + out);
  fs::remove(path("run/prune_report.json"));
  ASSERT_EQ(pruned.exit_code, 0) << pruned.err;
  EXPECT_CONTAINS(pruned.out, "head_importance.png (from ");
  EXPECT_TRUE(fs::exists(fs::path(out) / "head_importance.png"));
  // A long input gets the statistics only; bad inputs are one error line.
  const CommandResult stats = strand("analyze " + path("gpt.yaml") + " --checkpoint " + checkpoint() +
                                     " --data " + path("data/tiny_val.bin") + " --map-tokens 8 --out " + out + "2");
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_CONTAINS(stats.out, "no pictures");
  EXPECT_FALSE(fs::exists(fs::path(out + "2") / "head_view.png"));
  const std::string analyze = "analyze " + path("gpt.yaml") + " --checkpoint " + checkpoint();
  EXPECT_CONTAINS(one_error_line(strand(analyze)), "exactly one of --text");
  EXPECT_CONTAINS(one_error_line(strand(analyze + " --text x --map-tokens 600")), "--map-tokens");
  EXPECT_CONTAINS(one_error_line(strand(analyze + " --data " + path("missing.bin"))), path("missing.bin"));
}

TEST_F(GenerateCliTest, BadInputsAreOneErrorLine) {
  ASSERT_EQ(train_.exit_code, 0) << train_.err;
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --top-p 1.5")), "--top-p 1.5");
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --top-p 0")), "--top-p");
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --temperature -1")), "--temperature");
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --top-k -2")), "--top-k");
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --seed -3")), "--seed");
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --max-new-tokens 0")), "--max-new-tokens");
  EXPECT_CONTAINS(one_error_line(generate("")), "--prompt");
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --prompt-file " + path("prompt.txt"))), "exactly one");
  EXPECT_CONTAINS(one_error_line(generate("--prompt-file " + path("missing.txt"))), path("missing.txt"));
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --max-new-tokens 64")), "model.max_seq_len = 64");
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --set model.attention.pattern=longformer")), "longformer");
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --set data.tokenizer=" + path("none.model"))),
                  path("none.model"));
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --bogus")), "--bogus");
  const CommandResult missing =
      strand("generate " + path("gpt.yaml") + " --checkpoint " + path("nope.h5") + " --prompt x --max-new-tokens 8");
  EXPECT_CONTAINS(one_error_line(missing), path("nope.h5"));
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --set model.arch=encoder --set model.attention.pattern=full")),
                  "model.arch");
  EXPECT_CONTAINS(one_error_line(generate("--prompt x --set data.format=synthetic")), "data.format");
}

}  // namespace
}  // namespace strand
