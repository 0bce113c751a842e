// Device-neutral entry point of the fused cross-entropy kernels: the target check, the forward
// (per-row log-sum-exp and loss) and the backward (softmax - onehot in one pass).
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

enum class CrossEntropyOp {
  CheckTargets,  // *first_bad: first target neither ignore_index nor in [0, V) (or -1), *bad_target
                 // its value, *count: targets that are not ignore_index
  Forward,       // lse[r] = log sum_j exp(logits[r, j]), row_loss[r] = lse[r] - logits[r, target]
                 // (both 0 on ignored rows)
  Backward,      // dlogits = (exp(logits - lse) - onehot(target)) * scale, zero rows where ignored
};

// logits: row r at logits + r * ld, V unit-stride values; targets [N] int32, in range except
// for CheckTargets.
struct CrossEntropyParams {
  Device device;
  DType dtype = DType::F32;  // of logits, lse and dlogits
  CrossEntropyOp op = CrossEntropyOp::Forward;
  const void* logits = nullptr;
  int64_t ld = 0, N = 0, V = 0;
  const int32_t* targets = nullptr;
  int32_t ignore_index = -100;
  void* lse = nullptr;            // [N]: Forward writes, Backward reads
  double* row_loss = nullptr;     // [N] host memory, Forward
  double scale = 1;               // Backward: incoming gradient over the count of targets
  void* dlogits = nullptr;        // [N, V] contiguous, Backward
  int64_t* first_bad = nullptr;   // CheckTargets results, host memory
  int32_t* bad_target = nullptr;
  int64_t* count = nullptr;
};

inline void cross_entropy(const CrossEntropyParams& p) { launch("cross_entropy", p); }

}  // namespace strand::backend
