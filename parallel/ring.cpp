// Ring attention over the contiguous layout: the forward (K/V blocks around the ring, partial
// results merged by lse) and its backward node (K, V and their gradient accumulators travel together).
#include "parallel/ring.h"

#include <cmath>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "framework/autograd/grad_mode.h"
#include "framework/autograd/node.h"
#include "framework/backend/cpu/attention_mask.h"
#include "framework/backend/cpu/loops.h"
#include "framework/core/error.h"
#include "framework/ops/dispatch.h"
#include "framework/ops/attention_args.h"

namespace strand::parallel {
namespace {

using ops::check_cpu;
using ops::check_same_dtype;
using ops::dispatch_float;

// Tags of one call: forward step s sends K, V with kTagBase + 2s + {0, 1}; backward step s uses
// kTagBase + 2P + 4s + {0..3}. Distinct per step so a fast rank's next block never matches a
// slow rank's pending receive (MPI keeps order per tag, so repeated calls are safe too).
constexpr int kTagBase = 7100;

// The tensor the kernels read and the ring sends: contiguous, in the compute dtype (float32 for bfloat16).
Tensor kernel_tensor(const Tensor& t, DType compute) {
  return t.dtype() == compute && t.is_contiguous() ? t : t.copy_as(compute, t.device());
}

DType compute_dtype(DType t) { return t == DType::BF16 ? DType::F32 : t; }

// The global mask with the block offsets of queries from rank q_rank and keys from rank k_rank.
MaskSpec block_mask(const MaskSpec& global, int q_rank, int k_rank, int64_t n) {
  MaskSpec m = global;
  m.q_offset = q_rank * n;
  m.k_offset = k_rank * n;
  return m;
}

// True when no query of rank q_rank's rows attends any key of rank k_rank's rows, in any batch row.
bool block_empty(const cpu::MaskPlan& plan, int64_t batch, int q_rank, int k_rank, int64_t n) {
  for (int64_t b = 0; b < batch; ++b)
    if (plan.classify(b, q_rank * n, (q_rank + 1) * n, k_rank * n, (k_rank + 1) * n) != cpu::TileClass::Empty)
      return false;
  return true;
}

// acc += x elementwise (same shape and dtype, contiguous); a fixed order, so deterministic.
void accumulate(Tensor& acc, const Tensor& x) {
  dispatch_float("ring_attention backward", acc.dtype(), [&]<class T>() {
    T* a = acc.data<T>();
    const T* b = x.data<T>();
    const int64_t count = acc.numel();
#pragma omp parallel for simd if (count > cpu::kParallelGrain)
    for (int64_t i = 0; i < count; ++i) a[i] += b[i];
  });
  acc.bump_version();
}

using Requests = std::vector<std::unique_ptr<Request>>;

// One travelling block of a ring pass: this rank's own tensor at step 0, then two buffers taking
// turns, so the block being sent is never the one being received into and the caller's (or the
// graph's saved) tensor is never written.
struct RingBlock {
  Tensor local;
  Tensor buffers[2];
  explicit RingBlock(Tensor own) : local(std::move(own)) {
    for (Tensor& b : buffers) b = Tensor::empty(local.shape(), local.dtype());
  }
  Tensor& current(int step) { return step == 0 ? local : buffers[(step - 1) % 2]; }
  Tensor& incoming(int step) { return buffers[step % 2]; }
};

void wait_all(Requests& reqs) {
  for (auto& r : reqs) r->wait();
  reqs.clear();
}

void check_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  ops::check_attention_inputs(op, q, k, v);
  STRAND_CHECK(k.shape()[2] == q.shape()[2], ShapeError, op, ": q ", shape_str(q.shape()), " and k ",
               shape_str(k.shape()), " must hold the same rows per rank n (contiguous layout)");
}

// Backward: one ring pass. At step s this rank holds the K/V block of rank src = r - s and the
// running dK, dV of that block; the kernel, given the *global* o and lse of this rank's queries,
// computes the block's exact probabilities, so its dq, dk, dv are the block's exact share.
// The dK, dV accumulators take one hop more than K, V and end at their owner after P steps.
struct RingAttentionBackward final : autograd::Node {
  MaskSpec mask;  // global: offsets are set per block
  double scale;
  DType dtype;  // of q, k, v
  Group* sp;

  RingAttentionBackward(MaskSpec m, double s, DType dt, Group* group)
      : Node("ring_attention"), mask(std::move(m)), scale(s), dtype(dt), sp(group) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    const DType ct = compute_dtype(dtype);
    const Tensor q = kernel_tensor(saved(0), ct), o = kernel_tensor(saved(3), ct), lse = kernel_tensor(saved(4), ct);
    const Tensor d_o = kernel_tensor(g[0], ct), d_lse = kernel_tensor(g[1], ct);
    RingBlock k_block(kernel_tensor(saved(1), ct)), v_block(kernel_tensor(saved(2), ct));
    const int p_size = sp->size(), r = sp->rank(), next = (r + 1) % p_size, prev = (r + p_size - 1) % p_size;
    const int64_t batch = q.shape()[0], n = q.shape()[2];
    const cpu::MaskPlan plan(mask, batch, p_size * n, p_size * n, "ring_attention backward");

    const Shape ks = k_block.local.shape();
    Tensor dq = Tensor::zeros(q.shape(), ct), cur_dk = Tensor::zeros(ks, ct), cur_dv = Tensor::zeros(ks, ct);
    Tensor next_dk = Tensor::empty(ks, ct), next_dv = Tensor::empty(ks, ct);
    Tensor dq_b = Tensor::empty(q.shape(), ct), dk_b = Tensor::empty(ks, ct), dv_b = Tensor::empty(ks, ct);

    for (int s = 0; s < p_size; ++s) {
      const int src = (r - s + p_size) % p_size;
      const int tag = kTagBase + 2 * p_size + 4 * s;
      const Tensor& cur_k = k_block.current(s);
      const Tensor& cur_v = v_block.current(s);
      Requests kv;
      if (s + 1 < p_size) {  // the next K/V block travels while this one is computed
        kv.push_back(sp->irecv(k_block.incoming(s), prev, tag));
        kv.push_back(sp->irecv(v_block.incoming(s), prev, tag + 1));
        kv.push_back(sp->isend(cur_k, next, tag));
        kv.push_back(sp->isend(cur_v, next, tag + 1));
      }
      if (!block_empty(plan, batch, r, src, n)) {
        const MaskSpec bm = block_mask(mask, r, src, n);
        cpu::AttentionParams p = ops::make_attention_params(q, cur_k, cur_v, &bm, scale);
        ops::set_attention_outputs(p, o, lse);
        ops::set_attention_grads(p, d_o, d_lse, dq_b, dk_b, dv_b);
        dispatch_float("ring_attention backward", ct, [&]<class T>() { cpu::attention_backward<T>(p); });
        accumulate(dq, dq_b);
        accumulate(cur_dk, dk_b);
        accumulate(cur_dv, dv_b);
      }
      if (p_size > 1) {  // the accumulators move on only once this step has added to them
        Requests grads;
        grads.push_back(sp->irecv(next_dk, prev, tag + 2));
        grads.push_back(sp->irecv(next_dv, prev, tag + 3));
        grads.push_back(sp->isend(cur_dk, next, tag + 2));
        grads.push_back(sp->isend(cur_dv, next, tag + 3));
        wait_all(grads);
        std::swap(cur_dk, next_dk);
        std::swap(cur_dv, next_dv);
      }
      wait_all(kv);
    }
    if (dtype == ct) return {dq, cur_dk, cur_dv};
    return {dq.copy_as(dtype, dq.device()), cur_dk.copy_as(dtype, dq.device()), cur_dv.copy_as(dtype, dq.device())};
  }
};

}  // namespace

ops::AttentionOutput ring_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                    double scale, Group& sp) {
  const char* op = "ring_attention";
  check_inputs(op, q, k, v);
  const int p_size = sp.size(), r = sp.rank(), next = (r + 1) % p_size, prev = (r + p_size - 1) % p_size;
  const int64_t batch = q.shape()[0], n = q.shape()[2], d = q.shape()[3];
  MaskSpec global = mask;
  global.q_offset = 0;
  global.k_offset = 0;
  if (global.seq_len == 0) global.seq_len = p_size * n;
  // Validates the spec against the whole sequence on every rank alike, before any message is posted.
  const cpu::MaskPlan plan(global, batch, p_size * n, p_size * n, op);
  const double s = scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(d));

  const DType ct = compute_dtype(q.dtype());
  const Tensor qc = kernel_tensor(q, ct);
  RingBlock k_block(kernel_tensor(k, ct)), v_block(kernel_tensor(v, ct));
  Tensor o, lse;  // the merge of the blocks computed so far; undefined until the first
  {
    autograd::NoGradGuard no_grad;  // the partials record nothing: the ring node differentiates the whole
    for (int step = 0; step < p_size; ++step) {
      const int src = (r - step + p_size) % p_size;
      const int tag = kTagBase + 2 * step;
      const Tensor& cur_k = k_block.current(step);
      const Tensor& cur_v = v_block.current(step);
      Requests kv;
      if (step + 1 < p_size) {  // post the next block's transfer before computing on this one
        kv.push_back(sp.irecv(k_block.incoming(step), prev, tag));
        kv.push_back(sp.irecv(v_block.incoming(step), prev, tag + 1));
        kv.push_back(sp.isend(cur_k, next, tag));
        kv.push_back(sp.isend(cur_v, next, tag + 1));
      }
      if (!block_empty(plan, batch, r, src, n)) {
        ops::AttentionOutput part = ops::attention(qc, cur_k, cur_v, block_mask(global, r, src, n), s);
        if (!o.defined()) {
          o = part.o;
          lse = part.lse;
        } else {
          ops::AttentionOutput merged = ops::merge_attention(o, lse, part.o, part.lse);
          o = merged.o;
          lse = merged.lse;
        }
      }
      wait_all(kv);
    }
  }
  if (!o.defined()) {  // every key of the sequence masked for these queries
    o = Tensor::zeros(q.shape(), ct);
    lse = Tensor::full({batch, q.shape()[1], n}, -std::numeric_limits<double>::infinity(), ct);
  }
  Tensor o_out = q.dtype() == ct ? o : o.copy_as(q.dtype(), o.device());
  if (auto node = autograd::make_node<RingAttentionBackward>({&q, &k, &v}, global, s, q.dtype(), &sp)) {
    for (const Tensor& t : {q, k, v, o, lse}) node->save(t);
    autograd::set_history(node, {&o_out, &lse});
  }
  return {o_out, lse};
}

}  // namespace strand::parallel
