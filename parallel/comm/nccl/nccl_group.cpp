// NcclGroup: collectives and point-to-point transfers through NCCL on this rank's GPU.
#include "parallel/comm/nccl/nccl_group.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "framework/core/device_runtime.h"
#include "framework/core/error.h"
#include "parallel/comm/backends.h"
#include "parallel/comm/checks.h"
#include "parallel/comm/launcher.h"

namespace strand::parallel {
namespace nccl {
namespace {

using internal::check_contiguous;
using internal::check_rank;

void check_cuda(cudaError_t e, const char* op) {
  if (e != cudaSuccess) throw DeviceError(strand::detail::concat(op, ": ", cudaGetErrorString(e)));
}

void check_nccl(ncclResult_t r, const char* op, ncclComm_t comm) {
  if (r == ncclSuccess || r == ncclInProgress) return;
  const char* last = ncclGetLastError(comm);
  throw Error(strand::detail::concat(op, ": ", ncclGetErrorString(r), last && *last ? " (" : "",
                                     last ? last : "", last && *last ? ")" : ""));
}

ncclDataType_t data_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    case DType::I32: return ncclInt32;
  }
  throw DTypeError("nccl: unknown dtype");
}

ncclRedOp_t reduce_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  throw ValueError("nccl: unknown reduce op");
}

// A device view of a tensor on the group's GPU: the tensor itself when it lives there, else a
// device copy of a cpu tensor (copied in before sending, written back after receiving).
class DeviceView {
 public:
  DeviceView() = default;
  DeviceView(const Tensor& target, int device, bool copy_in, const std::string& op) : target_(target) {
    const Device gpu = Device::cuda(device);
    STRAND_CHECK(target.device().is_cpu() || target.device() == gpu, DeviceError, op, ": ", describe(target),
                 " is not on this rank's GPU ", gpu);
    if (target.device() == gpu)
      buffer_ = target;
    else
      buffer_ = copy_in ? target.copy_as(target.dtype(), gpu) : Tensor::empty(target.shape(), target.dtype(), gpu);
  }
  void* data() const { return buffer_.raw_data(); }
  size_t count() const { return static_cast<size_t>(buffer_.numel()); }
  DType dtype() const { return buffer_.dtype(); }
  // After NCCL wrote the buffer (its stream synchronised): copy it back, or mark the tensor modified.
  void write_back() const {
    if (buffer_.storage() == target_.storage())
      target_.bump_version();
    else
      Tensor(target_).copy_from(buffer_);  // a handle copy: the tensor's data is what changes
  }

 private:
  Tensor target_;
  Tensor buffer_;
};

// A CUDA event recorded on the group's stream after an operation: its completion.
class Completion {
 public:
  Completion(cudaStream_t stream, int device) {
    check_cuda(cudaSetDevice(device), "nccl (cudaSetDevice)");
    check_cuda(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "nccl (cudaEventCreate)");
    check_cuda(cudaEventRecord(event_, stream), "nccl (cudaEventRecord)");
  }
  ~Completion() { cudaEventDestroy(event_); }
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;
  void wait() const { check_cuda(cudaEventSynchronize(event_), "nccl wait (cudaEventSynchronize)"); }
  bool done() const {
    const cudaError_t e = cudaEventQuery(event_);
    if (e == cudaErrorNotReady) return false;
    check_cuda(e, "nccl test (cudaEventQuery)");
    return true;
  }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace

struct TransferState {
  bool is_send = false;
  int peer = 0;
  DeviceView view;
  std::shared_ptr<Completion> completion;  // set when launched
  std::string launch_error;                // set when the launch failed
};

namespace {

// A request for a queued transfer or a launched collective; wait() writes staged results back.
class NcclRequest final : public Request {
 public:
  NcclRequest(NcclGroup* group, std::shared_ptr<TransferState> state, bool write_back)
      : group_(group), state_(std::move(state)), write_back_(write_back) {}

  void wait() override {
    if (done_) return;
    launch();
    state_->completion->wait();
    finish();
  }
  bool test() override {
    if (done_) return true;
    launch();
    if (!state_->completion->done()) return false;
    finish();
    return true;
  }

 private:
  void launch() {
    if (!state_->completion && state_->launch_error.empty()) group_->launch_queued_transfers();
    STRAND_CHECK(state_->launch_error.empty(), Error, state_->launch_error);
  }
  void finish() {
    done_ = true;
    if (write_back_) state_->view.write_back();
  }

  NcclGroup* group_;
  std::shared_ptr<TransferState> state_;
  bool write_back_;
  bool done_ = false;
};

// A device block for the scalar reductions (strand has no int64 tensors).
struct DeviceBlock {
  DeviceBlock(size_t nbytes, int device) : device(device) {
    check_cuda(cudaSetDevice(device), "nccl (cudaSetDevice)");
    check_cuda(cudaMalloc(&ptr, nbytes == 0 ? 1 : nbytes), "nccl (cudaMalloc)");
  }
  ~DeviceBlock() { cudaFree(ptr); }
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;
  void* ptr = nullptr;
  int device;
};

}  // namespace

NcclGroup::NcclGroup(std::unique_ptr<Group> bootstrap, int device) : bootstrap_(std::move(bootstrap)), device_(device) {
  const int gpus = device_count(DeviceType::CUDA);
  STRAND_CHECK(device_ >= 0 && device_ < gpus, DeviceError, "nccl: rank ", bootstrap_->rank(), " needs GPU ",
               device_, " (one GPU per rank on each machine) but this machine shows ", gpus,
               "; start at most that many ranks per machine");
  // Rank 0 makes the id; the bootstrap group carries its bytes to every rank.
  ncclUniqueId id;
  static_assert(sizeof(ncclUniqueId) % sizeof(int32_t) == 0);
  Tensor id_words = Tensor::zeros({static_cast<int64_t>(sizeof(id) / sizeof(int32_t))}, DType::I32);
  if (bootstrap_->rank() == 0) {
    check_nccl(ncclGetUniqueId(&id), "nccl init (ncclGetUniqueId)", nullptr);
    std::memcpy(id_words.raw_data(), &id, sizeof(id));
  }
  bootstrap_->broadcast(id_words, 0);
  std::memcpy(&id, id_words.raw_data(), sizeof(id));

  check_cuda(cudaSetDevice(device_), "nccl init (cudaSetDevice)");
  // A blocking stream: it is ordered after work on the legacy default stream (the framework's
  // copies and kernels) without explicit events.
  check_cuda(cudaStreamCreate(&stream_), "nccl init (cudaStreamCreate)");
  check_nccl(ncclCommInitRank(&comm_, bootstrap_->size(), id, bootstrap_->rank()), "nccl init (ncclCommInitRank)",
             nullptr);
}

NcclGroup::~NcclGroup() {
  cudaSetDevice(device_);
  if (comm_ != nullptr) ncclCommDestroy(comm_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

std::unique_ptr<Request> NcclGroup::isend(const Tensor& t, int dst, int tag) {
  (void)tag;  // NCCL matches by order (Note [NCCL point-to-point])
  check_contiguous(t, "nccl isend", "t");
  check_rank(dst, size(), "nccl isend", "dst");
  auto state = std::make_shared<TransferState>();
  state->is_send = true;
  state->peer = dst;
  state->view = DeviceView(t, device_, /*copy_in=*/true, "nccl isend");
  queued_.push_back(state);
  return std::make_unique<NcclRequest>(this, std::move(state), /*write_back=*/false);
}

std::unique_ptr<Request> NcclGroup::irecv(Tensor& t, int src, int tag) {
  (void)tag;
  check_contiguous(t, "nccl irecv", "t");
  check_rank(src, size(), "nccl irecv", "src");
  auto state = std::make_shared<TransferState>();
  state->peer = src;
  state->view = DeviceView(t, device_, /*copy_in=*/false, "nccl irecv");
  queued_.push_back(state);
  return std::make_unique<NcclRequest>(this, std::move(state), /*write_back=*/true);
}

void NcclGroup::launch_queued_transfers() {
  if (queued_.empty()) return;
  std::vector<std::shared_ptr<TransferState>> batch;
  batch.swap(queued_);
  try {
    check_cuda(cudaSetDevice(device_), "nccl transfers (cudaSetDevice)");
    check_nccl(ncclGroupStart(), "nccl transfers (ncclGroupStart)", comm_);
    for (const auto& s : batch) {
      const ncclDataType_t type = data_type(s->view.dtype());
      if (s->is_send)
        check_nccl(ncclSend(s->view.data(), s->view.count(), type, s->peer, comm_, stream_), "nccl isend (ncclSend)",
                   comm_);
      else
        check_nccl(ncclRecv(s->view.data(), s->view.count(), type, s->peer, comm_, stream_), "nccl irecv (ncclRecv)",
                   comm_);
    }
    check_nccl(ncclGroupEnd(), "nccl transfers (ncclGroupEnd)", comm_);
    auto completion = std::make_shared<Completion>(stream_, device_);
    for (const auto& s : batch) s->completion = completion;
  } catch (const std::exception& e) {
    for (const auto& s : batch) s->launch_error = e.what();
    throw;
  }
}

void NcclGroup::synchronize(const char* name) {
  check_cuda(cudaStreamSynchronize(stream_), name);
}

void NcclGroup::all_reduce(Tensor& t, ReduceOp op) {
  check_contiguous(t, "nccl all_reduce", "t");
  launch_queued_transfers();
  DeviceView view(t, device_, true, "nccl all_reduce");
  check_cuda(cudaSetDevice(device_), "nccl all_reduce (cudaSetDevice)");
  check_nccl(ncclAllReduce(view.data(), view.data(), view.count(), data_type(t.dtype()), reduce_op(op), comm_, stream_),
             "nccl all_reduce (ncclAllReduce)", comm_);
  synchronize("nccl all_reduce (cudaStreamSynchronize)");
  view.write_back();
}

std::unique_ptr<Request> NcclGroup::iall_reduce(Tensor& t, ReduceOp op) {
  check_contiguous(t, "nccl iall_reduce", "t");
  launch_queued_transfers();
  auto state = std::make_shared<TransferState>();
  state->view = DeviceView(t, device_, true, "nccl iall_reduce");
  check_cuda(cudaSetDevice(device_), "nccl iall_reduce (cudaSetDevice)");
  check_nccl(ncclAllReduce(state->view.data(), state->view.data(), state->view.count(), data_type(t.dtype()),
                           reduce_op(op), comm_, stream_),
             "nccl iall_reduce (ncclAllReduce)", comm_);
  state->completion = std::make_shared<Completion>(stream_, device_);
  return std::make_unique<NcclRequest>(this, std::move(state), /*write_back=*/true);
}

void NcclGroup::all_gather(const Tensor& t, Tensor& out) {
  internal::check_gather_shapes(t, out, size(), "nccl all_gather");
  launch_queued_transfers();
  const Tensor source = internal::overlaps(t, out) ? t.copy_as(t.dtype(), t.device()) : t;
  DeviceView send(source, device_, true, "nccl all_gather"), recv(out, device_, false, "nccl all_gather");
  check_cuda(cudaSetDevice(device_), "nccl all_gather (cudaSetDevice)");
  check_nccl(ncclAllGather(send.data(), recv.data(), send.count(), data_type(t.dtype()), comm_, stream_),
             "nccl all_gather (ncclAllGather)", comm_);
  synchronize("nccl all_gather (cudaStreamSynchronize)");
  recv.write_back();
}

void NcclGroup::reduce_scatter(const Tensor& t, Tensor& out, ReduceOp op) {
  internal::check_scatter_shapes(t, out, size(), "nccl reduce_scatter");
  launch_queued_transfers();
  const Tensor source = internal::overlaps(t, out) ? t.copy_as(t.dtype(), t.device()) : t;
  DeviceView send(source, device_, true, "nccl reduce_scatter"), recv(out, device_, false, "nccl reduce_scatter");
  check_cuda(cudaSetDevice(device_), "nccl reduce_scatter (cudaSetDevice)");
  check_nccl(ncclReduceScatter(send.data(), recv.data(), recv.count(), data_type(t.dtype()), reduce_op(op), comm_,
                               stream_),
             "nccl reduce_scatter (ncclReduceScatter)", comm_);
  synchronize("nccl reduce_scatter (cudaStreamSynchronize)");
  recv.write_back();
}

void NcclGroup::all_to_all(const Tensor& t, Tensor& out) {
  internal::check_all_to_all_shapes(t, out, size(), "nccl all_to_all");
  launch_queued_transfers();
  const Tensor source = internal::overlaps(t, out) ? t.copy_as(t.dtype(), t.device()) : t;
  DeviceView send(source, device_, true, "nccl all_to_all"), recv(out, device_, false, "nccl all_to_all");
  const size_t block = send.count() / static_cast<size_t>(size());
  const size_t block_bytes = block * dtype_size(t.dtype());
  const ncclDataType_t type = data_type(t.dtype());
  check_cuda(cudaSetDevice(device_), "nccl all_to_all (cudaSetDevice)");
  // NCCL has no all-to-all primitive: one send and one receive per peer, launched together.
  check_nccl(ncclGroupStart(), "nccl all_to_all (ncclGroupStart)", comm_);
  for (int peer = 0; peer < size(); ++peer) {
    const size_t offset = static_cast<size_t>(peer) * block_bytes;
    check_nccl(ncclSend(static_cast<const char*>(send.data()) + offset, block, type, peer, comm_, stream_),
               "nccl all_to_all (ncclSend)", comm_);
    check_nccl(ncclRecv(static_cast<char*>(recv.data()) + offset, block, type, peer, comm_, stream_),
               "nccl all_to_all (ncclRecv)", comm_);
  }
  check_nccl(ncclGroupEnd(), "nccl all_to_all (ncclGroupEnd)", comm_);
  synchronize("nccl all_to_all (cudaStreamSynchronize)");
  recv.write_back();
}

void NcclGroup::broadcast(Tensor& t, int root) {
  check_contiguous(t, "nccl broadcast", "t");
  check_rank(root, size(), "nccl broadcast", "root");
  launch_queued_transfers();
  DeviceView view(t, device_, /*copy_in=*/rank() == root, "nccl broadcast");
  check_cuda(cudaSetDevice(device_), "nccl broadcast (cudaSetDevice)");
  check_nccl(ncclBroadcast(view.data(), view.data(), view.count(), data_type(t.dtype()), root, comm_, stream_),
             "nccl broadcast (ncclBroadcast)", comm_);
  synchronize("nccl broadcast (cudaStreamSynchronize)");
  if (rank() != root) view.write_back();
}

void NcclGroup::barrier() {
  // NCCL has no barrier: a one-word all-reduce that every rank must join.
  int32_t token = 0;
  reduce_scalars(&token, 1, sizeof token, ncclInt32, ReduceOp::Sum, "nccl barrier");
}

void NcclGroup::reduce_scalars(void* values, size_t count, size_t element_size, ncclDataType_t type, ReduceOp op,
                               const char* name) {
  launch_queued_transfers();
  DeviceBlock block(count * element_size, device_);
  check_cuda(cudaMemcpyAsync(block.ptr, values, count * element_size, cudaMemcpyHostToDevice, stream_), name);
  check_nccl(ncclAllReduce(block.ptr, block.ptr, count, type, reduce_op(op), comm_, stream_), name, comm_);
  check_cuda(cudaMemcpyAsync(values, block.ptr, count * element_size, cudaMemcpyDeviceToHost, stream_), name);
  synchronize(name);
}

void NcclGroup::all_reduce(std::span<double> values, ReduceOp op) {
  reduce_scalars(values.data(), values.size(), sizeof(double), ncclFloat64, op, "nccl all_reduce of doubles");
}

void NcclGroup::all_reduce(std::span<int64_t> values, ReduceOp op) {
  reduce_scalars(values.data(), values.size(), sizeof(int64_t), ncclInt64, op, "nccl all_reduce of int64s");
}

std::unique_ptr<Group> NcclGroup::split(int color, int key) {
  launch_queued_transfers();
  std::unique_ptr<Group> part = bootstrap_->split(color, key);
  if (!part) return nullptr;
  return std::make_unique<NcclGroup>(std::move(part), device_);
}

void NcclGroup::abort(const std::string& message, int code) {
  // Frees ranks of this process stuck in NCCL kernels; the bootstrap (MPI) ends the job.
  if (comm_ != nullptr) ncclCommAbort(comm_);
  comm_ = nullptr;
  bootstrap_->abort(message, code);
  std::_Exit(code);  // not reached: the bootstrap's abort does not return
}

}  // namespace nccl

bool built_with_nccl() { return true; }

std::unique_ptr<Group> make_nccl_group(Group& bootstrap, int device) {
  if (device < 0) device = detect_launch().local_rank;
  // The group keeps its own copy of the bootstrap's ranks for split() and abort().
  std::unique_ptr<Group> own = bootstrap.split(0, bootstrap.rank());
  return std::make_unique<nccl::NcclGroup>(std::move(own), device);
}

}  // namespace strand::parallel
