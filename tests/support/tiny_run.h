// The fixture of the in-process trainer tests: a fresh directory per test and the tiny run
// they train (a 2-layer GPT on associative recall with dropout, warmup, cosine decay, gradient
// accumulation and evaluation), with its checkpoint and metrics paths.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "framework/io/checkpoint_dir.h"
#include "framework/train/trainer.h"
#include "models/model.h"

namespace strand::train {

class TinyRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = std::filesystem::temp_directory_path() /
            ("strand_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // Dropout (so the RNG state matters), warmup and cosine decay (so the step matters),
  // gradient accumulation, and evaluation every 5 steps.
  Config tiny(const std::string& run, const std::vector<std::string>& overrides = {}) const {
    const std::string yaml =
        "run: {name: " + run + ", dir: " + (root_ / run).string() + ", seed: 7}\n"
        "model: {arch: gpt, vocab_size: 32, n_layer: 2, n_head: 2, d_model: 16, max_seq_len: 32, dropout: 0.1}\n"
        "data: {format: synthetic, task: assoc_recall, seq_len: 32, batch_size: 2}\n"
        "train: {steps: 20, lr: 0.003, warmup_steps: 3, grad_accum: 2, log_every: 1, eval_every: 5, eval_batches: 2}\n"
        "checkpoint: {every: 10, keep: 0}\n";
    return parse_config(yaml, run + ".yaml", overrides);
  }
  static TrainerOptions quiet() {
    TrainerOptions o;
    o.print = false;
    return o;
  }
  static TrainResult train(const Config& config, TrainerOptions options = quiet()) {
    return make_trainer(config, models::build_model(config), nullptr, std::move(options)).run();
  }
  std::string ckpt(const std::string& run, int64_t step) const {
    return io::CheckpointDir((root_ / run / "checkpoints").string(), 0).path_for_step(step);
  }
  std::string metrics(const std::string& run) const { return (root_ / run / "metrics.jsonl").string(); }

  std::filesystem::path root_;
};

}  // namespace strand::train
