// The single-process group (no MPI): world() without a launcher, collectives as identities,
// messages to itself matched like MPI, the argument checks, and abort's exit.
#include <gtest/gtest.h>

#include <vector>

#include "framework/core/device_runtime.h"
#include "framework/core/error.h"
#include "parallel/comm/backends.h"
#include "parallel/comm/group.h"

namespace strand::parallel {
namespace {

// Distinct values of every dtype (int32 gets whole numbers).
Tensor sample(const Shape& shape, DType t = DType::F32, int seed = 7) {
  std::vector<double> v(static_cast<size_t>(numel_of(shape)));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<double>((static_cast<int>(i) * 37 + seed) % 11) - 5.0 + (t == DType::I32 ? 0.0 : 0.25);
  return Tensor::from_vector(v, shape, t);
}

TEST(LocalGroup, WorldWithoutLauncherIsLocal) {
  Group& w = world();
  EXPECT_EQ(w.backend(), "local");
  EXPECT_EQ(w.rank(), 0);
  EXPECT_EQ(w.size(), 1);
  EXPECT_EQ(&w, &world());
}

TEST(LocalGroup, CollectivesAreIdentities) {
  auto g = make_local_group();
  for (DType t : {DType::F32, DType::F64, DType::I32}) {
    const Tensor x = sample({3, 4}, t);
    const std::vector<double> before = x.to_vector();
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
      Tensor y = x.copy_as(t, Device::cpu());
      g->all_reduce(y, op);
      EXPECT_EQ(y.to_vector(), before);
      g->iall_reduce(y, op)->wait();
      EXPECT_EQ(y.to_vector(), before);
    }
    Tensor gathered = Tensor::zeros({3, 4}, t), scattered = Tensor::zeros({3, 4}, t),
           routed = Tensor::zeros({3, 4}, t);
    g->all_gather(x, gathered);
    g->reduce_scatter(x, scattered);
    g->all_to_all(x, routed);
    EXPECT_EQ(gathered.to_vector(), before);
    EXPECT_EQ(scattered.to_vector(), before);
    EXPECT_EQ(routed.to_vector(), before);
    Tensor b = x.copy_as(t, Device::cpu());
    g->broadcast(b, 0);
    EXPECT_EQ(b.to_vector(), before);
  }
  std::vector<double> d{1.5, -2.0};
  std::vector<int64_t> n{int64_t{1} << 40, -3};
  g->all_reduce(std::span<double>(d));
  g->all_reduce(std::span<int64_t>(n), ReduceOp::Max);
  EXPECT_EQ(d, (std::vector<double>{1.5, -2.0}));
  EXPECT_EQ(n, (std::vector<int64_t>{int64_t{1} << 40, -3}));
  g->barrier();
}

TEST(LocalGroup, RingExchangeWithItself) {
  // The ring code path at P = 1: next and prev are both rank 0; receives posted before sends.
  auto g = make_local_group();
  const Tensor k = sample({2, 3}, DType::F32, 1), v = sample({4}, DType::F64, 2);
  Tensor k_in = Tensor::zeros({2, 3}), v_in = Tensor::zeros({4}, DType::F64);
  auto recv_v = g->irecv(v_in, 0, 2);
  auto recv_k = g->irecv(k_in, 0, 1);
  EXPECT_FALSE(recv_k->test());
  auto send_k = g->isend(k, 0, 1);
  auto send_v = g->isend(v, 0, 2);
  recv_k->wait();
  recv_v->wait();
  send_k->wait();
  send_v->wait();
  EXPECT_EQ(k_in.to_vector(), k.to_vector());
  EXPECT_EQ(v_in.to_vector(), v.to_vector());
}

TEST(LocalGroup, MessagesKeepTheirOrderAndSnapshot) {
  auto g = make_local_group();
  Tensor x = Tensor::full({2}, 1.0);
  g->isend(x, 0, 5)->wait();
  x.fill_(2.0);  // the first message was taken when sent
  g->isend(x, 0, 5)->wait();
  Tensor first = Tensor::zeros({2}), second = Tensor::zeros({2});
  g->irecv(first, 0, 5)->wait();
  g->irecv(second, 0, 5)->wait();
  EXPECT_EQ(first.to_vector(), (std::vector<double>{1.0, 1.0}));
  EXPECT_EQ(second.to_vector(), (std::vector<double>{2.0, 2.0}));
}

TEST(LocalGroup, ReceiveWithoutSendIsAnError) {
  auto g = make_local_group();
  Tensor in = Tensor::zeros({3});
  auto request = g->irecv(in, 0, 9);
  try {
    request->wait();
    ADD_FAILURE() << "a receive with no message completed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("local irecv: no message with tag 9"), std::string::npos) << e.what();
  }
  g->isend(Tensor::zeros({4}), 0, 3);
  Tensor small = Tensor::zeros({3});
  EXPECT_THROW(g->irecv(small, 0, 3), ShapeError);
}

TEST(LocalGroup, ArgumentErrorsNameTheOperation) {
  auto g = make_local_group();
  Tensor out = Tensor::zeros({2, 3});
  try {
    g->all_gather(Tensor::zeros({1, 3}), out);
    ADD_FAILURE() << "wrong out shape accepted";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("local all_gather: out must be float32[1, 3]"), std::string::npos)
        << e.what();
  }
  Tensor transposed = Tensor::zeros({2, 3}).as_strided({3, 2}, {1, 3}, 0);
  try {
    g->all_reduce(transposed);
    ADD_FAILURE() << "non-contiguous tensor accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("local all_reduce: t must be contiguous"), std::string::npos) << e.what();
  }
  EXPECT_THROW(g->isend(Tensor::zeros({2}), 1, 0), ValueError);
  EXPECT_THROW(g->broadcast(out, 1), ValueError);
  Tensor routed = Tensor::zeros({2, 2});
  EXPECT_THROW(g->all_to_all(out, routed), ShapeError);
}

TEST(LocalGroup, SplitGivesALocalGroupOrNone) {
  auto g = make_local_group();
  auto part = g->split(3, 0);
  ASSERT_NE(part, nullptr);
  EXPECT_EQ(part->size(), 1);
  EXPECT_EQ(part->backend(), "local");
  EXPECT_EQ(g->split(-1, 0), nullptr);
}

TEST(LocalGroupDeathTest, AbortExitsWithTheMessageAndCode) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto g = make_local_group();
  EXPECT_EXIT(g->abort("strand: error: stop here", 3), testing::ExitedWithCode(3), "strand: error: stop here");
}

TEST(LocalGroup, NcclGroupNeedsNcclAndAGpu) {
  auto bootstrap = make_local_group();
  if (built_with_nccl() && device_count(DeviceType::CUDA) > 0) GTEST_SKIP() << "a GPU is here: nccl_mpitest covers it";
  const std::string want = built_with_nccl() ? "this machine shows 0" : "strand was built without NCCL";
  try {
    make_nccl_group(*bootstrap);
    ADD_FAILURE() << "an NCCL group was made without NCCL or a GPU";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strand::parallel
