// `strand distill` as a program: it runs like `strand train` (the same first lines, the loss
// terms beside the loss in the log line and in metrics.jsonl), `strand train` refuses a config
// that names a teacher and `strand distill` one that names none, and under mpiexec at sp = 2
// (ring and Ulysses) every term of every step (KD, the hidden-state term with its learned
// projection, and attention transfer on ring contiguous, ring zigzag and Ulysses, and at sp = 4
// on hybrid 2 ring x 2 Ulysses) equals the one-process run's to 1e-5; so does the head-averaged
// attention term of a student with fewer heads than its teacher over a sample of the query rows.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <utility>

#include "launch/run_compare.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using testing_support::CommandResult;
using testing_support::metric_by_step;
using testing_support::one_error_line;
using testing_support::run_command;
using testing_support::strand_binary;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

// fp32 sums in another order (per-shard losses, lse-merged ring blocks) over a few steps.
constexpr double kRelTol = 1e-5;

// The sequence splits the attention term is checked under: sp = 2 ring (both layouts) and
// Ulysses, and sp = 4 hybrid, 2 ring x 2 Ulysses ranks (zigzag, the causal model's auto layout).
const std::pair<int, std::string> kSequenceSplits[] = {
    {2, "--set parallel.sp=2 --set parallel.sp_mode=ring --set parallel.layout=contiguous"},
    {2, "--set parallel.sp=2 --set parallel.sp_mode=ring --set parallel.layout=zigzag"},
    {2, "--set parallel.sp=2 --set parallel.sp_mode=ulysses"},
    {4, "--set parallel.sp=4 --set parallel.sp_mode=hybrid --set parallel.ulysses_degree=2"}};

// The model both share: GQA heads that Ulysses over 2 ranks splits, rotary positions, 64-token
// rows. The teacher has 2 layers, the student 1.
const char* kModel =
    "data: {format: synthetic, task: copy, seq_len: 64, batch_size: 2}\n"
    "train: {steps: 4, lr: 0.003, warmup_steps: 1, log_every: 1}\n";

class DistillCliTest : public ::testing::Test {
 public:  // the helpers below the fixture call its runs too
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("strand_distill_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "teacher.yaml")
        << "run: {dir: " << (dir_ / "teacher").string() << ", seed: 5}\n"
        << "model: {vocab_size: 16, n_layer: 2, n_head: 4, n_kv_head: 2, d_model: 64, max_seq_len: 64, pos: rope}\n"
        << kModel;
    teacher_run_ = run_command(here() + "OMP_NUM_THREADS=1 " + strand_binary() + " train teacher.yaml --quiet-config", dir_);
    std::ofstream(dir_ / "student.yaml")
        << "run: {seed: 9}\n"
        << "model: {vocab_size: 16, n_layer: 1, n_head: 4, n_kv_head: 2, d_model: 64, max_seq_len: 64, pos: rope}\n"
        << kModel << "distill: {teacher: " << (dir_ / "teacher/checkpoints/step_00000004.h5").string()
        << ", temperature: 2.0, alpha: 0.3, hidden_weight: 0.5}\n";
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  void SetUp() override {
    ASSERT_TRUE(fs::exists(strand_binary())) << strand_binary();
    ASSERT_EQ(teacher_run_.exit_code, 0) << teacher_run_.err;
  }
  // `strand distill student.yaml` in run dir `name`, on `ranks` ranks (mpiexec above 1).
  static CommandResult distill(const std::string& name, int ranks = 1, const std::string& sets = "") {
    std::string cmd = here() + "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 ";
    if (ranks > 1) cmd += "mpiexec -np " + std::to_string(ranks) + " --oversubscribe ";
    return run_command(cmd + strand_binary() + " distill student.yaml --quiet-config --set run.dir=" +
                           (dir_ / name).string() + " " + sets,
                       dir_);
  }
  // Commands name the configs relative to the test's directory.
  static std::string here() { return "cd " + dir_.string() + " && "; }
  static std::string metrics(const std::string& name) { return (dir_ / name / "metrics.jsonl").string(); }

  static fs::path dir_;
  static CommandResult teacher_run_;
};
fs::path DistillCliTest::dir_;
CommandResult DistillCliTest::teacher_run_;

TEST_F(DistillCliTest, RunsLikeTrainWithEachTermInTheLogLine) {
  const CommandResult r = distill("one");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("strand distill student.yaml (1 rank)\n", 0), 0u) << r.out;
  EXPECT_CONTAINS(r.out, "step 4/4 | loss ");
  EXPECT_CONTAINS(r.out, " (ce ");
  EXPECT_CONTAINS(r.out, ", kd ");
  EXPECT_CONTAINS(r.out, ", hidden ");
  const auto loss = metric_by_step(metrics("one"), "loss"), ce = metric_by_step(metrics("one"), "loss_ce"),
             kd = metric_by_step(metrics("one"), "loss_kd"), hid = metric_by_step(metrics("one"), "loss_hidden");
  ASSERT_EQ(loss.size(), 4u);
  for (const auto& [step, l] : loss) EXPECT_NEAR(l, 0.3 * ce.at(step) + 0.7 * kd.at(step) + 0.5 * hid.at(step), 1e-6 * l) << step;
  // Run again: the run is finished, nothing trains (as train).
  const CommandResult again = distill("one");
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_CONTAINS(again.out, "already reached step 4");
}

TEST_F(DistillCliTest, TrainRefusesATeacherAndDistillNeedsOne) {
  const CommandResult train = run_command(here() + "OMP_NUM_THREADS=1 " + strand_binary() + " train student.yaml", dir_);
  EXPECT_NE(train.exit_code, 0);
  EXPECT_CONTAINS(one_error_line(train), "strand: error: student.yaml: key 'distill.teacher': is read by strand "
                                         "distill only");
  const CommandResult none = run_command(
      here() + "OMP_NUM_THREADS=1 " + strand_binary() + " distill teacher.yaml --set run.dir=" + (dir_ / "none").string(), dir_);
  EXPECT_NE(none.exit_code, 0);
  EXPECT_CONTAINS(one_error_line(none), "key 'distill.teacher': strand distill needs the teacher's checkpoint");
  const CommandResult missing = distill("missing", 1, "--set distill.teacher=" + (dir_ / "no.h5").string());
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_CONTAINS(one_error_line(missing), "no.h5");
}

TEST_F(DistillCliTest, SequenceParallelTermsEqualOneRank) {
  if (std::system("command -v mpiexec >/dev/null 2>&1") != 0) GTEST_SKIP() << "mpiexec not found (openmpi-bin)";
  const CommandResult one = distill("sp1");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  for (const std::string mode : {"ring", "ulysses"}) {
    const std::string name = "sp2_" + mode;
    const CommandResult two = distill(name, 2, "--set parallel.sp=2 --set parallel.sp_mode=" + mode);
    ASSERT_EQ(two.exit_code, 0) << two.err;
    for (const std::string key : {"loss", "loss_ce", "loss_kd", "loss_hidden", "grad_norm"}) {
      const auto a = metric_by_step(metrics("sp1"), key), b = metric_by_step(metrics(name), key);
      ASSERT_EQ(a.size(), 4u) << key;
      ASSERT_EQ(b.size(), 4u) << key;
      for (const auto& [step, v] : a)
        EXPECT_NEAR(b.at(step), v, kRelTol * std::abs(v)) << mode << " " << key << " step " << step;
    }
  }
}

// A distill run with the attention term on (`sets`): its term is logged and makes up the loss
// with the others, and every sequence split logs one process's loss, terms and gradient norm.
void check_attention_term(DistillCliTest& t, const std::string& name, const std::string& sets) {
  const CommandResult one = t.distill(name + "1", 1, sets);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_CONTAINS(one.out, ", att ");
  const std::string base = t.metrics(name + "1");
  const auto loss = metric_by_step(base, "loss"), ce = metric_by_step(base, "loss_ce"),
             kd = metric_by_step(base, "loss_kd"), hid = metric_by_step(base, "loss_hidden"),
             la = metric_by_step(base, "loss_att");
  ASSERT_EQ(la.size(), 4u);
  for (const auto& [step, l] : loss) {
    EXPECT_TRUE(std::isfinite(la.at(step)) && la.at(step) > 0) << step;
    EXPECT_NEAR(l, 0.3 * ce.at(step) + 0.7 * kd.at(step) + 0.5 * hid.at(step) + 0.7 * la.at(step), 1e-6 * l) << step;
  }
  if (std::system("command -v mpiexec >/dev/null 2>&1") != 0) GTEST_SKIP() << "mpiexec not found (openmpi-bin)";
  for (size_t i = 0; i < std::size(kSequenceSplits); ++i) {
    const auto& [ranks, split] = kSequenceSplits[i];
    const std::string run = name + "_split" + std::to_string(i);
    const CommandResult two = t.distill(run, ranks, sets + " " + split);
    ASSERT_EQ(two.exit_code, 0) << two.err;
    for (const std::string key : {"loss", "loss_att", "loss_kd", "grad_norm"}) {
      const auto a = metric_by_step(base, key), b = metric_by_step(t.metrics(run), key);
      ASSERT_EQ(b.size(), 4u) << key;
      for (const auto& [step, v] : a) EXPECT_NEAR(b.at(step), v, kRelTol * std::abs(v)) << split << " " << key << " step " << step;
    }
  }
}

TEST_F(DistillCliTest, AttentionTransferIsLoggedInTheLossAndEqualOverSequenceRanks) {
  check_attention_term(*this, "att", "--set distill.attention_weight=0.7");
}

TEST_F(DistillCliTest, AFewerHeadedStudentsSampledAttentionTermIsLoggedAndEqualOverSequenceRanks) {
  // 2 student heads against the teacher's 4 (head-averaged), 16 of the 64 rows drawn per step.
  check_attention_term(*this, "avg",
                       "--set distill.attention_weight=0.7 --set model.n_head=2 --set model.n_kv_head=2 "
                       "--set distill.attention_rows=16");
}

}  // namespace
}  // namespace strand
