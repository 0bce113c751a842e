// The MPI backend of Group: one MPI communicator, host buffers (device tensors are staged
// through a host copy), every MPI call's error returned (MPI_ERRORS_RETURN) and thrown as
// strand::Error naming the operation.
#pragma once
#include <mpi.h>

#include "parallel/comm/group.h"

namespace strand::parallel::mpi {

// Throws strand::Error "<op>: <MPI's error string>" unless rc is MPI_SUCCESS.
void check(int rc, const char* op);

class MpiGroup final : public Group {
 public:
  // Takes ownership of comm (freed on destruction while MPI runs) and makes its errors return.
  explicit MpiGroup(MPI_Comm comm);
  ~MpiGroup() override;
  MpiGroup(const MpiGroup&) = delete;
  MpiGroup& operator=(const MpiGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

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

  // A negative color gives this rank no group (MPI_UNDEFINED): the result is null.
  std::unique_ptr<Group> split(int color, int key) override;

  [[noreturn]] void abort(const std::string& message, int code) override;

  MPI_Comm comm() const { return comm_; }

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace strand::parallel::mpi
