// The `strand train`, `strand eval` and `strand bench train` programs, run as subprocesses. Bad
// input: each error is one line on stderr, "strand: error: ...", naming the file, key or dataset,
// with a non-zero exit. SIGTERM to a running `strand train`: checkpoint, clean exit (status 0),
// and a resumed run that picks up from there. eval and bench print one JSON line.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "framework/core/json_value.h"
#include "launch/run_compare.h"
#include "support/temp_dir.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using testing_support::CommandResult;
using testing_support::one_error_line;
using testing_support::read_metrics;
using testing_support::run_command;
using testing_support::strand_binary;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

class TrainCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("strand_cli_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(fs::exists(strand_binary())) << "the strand program is built beside tests/: " << strand_binary();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name)) << text;
    return path(name);
  }
  // A tiny synthetic run in this test's directory; `extra` is appended YAML.
  std::string tiny_config(const std::string& name, const std::string& extra = "") const {
    return write(name, "run: {dir: " + path("run") + ", seed: 3}\n"
                       "model: {vocab_size: 32, n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 32}\n"
                       "data: {format: synthetic, task: assoc_recall, seq_len: 32, batch_size: 2}\n"
                       "train: {steps: 2, log_every: 1}\n" + extra);
  }
  CommandResult strand(const std::string& args) const {
    return run_command("OMP_NUM_THREADS=1 " + strand_binary() + " " + args, dir_);
  }
  // The same with one more environment variable (NAME=VALUE) set for the program.
  CommandResult strand_with_env(const std::string& assignment, const std::string& args) const {
    return run_command("env " + assignment + " OMP_NUM_THREADS=1 " + strand_binary() + " " + args, dir_);
  }

  fs::path dir_;
};

TEST_F(TrainCliTest, UnknownKeyNamesFileLineAndKey) {
  const std::string cfg = write("bad.yaml", "model:\n  n_heads: 4\n");
  const std::string line = one_error_line(strand("train " + cfg));
  EXPECT_CONTAINS(line, cfg + ":2");
  EXPECT_CONTAINS(line, "model.n_heads");
  EXPECT_CONTAINS(line, "model.n_head'");  // the suggestion
}

TEST_F(TrainCliTest, WrongTypeNamesTheKey) {
  const std::string cfg = write("bad.yaml", "train: {lr: fast}\n");
  const std::string line = one_error_line(strand("train " + cfg));
  EXPECT_CONTAINS(line, cfg);
  EXPECT_CONTAINS(line, "train.lr");
  EXPECT_CONTAINS(line, "fast");
}

TEST_F(TrainCliTest, BytesQuotedFromAFileArePrintable) {
  // A value with a terminal escape sequence, a carriage return and a byte that is not UTF-8:
  // the error quotes it as \xNN, keeps valid UTF-8, and stays one line of plain text.
  const std::string cfg = write("bad.yaml", "train: {lr: \"\x1b[2J\r\xff caf\xc3\xa9\"}\n");
  const std::string line = one_error_line(strand("train " + cfg));
  EXPECT_CONTAINS(line, "train.lr");
  EXPECT_CONTAINS(line, "\\x1b[2J\\x0d\\xff caf\xc3\xa9");
  for (const char c : line) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f) << line;
}

TEST_F(TrainCliTest, WrongTypeInASetOverrideNamesTheOverride) {
  const std::string line = one_error_line(strand("train " + tiny_config("c.yaml") + " --set train.steps=two"));
  EXPECT_CONTAINS(line, "--set train.steps=two");
  EXPECT_CONTAINS(line, "train.steps");
}

TEST_F(TrainCliTest, MissingDataFileNamesIt) {
  const std::string missing = path("no_such_train.bin");
  const std::string cfg = write("c.yaml", "run: {dir: " + path("run") + "}\n"
                                          "model: {vocab_size: 64, n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 32}\n"
                                          "data: {format: bin, train: " + missing + ", seq_len: 32, batch_size: 1}\n");
  const std::string line = one_error_line(strand("train " + cfg));
  EXPECT_CONTAINS(line, missing);
}

TEST_F(TrainCliTest, TruncatedBinShardNamesIt) {
  // An llm.c header announcing 1000 tokens, followed by only 10 of them.
  std::vector<int32_t> header(256, 0);
  header[0] = 20240520;
  header[1] = 1;
  header[2] = 1000;
  const std::string shard = path("short.bin");
  {
    std::ofstream out(shard, std::ios::binary);
    out.write(reinterpret_cast<const char*>(header.data()), header.size() * sizeof(int32_t));
    const std::vector<uint16_t> tokens(10, 7);
    out.write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(uint16_t));
  }
  const std::string cfg = write("c.yaml", "run: {dir: " + path("run") + "}\n"
                                          "model: {vocab_size: 64, n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 32}\n"
                                          "data: {format: bin, train: " + shard + ", seq_len: 4, batch_size: 1}\n");
  const std::string line = one_error_line(strand("train " + cfg));
  EXPECT_CONTAINS(line, shard);
}

TEST_F(TrainCliTest, CheckpointOfAnotherShapeNamesParameterAndShapes) {
  const std::string cfg = tiny_config("c.yaml");
  const CommandResult ok = strand("train " + cfg);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const std::string ckpt = path("run/checkpoints/step_00000002.h5");
  ASSERT_TRUE(fs::exists(ckpt));
  const std::string line =
      one_error_line(strand("train " + cfg + " --set model.d_model=24 --set checkpoint.resume=" + ckpt));
  EXPECT_CONTAINS(line, ckpt);
  EXPECT_CONTAINS(line, "transformer.");
  EXPECT_CONTAINS(line, "16]");
  EXPECT_CONTAINS(line, "24]");
  // strand eval refuses it the same way.
  const std::string eval_line = one_error_line(strand("eval " + cfg + " --set model.d_model=24 --checkpoint " + ckpt));
  EXPECT_CONTAINS(eval_line, "24]");
}

TEST_F(TrainCliTest, CorruptHdf5CheckpointNamesTheFile) {
  const std::string ckpt = write("corrupt.h5", std::string(4096, 'x'));
  const std::string cfg = tiny_config("c.yaml");
  const std::string line = one_error_line(strand("train " + cfg + " --set checkpoint.resume=" + ckpt));
  EXPECT_CONTAINS(line, ckpt);
  const std::string eval_line = one_error_line(strand("eval " + cfg + " --checkpoint " + ckpt));
  EXPECT_CONTAINS(eval_line, ckpt);
}

TEST_F(TrainCliTest, ResumePathThatDoesNotExistIsAnError) {
  const std::string missing = path("gone/step_00000005.h5");
  const std::string line = one_error_line(strand("train " + tiny_config("c.yaml") + " --set checkpoint.resume=" + missing));
  EXPECT_CONTAINS(line, missing);
  EXPECT_FALSE(fs::exists(path("run/checkpoints"))) << "no fresh start in its place";
}

TEST_F(TrainCliTest, CommandLineMistakesAreOneLine) {
  const std::string cfg = tiny_config("cfg.yaml");
  EXPECT_CONTAINS(one_error_line(strand("eval " + cfg + " --checkpoint x.h5 --batches 0")),
                  "--batches: must be > 0, got 0");
  EXPECT_CONTAINS(one_error_line(strand("eval " + cfg + " --checkpoint x.h5 --batches -3")),
                  "--batches: must be > 0, got -3");
  EXPECT_CONTAINS(one_error_line(strand("train " + cfg + " --peak-tflops -5")), "--peak-tflops: must be > 0, got -5");
  EXPECT_CONTAINS(one_error_line(strand("no-such-command")), "(see strand --help)");
  EXPECT_CONTAINS(one_error_line(strand("eval " + cfg + " --checkpoint x.h5 --data tokens.bin")),
                  "--data tokens.bin: " + cfg + " has data.format synthetic, which reads no files");
  EXPECT_FALSE(fs::exists(path("run"))) << "nothing ran";
}

TEST_F(TrainCliTest, AConfigTooLargeForTheMachineIsRefusedBeforeAllocating) {
  // Each of these once ended in std::bad_alloc, "terminate called" or the OOM killer.
  const std::string cfg = tiny_config("huge.yaml");
  for (const std::string set : {"model.d_model=1000000000", "model.vocab_size=2147483647", "model.d_ff=1000000000000",
                                "data.batch_size=1000000000"}) {
    const std::string line = one_error_line(strand("train " + cfg + " --quiet-config --set " + set));
    EXPECT_CONTAINS(line, set.substr(0, set.find('=')));
    EXPECT_CONTAINS(line, "this config needs at least ");
    EXPECT_CONTAINS(line, "the machine has ");
  }
  EXPECT_CONTAINS(one_error_line(strand("eval " + cfg + " --checkpoint x.h5 --set model.d_model=1000000000")),
                  "this config needs at least ");
}

TEST_F(TrainCliTest, LauncherEnvironmentErrorsAreOneLine) {
  const std::string cfg = tiny_config("cfg.yaml");
  // A Slurm allocation's variables without srun, and a launcher size that is not a number.
  const std::string slurm = one_error_line(strand_with_env("SLURM_NTASKS=2", "train " + cfg));
  EXPECT_CONTAINS(slurm, "SLURM_NTASKS");
  const std::string ompi = one_error_line(strand_with_env("OMPI_COMM_WORLD_SIZE=x", "train " + cfg));
  EXPECT_CONTAINS(ompi, "OMPI_COMM_WORLD_SIZE is 'x'");
}

TEST_F(TrainCliTest, MissingConfigFileNamesIt) {
  const std::string line = one_error_line(strand("train " + path("nope.yaml")));
  EXPECT_CONTAINS(line, path("nope.yaml"));
}

TEST_F(TrainCliTest, EvalPrintsOneJsonLineWithLossAndAccuracy) {
  const std::string cfg = tiny_config("c.yaml");
  ASSERT_EQ(strand("train " + cfg).exit_code, 0);
  const CommandResult r = strand("eval " + cfg + " --checkpoint " + path("run/checkpoints/step_00000002.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  for (const char* key : {"\"loss\": ", "\"tokens\": ", "\"accuracy\": ", "\"step\": 2"}) EXPECT_CONTAINS(r.out, key);
  // Progress goes to stderr (a file here: plain lines), never into the JSON on stdout.
  EXPECT_CONTAINS(r.err, "eval 100%  10/10 batches");  // train.eval_batches default
  // INT8 attention scores: the same loss within 0.5% (this barely trained model's scores are so
  // small that the two may agree to every float32 digit; ops.attention_int8_test shows the path).
  const CommandResult int8 = strand("eval " + cfg + " --attention-precision int8 --checkpoint " +
                                    path("run/checkpoints/step_00000002.h5"));
  ASSERT_EQ(int8.exit_code, 0) << int8.err;
  const double loss = *testing_support::parse_metrics_line(r.out).at("loss");
  const double int8_loss = *testing_support::parse_metrics_line(int8.out).at("loss");
  EXPECT_NEAR(int8_loss, loss, 0.005 * loss);
  EXPECT_CONTAINS(one_error_line(strand("eval " + cfg + " --attention-precision int4 --checkpoint x.h5")),
                  "--attention-precision: int4 not in {fp32,int8}");
}

TEST_F(TrainCliTest, BenchTrainPrintsOneJsonLineAndWritesNothing) {
  const CommandResult r = strand("bench train " + tiny_config("c.yaml") + " --steps 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  const auto row = testing_support::parse_metrics_line(r.out);
  for (const char* key : {"tokens_per_s", "step_ms", "peak_mem_bytes", "params", "threads", "steps"}) {
    ASSERT_TRUE(row.count(key)) << key << " in " << r.out;
  }
  EXPECT_GT(*row.at("tokens_per_s"), 0.0);
  EXPECT_GT(*row.at("peak_mem_bytes"), 0.0);
  EXPECT_EQ(*row.at("threads"), 1.0);  // OMP_NUM_THREADS=1
  EXPECT_EQ(*row.at("steps"), 2.0);
  EXPECT_CONTAINS(r.err, "bench train 100%  3/3 steps");  // 1 warm-up + 2 timed
  EXPECT_FALSE(fs::exists(path("run"))) << "bench writes no metrics or checkpoints";
}

TEST_F(TrainCliTest, BenchTrainGemmProfileSumsTheTimedStepsProductsPerShape) {
  const CommandResult r = strand("bench train " + tiny_config("c.yaml") + " --steps 2 --gemm-profile");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const JsonValue row = parse_json(r.out);
  const JsonValue* profile = row.find("gemm_profile");
  ASSERT_NE(profile, nullptr) << r.out;
  const JsonValue* shapes = profile->find("shapes");
  ASSERT_NE(shapes, nullptr);
  ASSERT_FALSE(shapes->items.empty()) << r.out;
  // The tiny GPT's products: every one float32, at least a forward, dX and dW per linear layer,
  // and the per-shape times add up to the reported total, which is part of the timed steps.
  double ms = 0, previous = 1e300;
  for (const JsonValue& s : shapes->items) {
    EXPECT_EQ(s.find("dtype")->text, "float32") << to_json(s);
    EXPECT_GE(s.find("calls_per_step")->number, 1.0) << to_json(s);
    const double shape_ms = s.find("ms_per_step")->number;
    EXPECT_LE(shape_ms, previous) << "slowest first";
    previous = shape_ms;
    ms += shape_ms;
  }
  EXPECT_GE(shapes->items.size(), 3u);
  EXPECT_NEAR(profile->find("ms_per_step")->number, ms, 1e-6 * ms + 1e-9);
  EXPECT_GT(profile->find("share_of_steps")->number, 0.0);
  EXPECT_LT(profile->find("share_of_steps")->number, 1.0);
  // Without the flag the line has no profile.
  EXPECT_EQ(strand("bench train " + tiny_config("c.yaml") + " --steps 1").out.find("gemm_profile"), std::string::npos);
}

TEST_F(TrainCliTest, BenchTrainFwdBwdRunsOneGradientPassAndReportsTheMoments) {
  const CommandResult r = strand("bench train " + tiny_config("c.yaml") + " --fwd-bwd");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_CONTAINS(r.out, "\"fwd_bwd\": true");
  const auto row = testing_support::parse_metrics_line(r.out);
  ASSERT_TRUE(row.count("optimizer_state_bytes")) << r.out;
  EXPECT_EQ(*row.at("steps"), 1.0);
  EXPECT_GT(*row.at("loss"), 0.0);
  // AdamW's two fp32 moments per parameter (in the allocator's rounded blocks) are held before
  // the pass; the pass adds to them.
  EXPECT_GE(*row.at("optimizer_state_bytes"), 2.0 * 4.0 * *row.at("params"));
  EXPECT_LT(*row.at("optimizer_state_bytes"), 1.5 * 2.0 * 4.0 * *row.at("params"));
  EXPECT_GT(*row.at("peak_mem_bytes"), *row.at("optimizer_state_bytes"));
  EXPECT_FALSE(fs::exists(path("run"))) << "bench writes no metrics or checkpoints";
}

TEST_F(TrainCliTest, SigtermSavesACheckpointExitsZeroAndResumes) {
  const std::string cfg = tiny_config("c.yaml");
  const std::string metrics = path("run/metrics.jsonl");
  const std::string out = path("train.out");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::freopen(out.c_str(), "w", stdout);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    const std::string bin = strand_binary();
    execl(bin.c_str(), bin.c_str(), "train", cfg.c_str(), "--set", "train.steps=100000", "--set", "model.n_layer=2",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait (without a time limit on the result) until a few steps are logged, then stop it.
  for (int i = 0; i < 6000 && read_metrics(metrics).size() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(read_metrics(metrics).size(), 3u);
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const auto rows = read_metrics(metrics);
  const int64_t stopped_at = static_cast<int64_t>(*rows.back().at("step"));
  EXPECT_CONTAINS(testing_support::read_text(out), "stopped by SIGTERM after step " + std::to_string(stopped_at));
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld.h5", static_cast<long long>(stopped_at));
  ASSERT_TRUE(fs::exists(path("run/checkpoints/") + name));

  // The same command resumes from there (here with a nearer end).
  const CommandResult resumed =
      strand("train " + cfg + " --set model.n_layer=2 --set train.steps=" + std::to_string(stopped_at + 2));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_CONTAINS(resumed.out, "resumed from " + path("run/checkpoints/") + name + " at step " + std::to_string(stopped_at));
  EXPECT_EQ(read_metrics(metrics).size(), static_cast<size_t>(stopped_at + 2));
}

TEST_F(TrainCliTest, AClosedStdoutStopsWithACheckpointAndExitStatus141) {
  // `strand train cfg | head -1`: the reader goes after one line; the run saves the step it is
  // in, says so on stderr, and exits 141 (128 + SIGPIPE), so that the pipeline fails.
  const std::string cfg = tiny_config("p.yaml");
  const CommandResult r = run_command("bash -c 'set -o pipefail; OMP_NUM_THREADS=1 " + strand_binary() + " train " + cfg +
                                          " --set train.steps=100000 | head -1'",
                                      dir_);
  EXPECT_EQ(r.exit_code, 141) << r.err;
  EXPECT_EQ(r.out, "strand train " + cfg + " (1 rank)\n");
  const auto lines = r.error_lines();
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_CONTAINS(lines[0], "stopped by SIGPIPE after step ");
  EXPECT_CONTAINS(lines[0], "; run the same command to resume");
  EXPECT_TRUE(fs::exists(path("run/checkpoints/latest")));
}

TEST_F(TrainCliTest, AHangupSavesACheckpointAndSaysSoOnStderr) {
  const std::string cfg = tiny_config("h.yaml");
  const std::string metrics = path("run/metrics.jsonl");
  const std::string err = path("train.err");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen(err.c_str(), "w", stderr);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    ::signal(SIGHUP, SIG_DFL);  // as a terminal session leaves it
    const std::string bin = strand_binary();
    execl(bin.c_str(), bin.c_str(), "train", cfg.c_str(), "--set", "train.steps=100000", static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 6000 && read_metrics(metrics).size() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(read_metrics(metrics).size(), 3u);
  ::kill(pid, SIGHUP);  // the terminal closed
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const int64_t stopped_at = static_cast<int64_t>(*read_metrics(metrics).back().at("step"));
  EXPECT_CONTAINS(testing_support::read_text(err), "stopped by SIGHUP after step " + std::to_string(stopped_at));
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld.h5", static_cast<long long>(stopped_at));
  EXPECT_TRUE(fs::exists(path("run/checkpoints/") + name));
}

// A model whose checkpoint (weights and both AdamW moments, 433,664 parameters) is about 5.2 MB.
std::string five_megabyte_model(const std::string& run_dir) {
  return "run: {dir: " + run_dir + ", seed: 3}\n"
         "model: {vocab_size: 256, n_layer: 2, n_head: 2, d_model: 128, max_seq_len: 32}\n"
         "data: {format: synthetic, task: assoc_recall, seq_len: 32, batch_size: 2}\n"
         "train: {steps: 4, log_every: 1}\ncheckpoint: {every: 1, keep: 0}\n";
}

std::vector<std::string> temp_files_in(const std::string& dir) {
  return strand::testing::files_starting_with(dir, ".tmp-");
}

// An 8 MB tmpfs at `dir` while this lives (mounting needs root, as CI runs): it holds one
// 5.2 MB checkpoint, not two.
struct SmallDisk {
  explicit SmallDisk(std::string path) : dir(std::move(path)) {
    fs::create_directories(dir);
    mounted = std::system(("mount -t tmpfs -o size=8m tmpfs " + dir + " 2>/dev/null").c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted) (void)std::system(("umount " + dir).c_str());
  }
  std::string dir;
  bool mounted = false;
};

TEST_F(TrainCliTest, ADiskTooFullForTheNextSaveKeepsThePreviousCheckpoint) {
  // An 8 MB file system holds one 5.2 MB checkpoint, not two (needs root, as CI runs).
  const SmallDisk small(path("disk"));
  if (!small.mounted) GTEST_SKIP() << "cannot mount a small tmpfs here (needs root)";
  const std::string& disk = small.dir;
  const std::string cfg = write("full.yaml", five_megabyte_model(disk + "/run"));
  const CommandResult r = strand("train " + cfg + " --quiet-config");
  const std::string line = one_error_line(r);
  EXPECT_EQ(r.exit_code, 1) << "an error, not a crash";
  EXPECT_CONTAINS(line, disk + "/run/checkpoints/step_00000002.h5: needs about ");
  EXPECT_CONTAINS(line, "; nothing written, the previous checkpoint is kept");
  EXPECT_TRUE(temp_files_in(disk + "/run/checkpoints").empty());
  const CommandResult inspect = strand("inspect " + disk + "/run/checkpoints/step_00000001.h5");
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_CONTAINS(inspect.out, "step: 1");
}

TEST_F(TrainCliTest, ADiskTooFullUnderMpirunIsOneErrorLineForTheJob) {
  // The same full disk with two data-parallel ranks: rank 0 saves, its error ends the job, and
  // the job prints one strand error line (Open MPI adds its own banner about the abort).
  if (std::system("command -v mpiexec >/dev/null 2>&1") != 0) GTEST_SKIP() << "mpiexec not found (openmpi-bin)";
  const SmallDisk small(path("disk"));
  if (!small.mounted) GTEST_SKIP() << "cannot mount a small tmpfs here (needs root)";
  const std::string& disk = small.dir;
  const std::string cfg = write("full.yaml", five_megabyte_model(disk + "/run") + "parallel: {dp: 2}\n");
  const CommandResult r = run_command("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
                                      "mpiexec -np 2 --oversubscribe " + strand_binary() + " train " + cfg +
                                          " --quiet-config --set data.batch_size=1",
                                      dir_);
  EXPECT_NE(r.exit_code, 0);
  std::vector<std::string> strand_lines;
  for (const std::string& l : r.error_lines())
    if (l.find("strand: error:") != std::string::npos) strand_lines.push_back(l);
  ASSERT_EQ(strand_lines.size(), 1u) << r.err;
  EXPECT_CONTAINS(strand_lines[0], "[rank 0] strand: error: " + disk + "/run/checkpoints/step_00000002.h5: needs about ");
  EXPECT_TRUE(temp_files_in(disk + "/run/checkpoints").empty());
  const CommandResult inspect = strand("inspect " + disk + "/run/checkpoints/step_00000001.h5");
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
}

TEST_F(TrainCliTest, AWriteThatFailsHalfwayIsOneLineNotACrash) {
  // A file-size limit makes the first save fail inside HDF5's writes, past any check of free
  // space; HDF5's own shutdown used to crash on the half-closed file at exit.
  const std::string cfg = write("big.yaml", five_megabyte_model(path("run")));
  const CommandResult r = run_command("bash -c \"trap '' XFSZ; ulimit -f 3000; OMP_NUM_THREADS=1 " + strand_binary() +
                                          " train " + cfg + " --quiet-config\"",
                                      dir_);
  const std::string line = one_error_line(r);
  EXPECT_EQ(r.exit_code, 1) << "an error, not a crash";
  EXPECT_CONTAINS(line, path("run/checkpoints/step_00000001.h5") + ": cannot finish writing ");
  EXPECT_CONTAINS(line, "File too large");
  EXPECT_TRUE(temp_files_in(path("run/checkpoints")).empty());
  // The error that ended the run is the last line of train.log too.
  const std::string log = testing_support::read_text(path("run/train.log"));
  EXPECT_EQ(log.substr(log.rfind('\n', log.size() - 2) + 1), line + "\n");
}

}  // namespace
}  // namespace strand
