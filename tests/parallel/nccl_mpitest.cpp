// The NCCL group under mpiexec, one GPU per rank: collectives and the ring exchange on device
// tensors against locally computed values. Skips on every rank unless every rank has its GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "framework/core/device_runtime.h"
#include "framework/core/error.h"
#include "parallel/comm/backends.h"
#include "parallel/comm/group.h"
#include "parallel/comm/launcher.h"

namespace strand::parallel {
namespace {

// Rank-dependent float32 data, the same bits on every rank (one division, no FMA contraction).
double value(int rank, int64_t i) {
  return static_cast<float>(static_cast<double>((i * 7919 + rank * 104729) % 2001 - 1000) / (7.0 * (rank + 1)));
}

std::vector<double> rank_values(int rank, int64_t n, int64_t offset = 0) {
  std::vector<double> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(value(rank, offset + i));
  return v;
}

class Nccl : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Every rank takes the same decision, or the group's construction would hang.
    int64_t usable = built_with_nccl() && detect_launch().local_rank < device_count(DeviceType::CUDA) ? 1 : 0;
    world().all_reduce(std::span<int64_t>(&usable, 1), ReduceOp::Min);
    if (usable) group_ = make_nccl_group(world()).release();
  }
  static void TearDownTestSuite() {
    delete group_;
    group_ = nullptr;
  }
  void SetUp() override {
    if (group_ == nullptr) GTEST_SKIP() << "needs NCCL and one GPU per rank";
  }
  Device gpu() const { return Device::cuda(detect_launch().local_rank); }
  Tensor on_gpu(const std::vector<double>& v, const Shape& shape) const {
    return Tensor::from_vector(v, shape, DType::F32).copy_as(DType::F32, gpu());
  }
  static Group* group_;
};
Group* Nccl::group_ = nullptr;

TEST_F(Nccl, GroupMirrorsTheBootstrap) {
  EXPECT_EQ(group_->backend(), "nccl");
  EXPECT_EQ(group_->rank(), world().rank());
  EXPECT_EQ(group_->size(), world().size());
}

TEST_F(Nccl, AllReduceSumOnDeviceAndStagedHostTensors) {
  const int p = group_->size();
  std::vector<double> want(8, 0.0), bound(8, 0.0);
  for (int r = 0; r < p; ++r)
    for (int i = 0; i < 8; ++i) {
      want[i] += value(r, i);
      bound[i] += std::abs(value(r, i));
    }
  Tensor device_x = on_gpu(rank_values(group_->rank(), 8), {8});
  group_->all_reduce(device_x);
  Tensor host_x = Tensor::from_vector(rank_values(group_->rank(), 8), {8});
  group_->all_reduce(host_x);
  const double eps = std::numeric_limits<float>::epsilon();
  const std::vector<double> got_device = device_x.to_vector(), got_host = host_x.to_vector();
  for (int i = 0; i < 8; ++i) {
    EXPECT_NEAR(got_device[i], want[i], eps * p * bound[i]);
    EXPECT_NEAR(got_host[i], want[i], eps * p * bound[i]);
  }
  std::vector<int64_t> count{group_->rank() + 1};
  group_->all_reduce(std::span<int64_t>(count), ReduceOp::Max);
  EXPECT_EQ(count[0], p);
}

TEST_F(Nccl, GatherScatterAllToAllBroadcast) {
  const int p = group_->size(), me = group_->rank();
  Tensor gathered = Tensor::zeros({2 * p}, DType::F32, gpu());
  group_->all_gather(on_gpu(rank_values(me, 2), {2}), gathered);
  std::vector<double> want;
  for (int r = 0; r < p; ++r)
    for (double v : rank_values(r, 2)) want.push_back(v);
  EXPECT_EQ(gathered.to_vector(), want);

  Tensor kept = Tensor::zeros({2}, DType::F32, gpu());
  group_->reduce_scatter(on_gpu(rank_values(me, 2 * p), {2 * p}), kept, ReduceOp::Max);
  const std::vector<double> got = kept.to_vector();
  for (int i = 0; i < 2; ++i) {
    double m = value(0, 2 * me + i);
    for (int r = 1; r < p; ++r) m = std::max(m, value(r, 2 * me + i));
    EXPECT_EQ(got[i], m);
  }

  std::vector<double> blocks;
  for (int j = 0; j < p; ++j) blocks.push_back(me * 100 + j);
  Tensor routed = Tensor::zeros({p}, DType::F32, gpu());
  group_->all_to_all(on_gpu(blocks, {p}), routed);
  const std::vector<double> r = routed.to_vector();
  for (int j = 0; j < p; ++j) EXPECT_EQ(r[j], j * 100 + me);

  Tensor b = on_gpu(rank_values(me, 3), {3});
  group_->broadcast(b, p - 1);
  EXPECT_EQ(b.to_vector(), rank_values(p - 1, 3));
  group_->barrier();
}

TEST_F(Nccl, RingExchangeLaunchesPairedTransfersTogether) {
  const int p = group_->size(), me = group_->rank();
  const int next = (me + 1) % p, prev = (me + p - 1) % p;
  Tensor in = Tensor::zeros({4}, DType::F32, gpu());
  auto send = group_->isend(on_gpu(rank_values(me, 4), {4}), next, 0);
  auto recv = group_->irecv(in, prev, 0);
  recv->wait();
  send->wait();
  EXPECT_EQ(in.to_vector(), rank_values(prev, 4));
}

TEST_F(Nccl, SplitMakesNcclSubgroups) {
  const int me = group_->rank();
  auto part = group_->split(me % 2, me);
  ASSERT_NE(part, nullptr);
  EXPECT_EQ(part->backend(), "nccl");
  std::vector<int64_t> sum{me};
  part->all_reduce(std::span<int64_t>(sum));
  int64_t want = 0;
  for (int r = me % 2; r < group_->size(); r += 2) want += r;
  EXPECT_EQ(sum[0], want);
}

}  // namespace
}  // namespace strand::parallel
