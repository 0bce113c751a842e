// GradSync: bucketed weight-gradient all-reduce, each bucket started by a post-accumulate hook as
// soon as its gradients are final, so that communication overlaps the rest of the backward pass.
//
// Note [Bucket order]
// MPI (and NCCL) match collectives on a communicator by the order in which ranks call them, not
// by buffer or tag: every rank must start the buckets' all-reduces in the same order. Two
// sources start them. (1) Hooks during the armed backward pass: every rank runs the same program
// on the same model, so the autograd engine visits the same graph in the same topological order,
// the same leaves' accumulators run in the same order, and the same buckets fill up in the same
// order on every rank (the data differ; the graph does not). (2) finish(): the buckets left over
// (some parameter got no gradient in the armed pass) start in bucket-index order. Whether a bucket
// is skipped (none of its parameters has a gradient) is decided from this rank's .grad fields
// only, which are the same on every rank for the same reason, so no extra collective is needed.
// A model whose graph depends on the data of one rank (a branch on a rank-local value) breaks
// this and is not supported.
#include "parallel/grad_sync.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <unordered_set>

#include "framework/autograd/grad_mode.h"
#include "framework/autograd/node.h"
#include "framework/core/error.h"
#include "framework/ops/elementwise.h"

namespace strand::parallel {

namespace {

// A bucket's flat buffer seen as a contiguous tensor of `shape` from element `offset` on.
Tensor flat_view(const Tensor& flat, const Shape& shape, int64_t offset) {
  Shape strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * shape[i + 1];
  return flat.as_strided(shape, strides, offset);
}

// g = src * scale, the fast way for float32 contiguous host tensors (the trainer's case), and
// through a copy for anything else (device tensors, strided gradients set by hand).
void write_scaled(Tensor& g, const Tensor& src, double scale) {
  if (g.device().is_cpu() && src.device().is_cpu() && g.is_contiguous() && src.is_contiguous() &&
      g.dtype() == DType::F32 && src.dtype() == DType::F32) {
    float* out = g.data<float>();
    const float* in = src.data<float>();
    const float s = static_cast<float>(scale);
    const int64_t n = g.numel();
    #pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) out[i] = in[i] * s;
    g.bump_version();
    return;
  }
  autograd::NoGradGuard no_grad;
  g.copy_from(scale == 1.0 ? src : ops::mul_scalar(src, scale));
}

}  // namespace

struct GradSync::State {
  struct Bucket {
    std::vector<size_t> members;   // indices into params, in reverse model order
    std::vector<int64_t> offsets;  // of each member in the flat buffer
    int64_t numel = 0;
    int64_t ready = 0;             // members whose hook ran in the armed pass
    bool started = false;
    Tensor flat;                   // [numel] in the wire dtype while its all-reduce is in flight
    std::unique_ptr<Request> request;
  };

  State(std::vector<Tensor> p, Group& g, DType wire) : params(std::move(p)), group(g), wire_dtype(wire) {}

  std::vector<Tensor> params;
  Group& group;
  DType wire_dtype;
  std::vector<Bucket> buckets;
  std::vector<size_t> bucket_of;  // param index -> bucket index
  std::vector<int> hook_ids;      // param index -> hook id
  bool armed = false;
  int64_t started_in_backward = 0;      // this armed pass so far
  int64_t last_started_in_backward = 0;  // of the last finish()

  // The hook of parameter i: counts it in its bucket, and starts the bucket once all are in.
  void on_gradient_final(size_t i) {
    if (!armed) return;  // an earlier micro-batch: gradients only accumulate
    Bucket& b = buckets[bucket_of[i]];
    STRAND_CHECK(!b.started, ValueError, "GradSync: parameter ", i, " ", describe(params[i]),
                 " received a gradient after its bucket's all-reduce started (a second backward pass "
                 "between arm() and finish()?)");
    if (++b.ready == static_cast<int64_t>(b.members.size())) {
      start(b);
      ++started_in_backward;
    }
  }

  bool has_any_gradient(const Bucket& b) const {
    return std::any_of(b.members.begin(), b.members.end(), [&](size_t i) { return params[i].grad().defined(); });
  }
  bool has_every_gradient(const Bucket& b) const {
    return std::all_of(b.members.begin(), b.members.end(), [&](size_t i) { return params[i].grad().defined(); });
  }

  // Copies the bucket's gradients (zeros for members without one) into a fresh flat buffer and
  // starts its all-reduce. One rank alone has nothing to sum: finish() scales in place instead.
  void start(Bucket& b) {
    b.started = true;
    if (group.size() == 1) return;
    // Completing earlier requests here gives MPI a chance to progress them during the backward
    // pass (most implementations only move a non-blocking collective inside an MPI call).
    for (Bucket& other : buckets)
      if (other.request) other.request->test();
    const Device device = params[b.members.front()].device();
    b.flat = has_every_gradient(b) ? Tensor::empty({b.numel}, wire_dtype, device)
                                   : Tensor::zeros({b.numel}, wire_dtype, device);
    for (size_t k = 0; k < b.members.size(); ++k) {
      const Tensor& p = params[b.members[k]];
      const Tensor g = p.grad();
      if (g.defined()) flat_view(b.flat, p.shape(), b.offsets[k]).copy_from(g);
    }
    b.request = group.iall_reduce(b.flat, ReduceOp::Sum);
  }

  // Waits for the bucket and writes sum * scale into each member's gradient.
  void complete(Bucket& b, double scale) {
    if (b.request) b.request->wait();
    // A bfloat16 sum is widened once, so that the scaling below rounds only to float32.
    if (b.flat.defined() && b.flat.dtype() != DType::F32) b.flat = b.flat.copy_as(DType::F32, b.flat.device());
    for (size_t k = 0; k < b.members.size(); ++k) {
      Tensor g = params[b.members[k]].grad();
      if (!g.defined()) continue;  // no gradient anywhere (Note [Bucket order]): stays without
      if (!b.flat.defined()) {     // one rank: the sum is this rank's gradient
        if (scale != 1.0) write_scaled(g, g, scale);
        continue;
      }
      write_scaled(g, flat_view(b.flat, g.shape(), b.offsets[k]), scale);
    }
    reset(b);
  }

  static void reset(Bucket& b) {
    b.ready = 0;
    b.started = false;
    b.request.reset();
    b.flat = Tensor();
  }
};

GradSync::GradSync(std::vector<Tensor> params, Group& group, int64_t bucket_bytes, DType wire_dtype)
    : state_(std::make_unique<State>(std::move(params), group, wire_dtype)) {
  State& s = *state_;
  STRAND_CHECK(bucket_bytes > 0, ValueError, "GradSync: bucket_bytes must be positive, got ", bucket_bytes);
  STRAND_CHECK(wire_dtype == DType::F32 || wire_dtype == DType::BF16, DTypeError,
               "GradSync: gradients are summed in float32 or bfloat16, not ", dtype_name(wire_dtype));
  std::unordered_set<const TensorImpl*> seen;
  for (size_t i = 0; i < s.params.size(); ++i) {
    const Tensor& p = s.params[i];
    STRAND_CHECK(p.defined() && p.requires_grad() && p.is_leaf(), ValueError, "GradSync: parameter ", i,
                 " is not a leaf that requires grad");
    STRAND_CHECK(p.dtype() == DType::F32, DTypeError, "GradSync: parameter ", i, " ", describe(p),
                 " is not float32");
    STRAND_CHECK(p.device() == s.params.front().device(), DeviceError, "GradSync: parameter ", i, " ",
                 describe(p), " is not on the device of parameter 0, ", describe(s.params.front()));
    STRAND_CHECK(seen.insert(p.impl().get()).second, ValueError, "GradSync: parameter ", i, " ", describe(p),
                 " is listed twice");
  }

  // Buckets in reverse model order, the order backward finishes gradients: a bucket closes when
  // the next parameter would take it past bucket_bytes (a larger parameter gets one of its own).
  s.bucket_of.assign(s.params.size(), 0);
  for (size_t r = s.params.size(); r-- > 0;) {
    const int64_t numel = s.params[r].numel();
    const int64_t bytes = numel * static_cast<int64_t>(sizeof(float));
    if (s.buckets.empty() ||
        (!s.buckets.back().members.empty() &&
         (s.buckets.back().numel * static_cast<int64_t>(sizeof(float)) + bytes > bucket_bytes)))
      s.buckets.emplace_back();
    State::Bucket& b = s.buckets.back();
    s.bucket_of[r] = s.buckets.size() - 1;
    b.members.push_back(r);
    b.offsets.push_back(b.numel);
    b.numel += numel;
  }

  // Different layouts on different ranks would make the all-reduces disagree in size: check the
  // bucket count and sizes once here (a collective over group) rather than fail obscurely later.
  if (group.size() > 1) {
    uint64_t hash = s.buckets.size();
    for (const State::Bucket& b : s.buckets)
      hash = (hash ^ static_cast<uint64_t>(b.numel) ^ (b.members.size() << 48)) * 0x100000001B3ull;
    const auto fingerprint = static_cast<int64_t>(hash);
    std::vector<int64_t> lo{fingerprint}, hi{fingerprint};
    group.all_reduce(std::span<int64_t>(lo), ReduceOp::Min);
    group.all_reduce(std::span<int64_t>(hi), ReduceOp::Max);
    STRAND_CHECK(lo[0] == hi[0], ValueError, "GradSync: ranks hold different parameter shapes (", s.params.size(),
                 " parameters, ", s.buckets.size(), " buckets on rank ", group.rank(), ")");
  }

  s.hook_ids.resize(s.params.size());
  State* state = state_.get();
  for (size_t i = 0; i < s.params.size(); ++i)
    s.hook_ids[i] = autograd::add_post_accumulate_hook(s.params[i], [state, i] { state->on_gradient_final(i); });
}

GradSync::~GradSync() {
  State& s = *state_;
  for (size_t i = 0; i < s.params.size(); ++i) autograd::remove_post_accumulate_hook(s.params[i], s.hook_ids[i]);
  // Destroyed while an exception unwinds (a failing step): a request's destructor would wait for
  // its all-reduce, which may never complete if other ranks stopped short of it, delaying the
  // abort that ends the job. Leak it instead: the request keeps its buffer alive, so MPI never
  // writes into freed memory. Otherwise (normal destruction) the requests complete on destruction.
  if (std::uncaught_exceptions() > 0) {
    for (State::Bucket& b : s.buckets) (void)b.request.release();
  }
}

void GradSync::arm() {
  State& s = *state_;
  for (const State::Bucket& b : s.buckets) {
    STRAND_CHECK(!b.started, ValueError,
                 "GradSync::arm: buckets of the previous armed pass are still in flight (finish() was not called)");
  }
  for (State::Bucket& b : s.buckets) b.ready = 0;
  s.started_in_backward = 0;
  s.armed = true;
}

void GradSync::finish(double scale) {
  State& s = *state_;
  s.armed = false;
  // Note [Bucket order]: the rest start in index order, skipped alike on every rank.
  for (State::Bucket& b : s.buckets) {
    if (!b.started && s.has_any_gradient(b)) s.start(b);
  }
  for (State::Bucket& b : s.buckets) {
    if (b.started) s.complete(b, scale);
  }
  s.last_started_in_backward = s.started_in_backward;
  s.started_in_backward = 0;
}

int64_t GradSync::bucket_count() const { return static_cast<int64_t>(state_->buckets.size()); }

int64_t GradSync::buckets_started_in_backward() const { return state_->last_started_in_backward; }

}  // namespace strand::parallel
