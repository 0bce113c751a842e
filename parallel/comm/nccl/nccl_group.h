// The NCCL backend of Group: device buffers on this rank's GPU (one GPU per rank), one NCCL
// communicator and stream, bootstrapped through another group (MPI) that broadcasts the unique id.
#pragma once
#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <vector>

#include "parallel/comm/group.h"

namespace strand::parallel::nccl {

struct TransferState;  // one posted send or receive (nccl_group.cpp)

// Note [NCCL point-to-point]: NCCL has no tags; messages between two ranks match in posting
// order. A lone ncclSend blocks its stream until the peer's matching receive runs, so a ring
// exchange launched one call at a time deadlocks. isend/irecv therefore only queue the transfer;
// the first wait()/test() of any queued request, or the next collective, launches every queued
// transfer inside one ncclGroupStart/End. Post the whole exchange, then wait.
class NcclGroup final : public Group {
 public:
  // Collective over bootstrap, which the group keeps for split() and abort(). Runs on GPU `device`.
  NcclGroup(std::unique_ptr<Group> bootstrap, int device);
  ~NcclGroup() override;
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  int rank() const override { return bootstrap_->rank(); }
  int size() const override { return bootstrap_->size(); }
  std::string backend() const override { return "nccl"; }
  int device() const { return device_; }

  // Cpu tensors are staged through device copies; cuda tensors must be on device().
  // The group must outlive its requests.
  std::unique_ptr<Request> isend(const Tensor& t, int dst, int tag) override;
  std::unique_ptr<Request> irecv(Tensor& t, int src, int tag) override;

  void all_reduce(Tensor& t, ReduceOp op) override;
  std::unique_ptr<Request> iall_reduce(Tensor& t, ReduceOp op) override;
  void all_gather(const Tensor& t, Tensor& out) override;
  void reduce_scatter(const Tensor& t, Tensor& out, ReduceOp op) override;
  void all_to_all(const Tensor& t, Tensor& out) override;
  void broadcast(Tensor& t, int root) override;
  void barrier() override;

  void all_reduce(std::span<double> values, ReduceOp op) override;
  void all_reduce(std::span<int64_t> values, ReduceOp op) override;

  // Splits the bootstrap group, then makes an NCCL communicator over each part.
  std::unique_ptr<Group> split(int color, int key) override;

  [[noreturn]] void abort(const std::string& message, int code) override;

  // Launches the queued point-to-point transfers (Note [NCCL point-to-point]).
  void launch_queued_transfers();

 private:
  void reduce_scalars(void* values, size_t count, size_t element_size, ncclDataType_t type, ReduceOp op,
                      const char* name);
  void synchronize(const char* name);

  std::unique_ptr<Group> bootstrap_;
  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::vector<std::shared_ptr<TransferState>> queued_;
};

}  // namespace strand::parallel::nccl
