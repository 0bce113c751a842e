// MpiGroup: point-to-point and collective operations over one MPI communicator.
#include "parallel/comm/mpi/mpi_group.h"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "framework/core/error.h"
#include "parallel/comm/checks.h"
#include "parallel/watchdog.h"

namespace strand::parallel::mpi {
namespace {

using internal::check_contiguous;
using internal::check_rank;

// Types for moving data; 16-bit floats travel as raw 16-bit words.
MPI_Datatype data_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I32: return MPI_INT32_T;
    case DType::BF16:
    case DType::F16: return MPI_UINT16_T;
  }
  throw DTypeError("mpi: unknown dtype");
}

MPI_Op builtin_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
  }
  throw ValueError("mpi: unknown reduce op");
}

// MPI has no bfloat16 arithmetic: a bfloat16 sum is a user-defined operation on the raw 16-bit
// words, each pair added in float32 and rounded back to bfloat16 (round to nearest even), which
// is what a bf16 gradient all-reduce promises (parallel.grad_dtype: bf16). Addition of two
// values is commutative in floating point, so every rank of an all-reduce gets the same bits.
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = float_to_bf16_bits(bf16_bits_to_float(a[i]) + bf16_bits_to_float(b[i]));
}

MPI_Op bf16_sum_op() {
  static const MPI_Op op = [] {
    MPI_Op created;
    check(MPI_Op_create(&bf16_sum, /*commute=*/1, &created), "mpi (MPI_Op_create for the bfloat16 sum)");
    return created;
  }();
  return op;
}

// The element type and operation of a reduction: MPI's own for float32, float64 and int32, and
// the sum above for bfloat16; float16 and bfloat16 max/min are not needed by anything.
struct Reduction {
  MPI_Datatype type;
  MPI_Op op;
};

Reduction reduction(DType t, ReduceOp op, const std::string& name) {
  if (t == DType::BF16 && op == ReduceOp::Sum) return {MPI_UINT16_T, bf16_sum_op()};
  STRAND_CHECK(t == DType::F32 || t == DType::F64 || t == DType::I32, DTypeError, name, ": MPI cannot reduce ",
               dtype_name(t), " tensors", t == DType::BF16 ? " except by a sum" : "", "; reduce them in float32");
  return {data_type(t), builtin_op(op)};
}

// MPI counts are int; larger tensors would need chunking, which nothing needs yet.
int count_of(int64_t n, const std::string& op) {
  STRAND_CHECK(n <= INT_MAX, ValueError, op, ": ", n, " elements exceed MPI's int count");
  return static_cast<int>(n);
}

// Note [Device staging]: MPI gets host buffers. A cpu tensor is used as it is; a device tensor
// goes through a host copy, copied in before sending and written back after receiving.
class HostView {
 public:
  HostView(const Tensor& target, bool copy_in)
      : target_(target),
        host_(target.device().is_cpu() ? target
              : copy_in                ? target.copy_as(target.dtype(), Device::cpu())
                                       : Tensor::empty(target.shape(), target.dtype())) {}
  void* data() const { return host_.raw_data(); }
  const Tensor& host() const { return host_; }
  // After MPI wrote the host buffer: copy it to the device, or mark the cpu tensor as modified.
  void write_back() const {
    if (host_.storage() == target_.storage())
      target_.bump_version();
    else
      Tensor(target_).copy_from(host_);  // a handle copy: the tensor's data is what changes
  }

 private:
  Tensor target_;
  Tensor host_;
};

// A pending MPI request. It holds the buffers MPI reads or writes until completion, and a
// finishing step (size check, device write-back) run once after completion.
class MpiRequest final : public Request {
 public:
  using Finish = std::function<void(const MPI_Status&)>;
  // `waiting_in` (a string literal) names the wait for the stall watchdog.
  MpiRequest(MPI_Request request, const char* waiting_in, std::string op, std::vector<Tensor> buffers, Finish finish)
      : request_(request),
        waiting_in_(waiting_in),
        op_(std::move(op)),
        buffers_(std::move(buffers)),
        finish_(std::move(finish)) {}

  ~MpiRequest() override {
    // A dropped request is completed so that MPI never writes into freed buffers.
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!done_ && !finalized) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }

  void wait() override {
    if (done_) return;
    const WaitScope waiting(waiting_in_);
    MPI_Status status;
    const int rc = MPI_Wait(&request_, &status);
    complete(rc, status);
  }

  bool test() override {
    if (done_) return true;
    int flag = 0;
    MPI_Status status;
    const int rc = MPI_Test(&request_, &flag, &status);
    if (rc == MPI_SUCCESS && !flag) return false;
    complete(rc, status);
    return true;
  }

 private:
  void complete(int rc, const MPI_Status& status) {
    done_ = true;
    note_progress("computing");
    check(rc, op_.c_str());
    if (finish_) finish_(status);
    buffers_.clear();
  }

  MPI_Request request_;
  const char* waiting_in_;
  std::string op_;
  std::vector<Tensor> buffers_;
  Finish finish_;
  bool done_ = false;
};

}  // namespace

MpiGroup::MpiGroup(MPI_Comm comm) : comm_(comm) {
  check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "mpi group (MPI_Comm_set_errhandler)");
  check(MPI_Comm_rank(comm_, &rank_), "mpi group (MPI_Comm_rank)");
  check(MPI_Comm_size(comm_, &size_), "mpi group (MPI_Comm_size)");
}

MpiGroup::~MpiGroup() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::unique_ptr<Request> MpiGroup::isend(const Tensor& t, int dst, int tag) {
  const std::string op = "mpi isend";
  check_contiguous(t, op, "t");
  check_rank(dst, size_, op, "dst");
  HostView send(t, /*copy_in=*/true);
  MPI_Request request;
  check(MPI_Isend(send.data(), count_of(t.numel(), op), data_type(t.dtype()), dst, tag, comm_, &request),
        "mpi isend (MPI_Isend)");
  return std::make_unique<MpiRequest>(request, "mpi isend", "mpi isend (MPI_Wait)", std::vector<Tensor>{t, send.host()},
                                      nullptr);
}

std::unique_ptr<Request> MpiGroup::irecv(Tensor& t, int src, int tag) {
  const std::string op = "mpi irecv";
  check_contiguous(t, op, "t");
  check_rank(src, size_, op, "src");
  HostView recv(t, /*copy_in=*/false);
  const MPI_Datatype type = data_type(t.dtype());
  const int expected = count_of(t.numel(), op);
  MPI_Request request;
  check(MPI_Irecv(recv.data(), expected, type, src, tag, comm_, &request), "mpi irecv (MPI_Irecv)");
  auto finish = [recv, type, expected, src, tag, shape = t.shape()](const MPI_Status& status) {
    // A longer message already failed with MPI_ERR_TRUNCATE; a shorter one must fail too.
    int received = 0;
    MPI_Get_count(&status, type, &received);
    STRAND_CHECK(received == expected, ShapeError, "mpi irecv: expected ", expected, " elements (",
                 shape, ") from rank ", src, " with tag ", tag, ", got ", received);
    recv.write_back();
  };
  return std::make_unique<MpiRequest>(request, "mpi irecv", "mpi irecv (MPI_Wait)", std::vector<Tensor>{t, recv.host()},
                                      finish);
}

void MpiGroup::all_reduce(Tensor& t, ReduceOp op) {
  const std::string name = "mpi all_reduce";
  check_contiguous(t, name, "t");
  const Reduction r = reduction(t.dtype(), op, name);
  HostView view(t, /*copy_in=*/true);
  const WaitScope waiting("mpi all_reduce");
  check(MPI_Allreduce(MPI_IN_PLACE, view.data(), count_of(t.numel(), name), r.type, r.op, comm_),
        "mpi all_reduce (MPI_Allreduce)");
  view.write_back();
}

std::unique_ptr<Request> MpiGroup::iall_reduce(Tensor& t, ReduceOp op) {
  const std::string name = "mpi iall_reduce";
  check_contiguous(t, name, "t");
  const Reduction r = reduction(t.dtype(), op, name);
  HostView view(t, /*copy_in=*/true);
  MPI_Request request;
  check(MPI_Iallreduce(MPI_IN_PLACE, view.data(), count_of(t.numel(), name), r.type, r.op, comm_,
                       &request),
        "mpi iall_reduce (MPI_Iallreduce)");
  return std::make_unique<MpiRequest>(request, "mpi iall_reduce", "mpi iall_reduce (MPI_Wait)",
                                      std::vector<Tensor>{t, view.host()},
                                      [view](const MPI_Status&) { view.write_back(); });
}

void MpiGroup::all_gather(const Tensor& t, Tensor& out) {
  const std::string name = "mpi all_gather";
  internal::check_gather_shapes(t, out, size_, name);
  // MPI forbids overlapping send and receive buffers.
  const Tensor source = internal::overlaps(t, out) ? t.copy_as(t.dtype(), Device::cpu()) : t;
  HostView send(source, true), recv(out, false);
  const int n = count_of(t.numel(), name);
  const MPI_Datatype type = data_type(t.dtype());
  const WaitScope waiting("mpi all_gather");
  check(MPI_Allgather(send.data(), n, type, recv.data(), n, type, comm_), "mpi all_gather (MPI_Allgather)");
  recv.write_back();
}

void MpiGroup::reduce_scatter(const Tensor& t, Tensor& out, ReduceOp op) {
  const std::string name = "mpi reduce_scatter";
  internal::check_scatter_shapes(t, out, size_, name);
  const Reduction r = reduction(t.dtype(), op, name);
  const Tensor source = internal::overlaps(t, out) ? t.copy_as(t.dtype(), Device::cpu()) : t;
  HostView send(source, true), recv(out, false);
  const WaitScope waiting("mpi reduce_scatter");
  check(MPI_Reduce_scatter_block(send.data(), recv.data(), count_of(out.numel(), name), r.type, r.op,
                                 comm_),
        "mpi reduce_scatter (MPI_Reduce_scatter_block)");
  recv.write_back();
}

void MpiGroup::all_to_all(const Tensor& t, Tensor& out) {
  const std::string name = "mpi all_to_all";
  internal::check_all_to_all_shapes(t, out, size_, name);
  const Tensor source = internal::overlaps(t, out) ? t.copy_as(t.dtype(), Device::cpu()) : t;
  HostView send(source, true), recv(out, false);
  const int block = count_of(t.numel() / size_, name);
  const MPI_Datatype type = data_type(t.dtype());
  const WaitScope waiting("mpi all_to_all");
  check(MPI_Alltoall(send.data(), block, type, recv.data(), block, type, comm_), "mpi all_to_all (MPI_Alltoall)");
  recv.write_back();
}

void MpiGroup::broadcast(Tensor& t, int root) {
  const std::string name = "mpi broadcast";
  check_contiguous(t, name, "t");
  check_rank(root, size_, name, "root");
  HostView view(t, /*copy_in=*/rank_ == root);
  const WaitScope waiting("mpi broadcast");
  check(MPI_Bcast(view.data(), count_of(t.numel(), name), data_type(t.dtype()), root, comm_),
        "mpi broadcast (MPI_Bcast)");
  if (rank_ != root) view.write_back();
}

void MpiGroup::barrier() {
  const WaitScope waiting("mpi barrier");
  check(MPI_Barrier(comm_), "mpi barrier (MPI_Barrier)");
}

void MpiGroup::all_reduce(std::span<double> values, ReduceOp op) {
  const WaitScope waiting("mpi all_reduce");
  check(MPI_Allreduce(MPI_IN_PLACE, values.data(), count_of(static_cast<int64_t>(values.size()), "mpi all_reduce"),
                      MPI_DOUBLE, builtin_op(op), comm_),
        "mpi all_reduce of doubles (MPI_Allreduce)");
}

void MpiGroup::all_reduce(std::span<int64_t> values, ReduceOp op) {
  const WaitScope waiting("mpi all_reduce");
  check(MPI_Allreduce(MPI_IN_PLACE, values.data(), count_of(static_cast<int64_t>(values.size()), "mpi all_reduce"),
                      MPI_INT64_T, builtin_op(op), comm_),
        "mpi all_reduce of int64s (MPI_Allreduce)");
}

std::unique_ptr<Group> MpiGroup::split(int color, int key) {
  MPI_Comm sub = MPI_COMM_NULL;
  const WaitScope waiting("mpi split");
  check(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub), "mpi split (MPI_Comm_split)");
  if (sub == MPI_COMM_NULL) return nullptr;
  return std::make_unique<MpiGroup>(sub);
}

void MpiGroup::abort(const std::string& message, int code) {
  if (!message.empty()) std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  // The world, not this communicator: every rank of the job must end, not only this group's.
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this only satisfies [[noreturn]]
}

}  // namespace strand::parallel::mpi
