// `strand config get KEY CONFIG [--set ...]` run as a subprocess: the resolved value on one
// stdout line with exit 0, or one error line and a non-zero exit; and launch/train.sh, which
// takes its default rank count from it and parses no YAML of its own.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "launch/run_compare.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using testing_support::CommandResult;
using testing_support::run_command;
using testing_support::strand_binary;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

fs::path repo_root() { return STRAND_SOURCE_DIR; }

class ConfigCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("strand_config_cli_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(fs::exists(strand_binary())) << "the strand program is built beside tests/: " << strand_binary();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) const {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  // A small synthetic config; `extra` is appended YAML.
  std::string config(const std::string& extra = "") const {
    return write("cfg.yaml", "run: {dir: out/run, seed: 3}\n"
                             "model: {vocab_size: 32, n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 32}\n"
                             "data: {format: synthetic, task: copy, seq_len: 32, batch_size: 2}\n" + extra);
  }
  CommandResult strand(const std::string& args) const {
    return run_command("OMP_NUM_THREADS=1 " + strand_binary() + " " + args, dir_);
  }
  // The value printed: exactly one stdout line, nothing on stderr, exit 0.
  static std::string one_value(const CommandResult& r) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_FALSE(r.out.empty());
    EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "one line: " << r.out;
    return r.out.empty() ? "" : r.out.substr(0, r.out.size() - 1);
  }
  // Errors print nothing on stdout: scripts read the value from there.
  static std::string one_error_line(const CommandResult& r) {
    EXPECT_EQ(r.out, "");
    return testing_support::one_error_line(r);
  }

  fs::path dir_;
};

TEST_F(ConfigCliTest, GetPrintsTheResolvedValueOnOneLine) {
  const std::string cfg = config("parallel: {sp: 2}\ntrain: {lr: 3e-4}\n");
  EXPECT_EQ(one_value(strand("config get parallel.sp " + cfg)), "2");
  EXPECT_EQ(one_value(strand("config get parallel.dp " + cfg)), "1") << "a default";
  EXPECT_EQ(one_value(strand("config get parallel.sp " + cfg + " --set parallel.sp=4")), "4");
  EXPECT_EQ(one_value(strand("config get parallel.sp " + cfg + " --set parallel.sp=4 --set parallel.sp=8")), "8")
      << "the last --set wins";
  EXPECT_EQ(one_value(strand("config get parallel.layout " + cfg)), "zigzag") << "auto, resolved";
  EXPECT_EQ(one_value(strand("config get model.d_ff " + cfg)), "64") << "derived default";
  EXPECT_EQ(one_value(strand("config get train.lr " + cfg)), "0.0003") << "as the emitter writes it";
  EXPECT_EQ(one_value(strand("config get train.betas " + cfg)), "[0.9, 0.95]");
  EXPECT_EQ(one_value(strand("config get checkpoint.dir " + cfg)), "out/run/checkpoints") << "strings bare";
}

TEST_F(ConfigCliTest, AnUnknownKeyOrABadConfigIsOneErrorLine) {
  const std::string cfg = config();
  EXPECT_CONTAINS(one_error_line(strand("config get parallel.dpp " + cfg)),
                  "key 'parallel.dpp': unknown key; did you mean 'parallel.dp'?");
  EXPECT_CONTAINS(one_error_line(strand("config get parallel " + cfg)), "key 'parallel': is a section");
  // The key is checked first, so a misspelt key is named even in a config with errors.
  EXPECT_CONTAINS(one_error_line(strand("config get parallel.dpp " + fs::path(dir_ / "missing.yaml").string())),
                  "key 'parallel.dpp': unknown key");
  EXPECT_CONTAINS(one_error_line(strand("config get parallel.dp " + fs::path(dir_ / "missing.yaml").string())),
                  "missing.yaml: cannot open the config file");
  EXPECT_CONTAINS(one_error_line(strand("config get parallel.dp " + cfg + " --set train.lr=abc")),
                  "--set train.lr=abc: key 'train.lr': expected a number, got 'abc'");
  EXPECT_CONTAINS(one_error_line(strand("config get parallel.dp " + config("distill: {alpha: 2}\n"))),
                  "key 'distill.alpha': must be in [0, 1], got 2");
}

// launch/train.sh --dry-run: the rank count comes from `strand config get` (file and --set
// overrides in either spelling), and the script has no YAML parser of its own.
TEST_F(ConfigCliTest, TrainShTakesTheRankCountFromStrand) {
  const std::string script = (repo_root() / "launch" / "train.sh").string();
  const std::string run = "STRAND_BIN=" + strand_binary() + " OMP_NUM_THREADS=1 bash " + script + " --dry-run ";
  const std::string cfg = config("parallel:\n  dp: 1   # replicas\n  sp: 2\n");
  CommandResult r = run_command(run + cfg + " --set parallel.dp=3 --quiet-config", dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.err, "train.sh: 6 rank(s) = parallel.dp 3 x parallel.sp 2");
  EXPECT_CONTAINS(r.err, " -np 6 ");
  EXPECT_CONTAINS(r.err, "train " + cfg + " --set parallel.dp=3 --quiet-config");
  // Time for the ranks to save after a forwarded SIGTERM (docs/reliability.md).
  EXPECT_CONTAINS(r.err, " --mca odls_base_sigkill_timeout 30 ");
  r = run_command("STRAND_STOP_GRACE_S=90 " + run + cfg, dir_);
  EXPECT_CONTAINS(r.err, " --mca odls_base_sigkill_timeout 90 ");
  r = run_command(run + cfg + " --set=parallel.sp=4", dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.err, "train.sh: 4 rank(s) = parallel.dp 1 x parallel.sp 4");
  // A config strand refuses: its one error line, then train.sh's, and a non-zero exit.
  r = run_command(run + config("parallel: {dpp: 2}\n"), dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_CONTAINS(r.err, "key 'parallel.dpp': unknown key; did you mean 'parallel.dp'?");
  EXPECT_CONTAINS(r.err, "train.sh: error: cannot read parallel.dp");

  std::ifstream in(script);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str().find("awk"), std::string::npos) << "train.sh reads the config through strand only";
  EXPECT_EQ(text.str().find("parallel:"), std::string::npos) << "train.sh reads the config through strand only";
}

}  // namespace
}  // namespace strand
