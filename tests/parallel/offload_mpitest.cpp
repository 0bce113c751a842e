// memory.offload: disk under sequence parallelism: at sp = world size, ring and Ulysses, the
// trainer's gradient pass with every saved activation spilled to each rank's file gives the same
// loss and gradients, bit for bit, as the same job with activations in memory; so does offloading
// with gradient checkpointing (full and selective) on as well, and so does spilling the gradients
// (memory.offload_gradients) at sp = 2 ring and dp = 2.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "data/loader.h"
#include "framework/config/config.h"
#include "framework/train/components.h"
#include "framework/train/trainer.h"
#include "models/model.h"
#include "parallel/comm/group.h"
#include "support/temp_dir.h"
#include "support/trainer_pass.h"

namespace strand::parallel {
namespace {

struct PassResult {
  double loss_sum = 0;
  std::vector<std::vector<double>> grads;
};

PassResult gradient_pass(const train::Config& config) {
  // One replica (dp = 1): every rank reads replica 0's rows, its sequence shard of them.
  const testing::TrainerPass run = testing::trainer_gradient_pass(config, world(), 2);
  PassResult r;
  r.loss_sum = run.pass.loss_sum;
  for (const auto& [name, p] : run.model->named_parameters()) r.grads.push_back(p.grad().to_vector());
  return r;
}

TEST(OffloadParallel, DiskOffloadIsBitwiseUnderRingAndUlysses) {
  const int sp = world().size();
  testing::TempDir dir("strand_offload_mpi_" + std::to_string(world().rank()));
  const std::string path = dir.file("o.yaml");
  std::ofstream(path) << "model: {vocab_size: 16, n_layer: 2, n_head: 4, d_model: 32, max_seq_len: 64, dropout: 0.1}\n"
                         "data: {format: synthetic, task: copy, seq_len: 64, batch_size: 2}\n";
  for (const char* mode : {"ring", "ulysses"}) {
    const std::vector<std::string> common = {"parallel.sp=" + std::to_string(sp), std::string("parallel.sp_mode=") + mode};
    std::vector<std::string> disk = common;
    disk.push_back("memory.offload=disk");
    disk.push_back("memory.offload_min_bytes=256");
    // One directory for every rank (configs must agree); the files are per rank and process.
    disk.push_back("memory.offload_dir=/tmp/strand_offload_mpitest");
    const PassResult plain = gradient_pass(train::load_config(path, common));
    const PassResult spilled = gradient_pass(train::load_config(path, disk));
    EXPECT_EQ(spilled.loss_sum, plain.loss_sum) << mode;
    ASSERT_EQ(spilled.grads.size(), plain.grads.size());
    for (size_t i = 0; i < plain.grads.size(); ++i) EXPECT_EQ(spilled.grads[i], plain.grads[i]) << mode << " parameter " << i;
  }
}

TEST(OffloadParallel, CheckpointingWithDiskOffloadIsBitwiseUnderRingAndUlysses) {
  const int sp = world().size();
  testing::TempDir dir("strand_offload_ckpt_mpi_" + std::to_string(world().rank()));
  const std::string path = dir.file("o.yaml");
  std::ofstream(path) << "model: {vocab_size: 16, n_layer: 2, n_head: 4, d_model: 32, max_seq_len: 64, dropout: 0.1}\n"
                         "data: {format: synthetic, task: copy, seq_len: 64, batch_size: 2}\n";
  for (const char* mode : {"ring", "ulysses"}) {
    const std::vector<std::string> common = {"parallel.sp=" + std::to_string(sp), std::string("parallel.sp_mode=") + mode};
    const PassResult plain = gradient_pass(train::load_config(path, common));
    for (const char* checkpointing : {"full", "selective"}) {
      std::vector<std::string> both = common;
      both.push_back(std::string("memory.checkpointing=") + checkpointing);
      both.push_back("memory.offload=disk");
      both.push_back("memory.offload_min_bytes=256");
      both.push_back("memory.offload_dir=/tmp/strand_offload_mpitest");
      const PassResult spilled = gradient_pass(train::load_config(path, both));
      EXPECT_EQ(spilled.loss_sum, plain.loss_sum) << mode << " " << checkpointing;
      ASSERT_EQ(spilled.grads.size(), plain.grads.size());
      for (size_t i = 0; i < plain.grads.size(); ++i)
        EXPECT_EQ(spilled.grads[i], plain.grads[i]) << mode << " " << checkpointing << " parameter " << i;
    }
  }
}

// memory.offload_gradients: the gradients go to each rank's spill file during the backward and
// come back before the all-reduce (which then waits for the backward's end instead of
// overlapping it); at sp = world size (ring) and at dp = world size the pass is the plain
// job's bit for bit, two micro-batches each.
TEST(OffloadParallel, OffloadedGradientsAreBitwiseUnderRingAndDataParallel) {
  const int n = world().size();
  testing::TempDir dir("strand_offload_grads_mpi_" + std::to_string(world().rank()));
  const std::string path = dir.file("o.yaml");
  std::ofstream(path) << "model: {vocab_size: 16, n_layer: 2, n_head: 4, d_model: 32, max_seq_len: 64, dropout: 0.1}\n"
                         "data: {format: synthetic, task: copy, seq_len: 64, batch_size: 2}\n";
  for (const std::string layout : {"parallel.sp=", "parallel.dp="}) {
    const std::vector<std::string> common = {layout + std::to_string(n)};
    std::vector<std::string> spilled_keys = common;
    spilled_keys.push_back("memory.offload=disk");
    spilled_keys.push_back("memory.offload_gradients=true");
    spilled_keys.push_back("memory.offload_dir=/tmp/strand_offload_mpitest");
    const testing::TrainerPass plain = testing::trainer_gradient_pass(train::load_config(path, common), world(), 2);
    const testing::TrainerPass spilled =
        testing::trainer_gradient_pass(train::load_config(path, spilled_keys), world(), 2);
    EXPECT_EQ(spilled.pass.loss_sum, plain.pass.loss_sum) << layout;
    const auto pa = plain.model->named_parameters(), pb = spilled.model->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i)
      EXPECT_EQ(pb[i].second.grad().to_vector(), pa[i].second.grad().to_vector()) << layout << " " << pa[i].first;
  }
}

}  // namespace
}  // namespace strand::parallel
