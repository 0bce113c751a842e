// memory.offload: disk: the same loss and gradients bit for bit as keeping activations in memory,
// spill files written and gone after the run and after an error, a dead run's files removed, a
// full disk an error (never a wrong gradient), small tensors kept, peak tensor bytes lower, and all of
// it bitwise with gradient checkpointing (full and selective) on as well; and
// memory.offload_gradients: gradients spilled as soon as they are final in the backward and read
// back when it ends give the plain run's gradients and AdamW steps bit for bit (tied embeddings,
// checkpointing, two micro-batches), the pass's peak falls by the finished blocks' gradients, and
// the key is refused without disk offload.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <optional>

#include "framework/autograd/engine.h"
#include "framework/autograd/saved_tensor.h"
#include "framework/core/allocator.h"
#include "framework/ops/elementwise.h"
#include "framework/train/offload.h"
#include "framework/train/trainer.h"
#include "models/gpt/gpt.h"
#include "models/transformer.h"
#include "support/temp_dir.h"

namespace strand::train {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

int spill_files(const fs::path& dir) {
  return static_cast<int>(strand::testing::files_starting_with(dir, "spill-").size());
}

Config tiny(const fs::path& root, const std::string& offload, const std::vector<std::string>& more = {}) {
  const std::string yaml =
      "run: {name: o, dir: " + (root / "run").string() + ", seed: 7}\n"
      "model: {arch: gpt, vocab_size: 32, n_layer: 2, n_head: 2, d_model: 32, max_seq_len: 64, dropout: 0.1}\n"
      "data: {format: synthetic, task: assoc_recall, seq_len: 64, batch_size: 2}\n"
      "train: {steps: 3, lr: 0.003, grad_accum: 2, log_every: 1, eval_every: 0}\n"
      "memory: {offload: " + offload + ", offload_min_bytes: 4096}\n";
  std::vector<std::string> overrides = more;
  return parse_config(yaml, "o.yaml", overrides);
}

TrainerOptions quiet() {
  TrainerOptions o;
  o.print = false;
  o.write_files = false;
  return o;
}

TEST(Offload, DiskOffloadGivesTheSameLossAndGradientsBitForBit) {
  TempDir root("offload");
  const Config plain_cfg = tiny(root.path, "none"), disk_cfg = tiny(root.path, "disk");
  Trainer plain = make_trainer(plain_cfg, models::build_model(plain_cfg), nullptr, quiet());
  Trainer disk = make_trainer(disk_cfg, models::build_model(disk_cfg), nullptr, quiet());
  // Gradients of one pass (two micro-batches), then three optimizer steps: losses, norms and
  // parameters stay bitwise equal.
  const auto loader_a = data::make_loader(data_spec_of(plain_cfg, 0, 1), data::Split::val);
  const auto loader_b = data::make_loader(data_spec_of(disk_cfg, 0, 1), data::Split::val);
  const GradientPass ga = plain.forward_backward(*loader_a, 2), gb = disk.forward_backward(*loader_b, 2);
  EXPECT_EQ(ga.loss_sum, gb.loss_sum);
  const auto pa = plain.model().named_parameters(), pb = disk.model().named_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    ASSERT_EQ(pa[i].second.grad().to_vector(), pb[i].second.grad().to_vector()) << pa[i].first;
  for (int step = 0; step < 3; ++step) {
    const StepReport a = plain.train_step(), b = disk.train_step();
    EXPECT_EQ(a.loss, b.loss) << "step " << step;
    EXPECT_EQ(a.grad_norm, b.grad_norm) << "step " << step;
    for (size_t i = 0; i < pa.size(); ++i)
      ASSERT_EQ(pa[i].second.to_vector(), pb[i].second.to_vector()) << pa[i].first << " step " << step;
  }
  // The spill file was used; it is still there while the trainer lives, empty between steps.
  EXPECT_EQ(spill_files(disk_cfg.memory.offload_dir), 1);
}

// Checkpointing (full and selective) with disk offload: the hooks see the checkpoint nodes'
// saved block inputs (full) or the tensors a selective block does not turn into recipes, and the
// result is still the plain run's, bit for bit: the gradient pass and three AdamW steps.
TEST(Offload, CheckpointingWithDiskOffloadGivesTheSameLossAndGradientsBitForBit) {
  TempDir root("offload");
  const Config plain_cfg = tiny(root.path, "none");
  for (const std::string mode : {"full", "selective"}) {
    const Config both_cfg = tiny(root.path, "disk", {"memory.checkpointing=" + mode});
    Trainer plain = make_trainer(plain_cfg, models::build_model(plain_cfg), nullptr, quiet());
    Trainer both = make_trainer(both_cfg, models::build_model(both_cfg), nullptr, quiet());
    const auto loader_a = data::make_loader(data_spec_of(plain_cfg, 0, 1), data::Split::val);
    const auto loader_b = data::make_loader(data_spec_of(both_cfg, 0, 1), data::Split::val);
    const GradientPass ga = plain.forward_backward(*loader_a, 2), gb = both.forward_backward(*loader_b, 2);
    EXPECT_EQ(ga.loss_sum, gb.loss_sum) << mode;
    const auto pa = plain.model().named_parameters(), pb = both.model().named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i)
      ASSERT_EQ(pa[i].second.grad().to_vector(), pb[i].second.grad().to_vector()) << mode << " " << pa[i].first;
    for (int step = 0; step < 3; ++step) {
      const StepReport a = plain.train_step(), b = both.train_step();
      EXPECT_EQ(a.loss, b.loss) << mode << " step " << step;
      EXPECT_EQ(a.grad_norm, b.grad_norm) << mode << " step " << step;
      for (size_t i = 0; i < pa.size(); ++i)
        ASSERT_EQ(pa[i].second.to_vector(), pb[i].second.to_vector()) << mode << " " << pa[i].first << " step " << step;
    }
  }
}

// A causal GPT of `layers` blocks (vocabulary 64, width 64, 2 heads), the offload passes' model.
config::ModelConfig small_gpt(int64_t layers) {
  config::ModelConfig c;
  c.vocab_size = 64;
  c.n_layer = layers;
  c.n_head = 2;
  c.n_kv_head = 2;
  c.d_model = 64;
  c.d_ff = 256;
  c.max_seq_len = 256;
  c.attention.pattern = config::AttentionPattern::Causal;
  return c;
}

// Two rows of 256 fixed tokens with targets equal to the inputs: a pass to measure, not a task.
data::Batch token_batch() {
  data::Batch batch;
  std::vector<double> ids;
  for (int i = 0; i < 2 * 256; ++i) ids.push_back((i * 7) % 64);
  batch.inputs = Tensor::from_vector(ids, {2, 256}, DType::I32);
  batch.targets = batch.inputs;
  return batch;
}

// One GPT forward + backward under the offload hooks; returns bytes spilled and the peak.
struct Pass {
  int64_t spilled = 0, peak = 0;
  std::vector<std::vector<double>> grads;
};
Pass gpt_pass(DiskOffload* offload, config::Checkpointing checkpointing = config::Checkpointing::None) {
  models::Gpt gpt(small_gpt(2), 3);
  config::MemoryConfig memory_config;
  memory_config.checkpointing = checkpointing;
  models::set_checkpointing(gpt, memory_config);
  const data::Batch batch = token_batch();
  const int64_t base = memory::stats(Device::cpu()).current_bytes;
  memory::reset_peak(Device::cpu());
  Pass pass;
  {
    std::optional<autograd::SavedTensorHooksGuard> guard;
    if (offload) guard.emplace(offload->hooks());
    models::LossOutput out = gpt.forward(batch);
    guard.reset();
    if (offload) pass.spilled = offload->bytes_written();
    out.loss_sum.backward();
  }
  pass.peak = memory::stats(Device::cpu()).peak_bytes - base;
  for (const auto& [name, p] : gpt.named_parameters()) pass.grads.push_back(p.grad().to_vector());
  if (offload) offload->reset();
  return pass;
}

TEST(Offload, SmallTensorsStayInMemory) {
  TempDir root("offload");
  DiskOffload all({root.path.string(), 0, 0}), none({root.path.string(), 1, int64_t{1} << 40});
  const Pass a = gpt_pass(&all), b = gpt_pass(&none), plain = gpt_pass(nullptr);
  EXPECT_GT(a.spilled, 0);
  EXPECT_EQ(b.spilled, 0);
  EXPECT_EQ(a.grads, plain.grads);
  EXPECT_EQ(b.grads, plain.grads);
}

TEST(Offload, CheckpointedBlocksSpillWhatTheyKeepAndGiveTheSameGradients) {
  TempDir root("offload");
  const Pass plain = gpt_pass(nullptr);
  for (const config::Checkpointing mode : {config::Checkpointing::Full, config::Checkpointing::Selective}) {
    DiskOffload offload({root.path.string(), 0, 0});
    const Pass unspilled = gpt_pass(nullptr, mode), spilled = gpt_pass(&offload, mode);
    // Full: the block inputs [2, 256, 64] (128 KiB each) are what the checkpoint nodes save. (The
    // peak of this 2-block model is the backward's rerun of one block, offloaded or not; the
    // peaks at gpt2-124m are in docs/benchmarks.md.)
    EXPECT_GE(spilled.spilled, 2 * 2 * 256 * 64 * 4) << static_cast<int>(mode);
    EXPECT_EQ(spilled.grads, plain.grads) << static_cast<int>(mode);
    EXPECT_EQ(unspilled.grads, plain.grads) << static_cast<int>(mode);
  }
}

TEST(Offload, PeakTensorBytesDropWithDiskOffload) {
  TempDir root("offload");
  DiskOffload offload({root.path.string(), 0, 64 << 10, 256 << 10});
  const Pass plain = gpt_pass(nullptr), disk = gpt_pass(&offload);
  EXPECT_EQ(disk.grads, plain.grads);
  std::printf("peak tensor bytes: %lld with offload, %lld without\n", static_cast<long long>(disk.peak), static_cast<long long>(plain.peak));
  EXPECT_LT(disk.peak, plain.peak * 3 / 4) << "peak with offload " << disk.peak << " bytes, without " << plain.peak;
}

TEST(Offload, SpillFilesAreGoneAfterTheRunAndAfterAnError) {
  TempDir root("offload");
  {
    const Config cfg = tiny(root.path, "disk");
    Trainer t = make_trainer(cfg, models::build_model(cfg), nullptr, quiet());
    t.train_step();
    EXPECT_EQ(spill_files(cfg.memory.offload_dir), 1);
  }
  EXPECT_EQ(spill_files(root.path / "run" / "offload"), 0);
  // An error in the middle of an offloaded forward unwinds through the offload's destructor.
  const fs::path dir = root.path / "err";
  try {
    DiskOffload offload({dir.string(), 0, 0});
    autograd::SavedTensorHooksGuard guard(offload.hooks());
    Tensor x = Tensor::randn({64, 64}, 1).set_requires_grad(true);
    Tensor y = ops::mul(x, x);
    EXPECT_EQ(spill_files(dir), 1);
    throw ValueError("boom");
  } catch (const ValueError&) {
  }
  EXPECT_EQ(spill_files(dir), 0);
}

TEST(Offload, SpillFilesOfADeadProcessAreRemovedAndLiveOnesKept) {
  TempDir root("offload");
  const std::string dir = root.path.string();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    DiskOffload offload({dir, 1, 0});
    ::kill(::getpid(), SIGKILL);  // no destructor runs
    _exit(3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(spill_files(dir), 1);
  DiskOffload live({dir, 0, 0});
  EXPECT_EQ(remove_stale_spill_files(dir), 1);
  EXPECT_EQ(spill_files(dir), 1);  // the live one
  EXPECT_TRUE(fs::exists(live.path()));
}

TEST(Offload, AFullDiskIsAnErrorNotAWrongGradient) {
  // A file size limit makes the spill writes fail as a full disk would (EFBIG instead of ENOSPC).
  TempDir root("offload");
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
  std::string what;
  {
    DiskOffload offload({root.path.string(), 0, 0});
    rlimit limit{64 << 10, saved.rlim_max};
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
    try {
      gpt_pass(&offload);
    } catch (const Error& e) {
      what = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
  }
  ::signal(SIGXFSZ, old_handler);
  EXPECT_NE(what.find("memory.offload: cannot write the spill file"), std::string::npos)
      << "no error (or another): '" << what << "'; a gradient from a partial file would be wrong";
  EXPECT_EQ(spill_files(root.path), 0);
}

TEST(Offload, HostIsRefusedOnACpuRun) {
  TempDir root("offload");
  try {
    tiny(root.path, "host");
    FAIL() << "host accepted";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("memory.offload"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("use disk"), std::string::npos) << e.what();
  }
}

// Against the plain run (no offload at all): one gradient pass of two micro-batches, then two
// AdamW steps of two micro-batches each. The embedding table is tied to the head (used twice).
TEST(Offload, OffloadedGradientsGiveTheSameGradientsAndStepsBitForBit) {
  TempDir root("offload_grads");
  const Config plain_cfg = tiny(root.path, "none", {});
  ASSERT_TRUE(plain_cfg.model.tie_embeddings);
  for (const std::string checkpointing : {"none", "full", "selective"}) {
    const Config cfg = tiny(root.path, "none", {"memory.offload=disk", "memory.offload_gradients=true",
                                        "memory.checkpointing=" + checkpointing});
    Trainer plain = make_trainer(plain_cfg, models::build_model(plain_cfg), nullptr, quiet());
    Trainer spilled = make_trainer(cfg, models::build_model(cfg), nullptr, quiet());
    const auto loader_a = data::make_loader(data_spec_of(plain_cfg, 0, 1), data::Split::val);
    const auto loader_b = data::make_loader(data_spec_of(cfg, 0, 1), data::Split::val);
    const GradientPass ga = plain.forward_backward(*loader_a, 2), gb = spilled.forward_backward(*loader_b, 2);
    EXPECT_EQ(ga.loss_sum, gb.loss_sum) << checkpointing;
    const auto pa = plain.model().named_parameters(), pb = spilled.model().named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      ASSERT_TRUE(pb[i].second.grad().defined()) << checkpointing << " " << pb[i].first << " did not come back";
      ASSERT_EQ(pa[i].second.grad().to_vector(), pb[i].second.grad().to_vector()) << checkpointing << " " << pa[i].first;
    }
    for (int step = 0; step < 2; ++step) {
      const StepReport a = plain.train_step(), b = spilled.train_step();
      EXPECT_EQ(a.loss, b.loss) << checkpointing << " step " << step;
      EXPECT_EQ(a.grad_norm, b.grad_norm) << checkpointing << " step " << step;
      for (size_t i = 0; i < pa.size(); ++i)
        ASSERT_EQ(pa[i].second.to_vector(), pb[i].second.to_vector()) << checkpointing << " " << pa[i].first;
    }
    EXPECT_EQ(spill_files(cfg.memory.offload_dir), 1);  // the trainer's, while it lives
  }
  EXPECT_EQ(spill_files(root.path / "run" / "offload"), 0);
}

struct SpillPass {
  int64_t peak = 0, gradient_bytes = 0;
  std::vector<std::pair<std::string, std::vector<double>>> grads;
};

// One forward + backward of a 6-block GPT in the layout of the gpt2-124m target in miniature:
// full checkpointing (half-blocks) with every saved tensor on disk, so each block's backward
// needs about the same working memory and the gradients of the finished blocks pile up beside
// it. spill: the gradients go to the file as well (GradientSpill around the backward).
SpillPass six_block_pass(DiskOffload& offload, bool spill) {
  models::Gpt gpt(small_gpt(6), 3);
  config::MemoryConfig memory_config;
  memory_config.checkpointing = config::Checkpointing::Full;
  memory_config.offload = config::Offload::Disk;
  models::set_checkpointing(gpt, memory_config);
  std::vector<Tensor> params;
  for (const auto& [name, p] : gpt.named_parameters()) params.push_back(p);
  const data::Batch batch = token_batch();
  std::vector<const void*> keep;
  for (const Tensor& p : params) keep.push_back(p.storage().get());
  offload.keep_storages(keep);
  const int64_t base = memory::stats(Device::cpu()).current_bytes;
  memory::reset_peak(Device::cpu());
  SpillPass pass;
  {
    std::optional<autograd::SavedTensorHooksGuard> guard(offload.hooks());
    models::LossOutput out = gpt.forward(batch);
    guard.reset();
    const GradientSpill gradients(spill ? &offload : nullptr, params);
    out.loss_sum.backward();
    pass.gradient_bytes = offload.gradient_bytes_written();
    gradients.restore();
  }
  pass.peak = memory::stats(Device::cpu()).peak_bytes - base;
  for (const auto& [name, p] : gpt.named_parameters()) pass.grads.emplace_back(name, p.grad().to_vector());
  offload.reset();
  return pass;
}

TEST(Offload, OffloadedGradientsLowerTheGradientPassPeak) {
  TempDir root("offload_grads");
  // Window 0: each write completes before the compute goes on, so what is in memory at any
  // moment does not depend on how fast the disk is.
  DiskOffload offload({root.path.string(), 0, 0, 0});
  const SpillPass plain = six_block_pass(offload, false), spilled = six_block_pass(offload, true);
  EXPECT_EQ(plain.gradient_bytes, 0);
  ASSERT_EQ(spilled.grads, plain.grads);
  int64_t all = 0, blocks_1_to_5 = 0;
  for (const auto& [name, g] : plain.grads) {
    const int64_t bytes = static_cast<int64_t>(g.size()) * 4;
    all += bytes;
    if (name.find(".h.") != std::string::npos && name.find(".h.0.") == std::string::npos) blocks_1_to_5 += bytes;
  }
  EXPECT_EQ(spilled.gradient_bytes, all);  // every gradient went to disk once (wte's summed first)
  std::printf("gradient-pass peak: %lld bytes plain, %lld spilled; gradients %lld bytes, of blocks 1-5 %lld\n",
              static_cast<long long>(plain.peak), static_cast<long long>(spilled.peak), static_cast<long long>(all),
              static_cast<long long>(blocks_1_to_5));
  // The plain pass peaks in block 0's backward (the last), beside the gradients of blocks 1 to 5
  // (and of the head); spilled, those are on disk then, and when they all come back at the end
  // the activations are gone. The peak is lower by at least those five blocks' gradients less
  // one block's (the one whose writes may still be in the window when the peak falls).
  ASSERT_GT(blocks_1_to_5, 0);
  EXPECT_LE(spilled.peak, plain.peak - blocks_1_to_5 * 4 / 5)
      << "plain " << plain.peak << ", spilled " << spilled.peak << ", blocks 1-5's gradients " << blocks_1_to_5;
}

TEST(Offload, OffloadedGradientsNeedDiskOffload) {
  TempDir root("offload_grads");
  try {
    tiny(root.path, "none", {"memory.offload_gradients=true"});
    FAIL() << "offload_gradients accepted without disk offload";
  } catch (const config::ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("key 'memory.offload_gradients': "), std::string::npos) << what;
    EXPECT_NE(what.find("memory.offload: disk"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  EXPECT_NO_THROW(tiny(root.path, "none", {"memory.offload=disk", "memory.offload_gradients=true"}));
  EXPECT_NO_THROW(tiny(root.path, "none", {"memory.offload_gradients=false"}));
}

}  // namespace
}  // namespace strand::train
