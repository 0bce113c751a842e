// The `strand` program as a newcomer meets it, run as a subprocess: `--version`, "did you mean"
// for a mistyped command, defaults in --help, the run directory (train.log, config.yaml,
// metrics.jsonl with timestamps), the log line, one line per checkpoint save, the notices of a
// resume (changed keys, a finished run), train.log after a closed stdout, and one error line
// per job under mpirun.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "launch/run_compare.h"
#include "support/temp_dir.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using testing_support::CommandResult;
using testing_support::one_error_line;
using testing_support::read_metrics;
using testing_support::read_text;
using testing_support::run_command;
using testing_support::strand_binary;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)
#define EXPECT_LACKS(text, part) EXPECT_EQ(std::string(text).find(part), std::string::npos) << (text)

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs::exists(strand_binary())) << strand_binary(); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // A tiny synthetic run: 4 steps of 64 tokens, a checkpoint every 2 steps.
  std::string tiny_config(const std::string& extra = "") const {
    const std::string file = path("c.yaml");
    std::ofstream(file) << "run: {dir: " + path("run") + ", seed: 3}\n"
                           "model: {vocab_size: 32, n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 32}\n"
                           "data: {format: synthetic, task: assoc_recall, seq_len: 32, batch_size: 2}\n"
                           "train: {steps: 4, log_every: 1, eval_every: 2}\ncheckpoint: {every: 2}\n" + extra;
    return file;
  }
  CommandResult strand(const std::string& args) const {
    return run_command("OMP_NUM_THREADS=1 " + strand_binary() + " " + args, dir_);
  }
  // `strand args` on `ranks` MPI ranks (stdout and stderr of every rank, as mpirun gathers them).
  CommandResult mpirun(int ranks, const std::string& args) const {
    return run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 timeout -k 5 60 "
                       "mpirun -np " + std::to_string(ranks) + " --oversubscribe " + strand_binary() + " " + args,
                       dir_);
  }
  static bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

  strand::testing::TempDir temp_{"strand_cli2"};
  const fs::path& dir_ = temp_.path;
};

TEST_F(CliTest, VersionNamesCommitBuildBlasMpiAndCuda) {
  const CommandResult r = strand("--version");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  // The commit, read by CMake when the program was built: 12 hex digits (with -dirty for a
  // tree with uncommitted changes), or "unknown" outside a git checkout.
  EXPECT_TRUE(std::regex_match(lines[0], std::regex(R"(strand \d+\.\d+\.\d+ \(git ([0-9a-f]{12}(-dirty)?|unknown)\))")))
      << lines[0];
  EXPECT_TRUE(std::regex_match(lines[1], std::regex(R"(build: \w+, CUDA (ON|OFF), MPI (ON|OFF), portable (ON|OFF), sanitizers (ON|OFF))")))
      << lines[1];
  EXPECT_EQ(lines[2].rfind("BLAS: OpenBLAS ", 0), 0u) << lines[2];
  EXPECT_CONTAINS(lines[2], "; kernels ");
  EXPECT_EQ(lines[3].rfind("MPI: ", 0), 0u) << lines[3];
  EXPECT_GT(lines[3].size(), std::string("MPI: ").size()) << "the library names itself";
  EXPECT_EQ(lines[4].rfind("CUDA: ", 0), 0u) << lines[4];
}

TEST_F(CliTest, AMistypedCommandGetsASuggestion) {
  const CommandResult typo = strand("trian " + tiny_config());
  EXPECT_CONTAINS(one_error_line(typo), "strand: error: unknown command 'trian'; did you mean 'train'?");
  EXPECT_CONTAINS(one_error_line(strand("data prepar --input x --out y")),
                  "unknown command 'data prepar'; did you mean 'data prepare'?");
  EXPECT_CONTAINS(one_error_line(strand("config gte parallel.dp x.yaml")), "did you mean 'config get'?");
  // Nothing close: no guess, but the commands there are.
  const std::string far = one_error_line(strand("xyzzy"));
  EXPECT_LACKS(far, "did you mean");
  EXPECT_CONTAINS(far, "(commands: train, eval,");
  EXPECT_FALSE(fs::exists(path("run"))) << "nothing ran";
}

TEST_F(CliTest, EveryHelpShowsDefaults) {
  const CommandResult train = strand("train --help");
  ASSERT_EQ(train.exit_code, 0) << train.err;
  EXPECT_CONTAINS(train.out, "--peak-tflops FLOAT:POSITIVE=0");
  const CommandResult prepare = strand("data prepare --help");
  EXPECT_CONTAINS(prepare.out, "--val-fraction FLOAT=0.1");
  const CommandResult attention = strand("bench attention --help");
  EXPECT_CONTAINS(attention.out, "--seq INT:POSITIVE=4096");
  EXPECT_CONTAINS(attention.out, "--layout TEXT=auto");
  const CommandResult eval = strand("eval --help");
  EXPECT_CONTAINS(eval.out, "--batches INT:POSITIVE=0");
}

TEST_F(CliTest, TheRunDirHoldsTrainLogConfigYamlAndTimedMetrics) {
  const std::string cfg = tiny_config();
  const double before = unix_now();
  const CommandResult r = strand("train " + cfg);
  const double after = unix_now();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const auto out = lines_of(r.out);
  ASSERT_GE(out.size(), 5u);
  // The first lines name the run dir, the metrics file and the checkpoint dir.
  EXPECT_EQ(out[0], "strand train " + cfg + " (1 rank)");
  EXPECT_EQ(out[1], "run dir:     " + path("run") + " (train.log, config.yaml)");
  EXPECT_EQ(out[2], "metrics:     " + path("run/metrics.jsonl"));
  EXPECT_EQ(out[3], "checkpoints: " + path("run/checkpoints"));
  // train.log holds everything printed, and config.yaml the resolved config printed.
  EXPECT_EQ(read_text(path("run/train.log")), r.out);
  const std::string yaml = read_text(path("run/config.yaml"));
  ASSERT_FALSE(yaml.empty());
  EXPECT_CONTAINS(r.out, "--- resolved config\n" + yaml + "---\n");
  const CommandResult steps = strand("config get train.steps " + path("run/config.yaml"));
  EXPECT_EQ(steps.out, "4\n") << steps.err;

  // One line per save: path, size in MB, seconds.
  const std::regex save(R"(checkpoint (\S+) \((\d+\.\d) MB, (\d+\.\d\d) s\))");
  std::vector<std::string> saved;
  for (const std::string& line : out) {
    std::smatch m;
    if (std::regex_match(line, m, save)) {
      saved.push_back(m[1]);
      EXPECT_NEAR(std::stod(m[2]), static_cast<double>(fs::file_size(m[1].str())) / 1e6, 0.051) << line;
    }
  }
  EXPECT_EQ(saved, (std::vector<std::string>{path("run/checkpoints/step_00000002.h5"),
                                             path("run/checkpoints/step_00000004.h5")}));

  // The log line: fixed digits for loss and grad, step time, tokens seen, elapsed and eta.
  const std::regex step_line(R"(step (\d)/4 \| loss \d+\.\d{4} \| lr \S+ \| grad \d+\.\d{4} \| \d+\.\d ms \| \S+ tok/s \| (\d+) tok \| mem .* \| \d+s elapsed, eta \d+s.*)");
  int logged = 0;
  for (const std::string& line : out) {
    std::smatch m;
    if (line.rfind("step ", 0) != 0) continue;
    ASSERT_TRUE(std::regex_match(line, m, step_line)) << line;
    EXPECT_EQ(std::stoi(m[2]), 64 * std::stoi(m[1])) << line;
    ++logged;
  }
  EXPECT_EQ(logged, 4);

  // metrics.jsonl: unix-seconds timestamps within the run, elapsed seconds, step time, tokens.
  const auto rows = read_metrics(path("run/metrics.jsonl"));
  ASSERT_EQ(rows.size(), 4u);
  double last_elapsed = 0.0, last_time = 0.0;
  for (const auto& row : rows) {
    const double step = *row.at("step");
    const double timestamp = *row.at("timestamp"), elapsed = *row.at("elapsed_s");
    EXPECT_GE(timestamp, before - 0.001);
    EXPECT_LE(timestamp, after + 0.001);
    EXPECT_GE(timestamp, last_time);
    EXPECT_GE(elapsed, last_elapsed);
    EXPECT_LE(elapsed, after - before);
    EXPECT_GT(*row.at("step_ms"), 0.0);
    EXPECT_EQ(*row.at("tokens_seen"), 64.0 * step);
    last_elapsed = elapsed;
    last_time = timestamp;
  }
}

TEST_F(CliTest, AResumeNamesTheChangedKeysAndAppendsToTrainLog) {
  const std::string cfg = tiny_config();
  const CommandResult first = strand("train " + cfg + " --quiet-config");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const CommandResult resumed = strand("train " + cfg + " --quiet-config --set train.steps=6 --set train.lr=0.002");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const std::string ckpt = path("run/checkpoints/step_00000004.h5");
  EXPECT_CONTAINS(resumed.out, "config changed since " + ckpt + " (old \u2192 new):\n"
                               "  train.steps: 4 \u2192 6\n"
                               "  train.lr: 0.0003 \u2192 0.002\n");
  // Before training: the notice comes ahead of the first step line.
  EXPECT_LT(resumed.out.find("config changed since"), resumed.out.find("step 5/6"));
  // train.log: the first run, a separator line with the time, the second run.
  const std::string log = read_text(path("run/train.log"));
  ASSERT_EQ(log.rfind(first.out, 0), 0u) << log;
  const std::string rest = log.substr(first.out.size());
  EXPECT_TRUE(std::regex_match(rest.substr(0, rest.find('\n')),
                               std::regex(R"(----- \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: the run goes on -----)")))
      << rest;
  EXPECT_EQ(rest.substr(rest.find('\n') + 1), resumed.out);
  // An unchanged config names no key.
  const CommandResult same = strand("train " + cfg + " --quiet-config --set train.steps=8 --set train.lr=0.002");
  EXPECT_CONTAINS(same.out, "  train.steps: 6 \u2192 8\n");
  EXPECT_LACKS(same.out, "train.lr:");
}

TEST_F(CliTest, RerunningAFinishedRunSaysSoAndExitsZero) {
  const std::string cfg = tiny_config();
  ASSERT_EQ(strand("train " + cfg).exit_code, 0);
  const auto metrics_before = read_text(path("run/metrics.jsonl"));
  const CommandResult again = strand("train " + cfg + " --quiet-config");
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_CONTAINS(again.out, path("run") + " already reached step 4; raise train.steps to continue\n");
  EXPECT_LACKS(again.out, "step 4/4");
  EXPECT_LACKS(again.out, "checkpoint " + path("run"));
  EXPECT_EQ(read_text(path("run/metrics.jsonl")), metrics_before);
  EXPECT_CONTAINS(read_text(path("run/train.log")), "already reached step 4");
}

TEST_F(CliTest, AClosedStdoutStillReachesTrainLog) {
  // `strand train cfg | head -1`: the console reader goes after one line; every later line,
  // the save and the stop line included, is in train.log.
  const std::string cfg = tiny_config();
  const CommandResult r = run_command("bash -c 'set -o pipefail; OMP_NUM_THREADS=1 " + strand_binary() + " train " + cfg +
                                          " --set train.steps=100000 --set checkpoint.every=0 | head -1'",
                                      dir_);
  EXPECT_EQ(r.exit_code, 141) << r.err;
  EXPECT_EQ(r.out, "strand train " + cfg + " (1 rank)\n");
  const std::string log = read_text(path("run/train.log"));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, std::regex(R"(stopped by SIGPIPE after step (\d+); checkpoint (\S+); run the same command to resume)")))
      << log;
  const std::string ckpt = m[2];
  EXPECT_TRUE(fs::exists(ckpt));
  EXPECT_TRUE(std::regex_search(log, std::regex("checkpoint " + ckpt + R"( \(\d+\.\d MB, \d+\.\d\d s\)\n)"))) << log;
  EXPECT_LT(log.find("checkpoint " + ckpt + " ("), log.find("stopped by SIGPIPE")) << "the save, then the stop line";
  EXPECT_CONTAINS(log, "run dir:     " + path("run"));
  EXPECT_CONTAINS(log, "step " );
}

TEST_F(CliTest, TooFewRanksNamesTheSetThatFixesIt) {
  // The quickstart's shape: sp = 2, started as one process.
  const std::string cfg = tiny_config("parallel: {sp: 2}\n");
  const CommandResult r = strand("train " + cfg);
  const std::string line = one_error_line(r);
  EXPECT_CONTAINS(line, "key 'parallel.dp': dp x sp = 1 x 2 = 2 ranks, but the job has 1 (run with mpirun -np 2, or "
                        "--set parallel.sp=1)");
  EXPECT_EQ(r.out, "") << "the config is printed after validation";
  const CommandResult fixed = strand("train " + cfg + " --set parallel.sp=1 --quiet-config");
  EXPECT_EQ(fixed.exit_code, 0) << fixed.err;
}

TEST_F(CliTest, UnderMpirunAConfigErrorIsOneLineAndNoConfig) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found (openmpi-bin)";
  // dp x sp = 1 on a 2-rank job: every rank finds it; rank 0 alone says so.
  const CommandResult job = mpirun(2, "train " + tiny_config());
  EXPECT_NE(job.exit_code, 0) << job.out << job.err;
  EXPECT_NE(job.exit_code, 124) << "hung";
  std::vector<std::string> errors;
  for (const std::string& line : lines_of(job.out + job.err))
    if (line.find("strand: error:") != std::string::npos) errors.push_back(line);
  ASSERT_EQ(errors.size(), 1u) << job.out << job.err;
  EXPECT_EQ(errors[0].rfind("[rank 0] strand: error: ", 0), 0u) << errors[0];
  EXPECT_CONTAINS(errors[0], "but the job has 2 (run with mpirun -np 1, or --set parallel.dp=2)");
  EXPECT_LACKS(job.out, "--- resolved config");
  // strand eval checks alike: a checkpoint that is not there is named once.
  const CommandResult eval = mpirun(2, "eval " + tiny_config() + " --checkpoint " + path("nope.h5"));
  EXPECT_NE(eval.exit_code, 0);
  int eval_errors = 0;
  for (const std::string& line : lines_of(eval.out + eval.err))
    eval_errors += line.find("strand: error:") != std::string::npos && line.find(path("nope.h5")) != std::string::npos;
  EXPECT_EQ(eval_errors, 1) << eval.out << eval.err;
  // A usage mistake is printed by rank 0 alone too.
  const CommandResult typo = mpirun(2, "trian");
  EXPECT_NE(typo.exit_code, 0);
  int typo_lines = 0;
  for (const std::string& line : lines_of(typo.out + typo.err)) typo_lines += line.find("did you mean 'train'") != std::string::npos;
  EXPECT_EQ(typo_lines, 1) << typo.out << typo.err;
}

TEST_F(CliTest, UnderMpirunAnErrorEveryRankHitsLaterIsOneLine) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found (openmpi-bin)";
  // A data file that does not exist: found by every rank when the loaders open, after the
  // ranks agreed on the config; rank 0 reports and ends the job, the others stay quiet.
  const std::string missing = path("no_such_train.bin");
  const std::string cfg = path("bin.yaml");
  std::ofstream(cfg) << "run: {dir: " + path("run") + "}\n"
                        "model: {vocab_size: 64, n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 32}\n"
                        "data: {format: bin, train: " + missing + ", seq_len: 32, batch_size: 1}\n"
                        "parallel: {dp: 2}\n";
  const auto start = std::chrono::steady_clock::now();
  const CommandResult job = mpirun(2, "train " + cfg + " --quiet-config");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(job.exit_code, 0);
  EXPECT_NE(job.exit_code, 124) << "hung";
  EXPECT_LT(seconds, 30.0);
  std::vector<std::string> errors;
  for (const std::string& line : lines_of(job.out + job.err))
    if (line.find("strand: error:") != std::string::npos) errors.push_back(line);
  ASSERT_EQ(errors.size(), 1u) << job.out << job.err;
  EXPECT_EQ(errors[0].rfind("[rank 0] strand: error: ", 0), 0u) << errors[0];
  EXPECT_CONTAINS(errors[0], missing);
}

}  // namespace
}  // namespace strand
