// From the device seam's parameter structs to the CUDA launchers of kernels.h: dtype and
// enumeration mapping, scratch blocks from the caching allocator, and the host-side parts the
// CPU kernels also do on the host (id and target checks, the stable sort of the embedding
// backward, summing the clip's blocks in order, results that the parameters place in host memory).
#include "framework/backend/cuda/ops.h"

#include <cmath>
#include <vector>

#include "framework/backend/cuda/kernels.h"
#include "framework/backend/cuda/runtime_api.h"
#include "framework/core/allocator.h"
#include "framework/core/error.h"

namespace strand::cuda {
namespace {

// The enumerations of kernels.h repeat the families' value for value.
static_assert(static_cast<int>(DType::F32) == static_cast<int>(Dt::F32) &&
              static_cast<int>(DType::F64) == static_cast<int>(Dt::F64) &&
              static_cast<int>(DType::BF16) == static_cast<int>(Dt::BF16) &&
              static_cast<int>(DType::F16) == static_cast<int>(Dt::F16));
static_assert(static_cast<int>(backend::Unary::Abs) == static_cast<int>(Unary::Abs) &&
              static_cast<int>(backend::Unary::Gelu) == static_cast<int>(Unary::Gelu) &&
              static_cast<int>(backend::Unary::Neg) == 0 && static_cast<int>(Unary::Neg) == 0);
static_assert(static_cast<int>(backend::Binary::Min) == static_cast<int>(Binary::Min) &&
              static_cast<int>(backend::Binary::Div) == static_cast<int>(Binary::Div));
static_assert(static_cast<int>(backend::UnaryGrad::Silu) == static_cast<int>(UnaryGrad::Silu));
static_assert(static_cast<int>(backend::MapKind::Power) == static_cast<int>(MapKind::Power) &&
              static_cast<int>(backend::MapKind::Affine) == static_cast<int>(MapKind::Affine));
static_assert(static_cast<int>(backend::RowReduce::MaxBackward) == static_cast<int>(RowReduce::MaxBackward) &&
              static_cast<int>(backend::RowReduce::Max) == static_cast<int>(RowReduce::Max));
static_assert(static_cast<int>(backend::NormOp::LayerNorm) == 0 && static_cast<int>(backend::NormOp::RmsNorm) == 1 &&
              static_cast<int>(backend::NormOp::Backward) == 2);

Dt dt_of(const char* kernel, DType t) {
  STRAND_CHECK(is_floating(t), DTypeError, kernel, ": the cuda kernel takes float32 or float64, got ", dtype_name(t));
  return static_cast<Dt>(static_cast<int>(t));
}

// A device block for one launch's temporaries. Released as soon as the launch is queued: the
// next user of the block is queued behind it on the same stream (Note [One compute stream]).
class Scratch {
 public:
  Scratch(int device, size_t nbytes) : device_(Device::cuda(device)), nbytes_(nbytes) {
    if (nbytes_ > 0) ptr_ = memory::allocate(device_, nbytes_);
  }
  Scratch(Scratch&& o) noexcept : device_(o.device_), nbytes_(o.nbytes_), ptr_(o.ptr_) { o.ptr_ = nullptr; }
  ~Scratch() { memory::deallocate(device_, ptr_, nbytes_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Scratch& operator=(Scratch&&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  Device device_;
  size_t nbytes_;
  void* ptr_ = nullptr;
};

// A host vector copied into a scratch block.
template <class T>
Scratch upload(int device, const std::vector<T>& host) {
  Scratch s(device, host.size() * sizeof(T));
  copy_host_to_device(s.as<void>(), host.data(), host.size() * sizeof(T), device);
  return s;
}

template <class T>
std::vector<T> download(int device, const T* src, int64_t n) {
  std::vector<T> host(static_cast<size_t>(n));
  copy_device_to_host(host.data(), src, static_cast<size_t>(n) * sizeof(T), device);
  return host;
}

// Whether an input with these strides is laid out as the contiguous output (axes of length 1
// may have any stride).
bool is_linear(const Shape& shape, const Shape& strides) {
  int64_t expected = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

Strided strided(const char* kernel, const Shape& shape, const Shape* a, const Shape* b) {
  STRAND_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), DeviceError, kernel, ": the cuda kernel takes at most ",
               kMaxDims, " dimensions, got ", shape_str(shape));
  Strided s;
  s.ndim = static_cast<int>(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    s.shape[d] = shape[d];
    if (a) s.a[d] = (*a)[d];
    if (b) s.b[d] = (*b)[d];
  }
  s.a_linear = a && is_linear(shape, *a);
  s.b_linear = b && is_linear(shape, *b);
  return s;
}

// Runs a loss kernel (args a, N rows). Its forward writes the per-row losses (float64) into a
// device scratch block, copied to the caller's host array: the loss families' contract keeps
// row_loss in host memory on every device.
template <class Args, class Kernel>
void run_loss(Args& a, int64_t N, double* row_loss_host, Kernel kernel) {
  if (a.backward || N <= 0) {
    kernel(a);
    return;
  }
  Scratch loss(a.device, static_cast<size_t>(N) * sizeof(double));
  a.row_loss = loss.as<double>();
  kernel(a);
  copy_device_to_host(row_loss_host, a.row_loss, static_cast<size_t>(N) * sizeof(double), a.device);
}

}  // namespace

void elementwise_map(const backend::MapParams& p) {
  map(p.device.index, dt_of("elementwise_map", p.dtype), static_cast<MapKind>(p.kind), static_cast<Unary>(p.unary),
      p.alpha, p.beta, strided("elementwise_map", p.shape, &p.x_strides, nullptr), p.out, p.x);
}

void elementwise_binary(const backend::BinaryParams& p) {
  binary(p.device.index, dt_of("elementwise_binary", p.dtype), static_cast<Binary>(p.op),
         strided("elementwise_binary", p.shape, &p.a_strides, &p.b_strides), p.out, p.a, p.b);
}

void activation_grad(const backend::ActivationGradParams& p) {
  cuda::activation_grad(p.device.index, dt_of("activation_grad", p.dtype), static_cast<UnaryGrad>(p.f), p.n, p.out,
                        p.g, p.x);
}

void axpy(const backend::AxpyParams& p) {
  cuda::axpy(p.device.index, dt_of("axpy", p.dtype), p.n, p.alpha, p.dst, p.src);
}

void reduce_rows(const backend::ReduceRowsParams& p) {
  cuda::reduce_rows(p.device.index, dt_of("reduce_rows", p.dtype), static_cast<RowReduce>(p.op), p.rows, p.n, p.x,
                    p.out, p.arg, p.scale);
}

void softmax_rows(const backend::SoftmaxParams& p) {
  cuda::softmax_rows(p.device.index, dt_of("softmax_rows", p.dtype), p.backward, p.log, p.rows, p.n, p.x, p.g, p.out);
}

void norm_rows(const backend::NormParams& p) {
  NormArgs a;
  a.device = p.device.index;
  a.dt = dt_of("norm_rows", p.dtype);
  a.op = static_cast<int>(p.op);
  a.rows = p.rows;
  a.n = p.n;
  a.x = p.x;
  a.weight = p.weight;
  a.bias = p.bias;
  a.eps = p.eps;
  a.y = p.y;
  a.mean = p.mean;
  a.rstd = p.rstd;
  a.g = p.g;
  a.dx = p.dx;
  a.dweight = p.dweight;
  a.dbias = p.dbias;
  if (p.op == backend::NormOp::Backward && p.rows == 0 && p.n > 0) {
    // No rows: the parameter gradients are empty sums (zero has all bits clear), as on the CPU.
    const size_t bytes = static_cast<size_t>(p.n) * dtype_size(p.dtype);
    if (p.dweight) fill_bytes(p.dweight, 0, bytes, a.device);
    if (p.dbias) fill_bytes(p.dbias, 0, bytes, a.device);
    return;
  }
  const bool sums = p.op == backend::NormOp::Backward && (p.dweight || p.dbias) && p.rows > 0;
  const int64_t blocks = std::min(p.rows, kNormRowBlocks);
  const int64_t columns = (p.dweight ? p.n : 0) + (p.dbias ? p.n : 0);
  Scratch partial(a.device, sums ? static_cast<size_t>(blocks * columns) * sizeof(double) : 0);
  a.partial = partial.as<double>();
  cuda::norm_rows(a);
}

void rope(const backend::RopeParams& p) {
  const int64_t half = p.head_dim / 2;
  if (p.batch == 0 || p.heads == 0 || p.seq == 0 || half == 0) return;
  // The CPU's frequencies, computed the same way on the host.
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[static_cast<size_t>(i)] = std::pow(p.base, -2.0 * static_cast<double>(i) / static_cast<double>(p.head_dim));
  const int device = p.device.index;
  Scratch freq = upload(device, inv_freq);
  RopeArgs a;
  a.device = device;
  a.dt = dt_of("rope", p.dtype);
  a.x = p.x;
  a.y = p.y;
  a.batch = p.batch;
  a.heads = p.heads;
  a.seq = p.seq;
  a.head_dim = p.head_dim;
  a.x_batch_stride = p.x_batch_stride;
  a.x_head_stride = p.x_head_stride;
  a.x_row_stride = p.x_row_stride;
  a.x_dim_stride = p.x_dim_stride;
  a.positions = p.positions;
  a.pos_batch_stride = p.pos_batch_stride;
  a.pos_row_stride = p.pos_row_stride;
  a.inv_freq = freq.as<double>();
  a.inverse = p.inverse;
  cuda::rope(a);
}

void embedding(const backend::EmbeddingParams& p) {
  const int device = p.device.index;
  if (p.op == backend::EmbeddingOp::CheckIds) {
    // The ids come to the host once: the check is a scan, its answer is needed there.
    const std::vector<int32_t> ids = download(device, p.ids, p.n);
    *p.first_bad = -1;
    *p.bad_id = 0;
    for (int64_t i = 0; i < p.n; ++i)
      if (ids[static_cast<size_t>(i)] < 0 || ids[static_cast<size_t>(i)] >= p.V) {
        *p.first_bad = i;
        *p.bad_id = ids[static_cast<size_t>(i)];
        break;
      }
    return;
  }
  const Dt dt = dt_of("embedding", p.dtype);
  if (p.op == backend::EmbeddingOp::Gather) {
    embedding_gather(device, dt, p.ids, p.n, p.C, p.src, p.dst);
    return;
  }
  // ScatterAdd: the CPU's stable counting sort of positions by id, on the host, so that each
  // row then adds its gradients in position order on the device (deterministic, no atomics).
  if (p.V <= 0 || p.C <= 0) return;
  const std::vector<int32_t> ids = download(device, p.ids, p.n);
  std::vector<int64_t> start(static_cast<size_t>(p.V) + 1, 0);
  for (int32_t id : ids) ++start[static_cast<size_t>(id) + 1];
  for (int64_t v = 0; v < p.V; ++v) start[static_cast<size_t>(v) + 1] += start[static_cast<size_t>(v)];
  std::vector<int64_t> order(ids.size());
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (size_t i = 0; i < ids.size(); ++i) order[static_cast<size_t>(next[static_cast<size_t>(ids[i])]++)] = static_cast<int64_t>(i);
  Scratch start_d = upload(device, start);
  Scratch order_d = upload(device, order);
  embedding_scatter_add(device, dt, start_d.as<int64_t>(), order_d.as<int64_t>(), p.V, p.C, p.src, p.dst);
}

void cross_entropy(const backend::CrossEntropyParams& p) {
  const int device = p.device.index;
  if (p.op == backend::CrossEntropyOp::CheckTargets) {
    const std::vector<int32_t> t = download(device, p.targets, p.N);
    *p.first_bad = -1;
    *p.bad_target = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < p.N; ++i) {
      const int32_t v = t[static_cast<size_t>(i)];
      if (v == p.ignore_index) continue;
      ++count;
      if (*p.first_bad < 0 && (v < 0 || v >= p.V)) {
        *p.first_bad = i;
        *p.bad_target = v;
      }
    }
    *p.count = count;
    return;
  }
  CrossEntropyArgs a;
  a.device = device;
  a.dt = dt_of("cross_entropy", p.dtype);
  a.backward = p.op == backend::CrossEntropyOp::Backward;
  a.logits = p.logits;
  a.ld = p.ld;
  a.N = p.N;
  a.V = p.V;
  a.targets = p.targets;
  a.ignore_index = p.ignore_index;
  a.lse = p.lse;
  a.scale = p.scale;
  a.dlogits = p.dlogits;
  run_loss(a, p.N, p.row_loss, [](const CrossEntropyArgs& x) { cuda::cross_entropy(x); });
}

void distill_loss(const backend::DistillLossParams& p) {
  const int device = p.device.index;
  DistillArgs a;
  a.device = device;
  a.dt = dt_of("distill_loss", p.dtype);
  a.backward = p.op == backend::DistillLossOp::Backward;
  a.student = p.student;
  a.teacher = p.teacher;
  a.ld = p.ld;
  a.N = p.N;
  a.V = p.V;
  a.targets = p.targets;
  a.ignore_index = p.ignore_index;
  a.temperature = p.temperature;
  a.lse_student = p.lse_student;
  a.lse_teacher = p.lse_teacher;
  a.scale = p.scale;
  a.dstudent = p.dstudent;
  run_loss(a, p.N, p.row_loss, [](const DistillArgs& x) { cuda::distill_loss(x); });
}

void dropout(const backend::DropoutParams& p) {
  const int device = p.device.index;
  const Dt dt = dt_of("dropout", p.dtype);
  // u = w / 2^32 >= p  <=>  w >= ceil(p * 2^32), as on the CPU.
  const auto threshold = static_cast<uint64_t>(std::ceil(p.p * 4294967296.0));
  const double keep_scale = 1.0 / (1.0 - p.p);
  if (!p.row_offsets) {
    cuda::dropout(device, dt, p.x, p.y, p.n, threshold, keep_scale, p.seed, backend::kDropoutStream, p.offset,
                  nullptr, 0);
    return;
  }
  if (p.rows <= 0 || p.row_len <= 0) return;
  Scratch offsets = upload(device, std::vector<uint64_t>(p.row_offsets, p.row_offsets + p.rows));
  cuda::dropout(device, dt, p.x, p.y, p.rows * p.row_len, threshold, keep_scale, p.seed, backend::kDropoutStream, 0,
                offsets.as<uint64_t>(), p.row_len);
}

void adamw_update(const backend::AdamWParams& p) {
  // The CPU kernel's folded scalars (framework/backend/cpu/adamw.cpp).
  AdamWArgs a;
  a.device = p.device.index;
  a.dt = dt_of("adamw_update", p.dtype);
  a.n = p.n;
  a.decay = 1.0 - p.lr * p.weight_decay;
  a.beta1 = p.beta1;
  a.one_minus_beta1 = 1.0 - p.beta1;
  a.beta2 = p.beta2;
  a.one_minus_beta2 = 1.0 - p.beta2;
  a.step_size = p.lr / p.bias_correction1;
  a.inv_sqrt_bc2 = 1.0 / std::sqrt(p.bias_correction2);
  a.eps = p.eps;
  a.param = p.param;
  a.grad = p.grad;
  a.m = p.m;
  a.v = p.v;
  adamw(a);
}

void clip_grad(const backend::ClipParams& p) {
  const int device = p.device.index;
  const Dt dt = dt_of("clip_grad", p.dtype);
  if (p.op == backend::ClipOp::Scale) {
    scale_inplace(device, dt, p.n, p.x, p.scale);
    return;
  }
  if (p.n <= 0) {
    *p.sum = 0;
    return;
  }
  const int64_t blocks = (p.n + kClipBlock - 1) / kClipBlock;
  Scratch partial(device, static_cast<size_t>(blocks) * sizeof(double));
  sum_squares_blocks(device, dt, p.n, p.x, partial.as<double>());
  // Blocks added in order on the host, as the CPU adds its blocks.
  double total = 0;
  for (double s : download(device, partial.as<double>(), blocks)) total += s;
  *p.sum = total;
}

void copy_blocks(const backend::CopyBlocksParams& p) {
  cuda::copy_blocks(p.device.index, p.dst, p.dst_stride, p.src, p.src_stride, p.rows, p.row_bytes);
}

}  // namespace strand::cuda
