// Gradient synchronisation: weight gradients summed over every rank holding a replica (dp x sp),
// in buckets, each all-reduce started as soon as its gradients are final in the backward pass
// so that communication overlaps the rest of the backward.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "framework/core/tensor.h"
#include "parallel/comm/group.h"

namespace strand::parallel {

class GradSync {
 public:
  // params: the model's parameters (float32 leaves that require grad) in the model's order;
  // buckets of about bucket_bytes are cut in reverse order (the order backward finishes them).
  // group must outlive the GradSync; every rank passes the same parameter shapes. Collective
  // over group: every rank constructs it (it checks that the bucket layouts agree).
  // wire_dtype is what the all-reduce sums in: float32, or bfloat16 (half the bytes; each rank's
  // gradient and every partial sum rounded to bfloat16, the result widened back to float32).
  // Buckets are cut by their float32 size either way. A group of one rank sums nothing, so
  // nothing is rounded there.
  GradSync(std::vector<Tensor> params, Group& group, int64_t bucket_bytes = int64_t{25} << 20,
           DType wire_dtype = DType::F32);
  ~GradSync();  // removes the hooks
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  // Arms the hooks for the next backward pass (the last micro-batch of a step): each bucket's
  // non-blocking all-reduce starts once every gradient in it has been accumulated. Unarmed
  // passes (earlier micro-batches) only accumulate.
  void arm();
  // Starts the buckets that did not start (parameters this pass gave no gradient), waits for
  // all, and writes sum * scale back into every .grad. Parameters without a gradient on this
  // rank stay without (every rank runs the same graph, so they have none anywhere). Disarms.
  // Without arm() it sums everything here, with no overlap.
  void finish(double scale);

  int64_t bucket_count() const;
  int64_t buckets_started_in_backward() const;  // of the last finish(): how many overlapped

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace strand::parallel
