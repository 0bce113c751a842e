// The communicator interface every distributed piece of strand uses: one abstract process
// group with point-to-point and collective operations on tensors. Backends: mpi/ (host
// buffers), nccl/ (device buffers, built with CUDA), and a single-process group for runs
// without MPI. Above parallel/, nothing names MPI or NCCL.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "framework/core/tensor.h"

namespace strand::parallel {

enum class ReduceOp { Sum, Max, Min };

// A pending non-blocking operation. wait() blocks until it completes (and rethrows a failure).
class Request {
 public:
  virtual ~Request() = default;
  virtual void wait() = 0;
  virtual bool test() = 0;  // true once complete
};

class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "mpi", "nccl", "local"

  // Point to point. Tensors are contiguous; recv writes into t (shape and dtype agreed).
  virtual std::unique_ptr<Request> isend(const Tensor& t, int dst, int tag) = 0;
  virtual std::unique_ptr<Request> irecv(Tensor& t, int src, int tag) = 0;

  // Collectives, in place on contiguous tensors unless noted.
  virtual void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  virtual std::unique_ptr<Request> iall_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  // out [size * n...] = concatenation of every rank's t along axis 0.
  virtual void all_gather(const Tensor& t, Tensor& out) = 0;
  // t [size * n...] summed over ranks; rank r keeps block r in out [n...].
  virtual void reduce_scatter(const Tensor& t, Tensor& out, ReduceOp op = ReduceOp::Sum) = 0;
  // t [size * n...]: block j goes to rank j; out [size * n...]: block j came from rank j.
  virtual void all_to_all(const Tensor& t, Tensor& out) = 0;
  virtual void broadcast(Tensor& t, int root) = 0;
  virtual void barrier() = 0;

  // Scalars (loss sums, token counts, flags), in place.
  virtual void all_reduce(std::span<double> values, ReduceOp op = ReduceOp::Sum) = 0;
  virtual void all_reduce(std::span<int64_t> values, ReduceOp op = ReduceOp::Sum) = 0;

  // Sub-group of the ranks passing the same color, ordered by key (MPI_Comm_split semantics).
  virtual std::unique_ptr<Group> split(int color, int key) = 0;

  // Ends every rank of the job with this message (MPI_Abort); never returns.
  [[noreturn]] virtual void abort(const std::string& message, int code = 1) = 0;
};

// The world group: MPI_COMM_WORLD when the program runs under mpirun/mpiexec (or an MPI
// launcher's environment is present), else a single-process group. Initialises MPI on first use.
Group& world();

// How many ranks of `group` run on this machine (same host name), for checks of what they
// hold together against its memory. Collective; 1 for a one-rank group.
int ranks_on_this_machine(Group& group);

// Finalises MPI if world() initialised it (called once at program exit).
void finalize();

}  // namespace strand::parallel
