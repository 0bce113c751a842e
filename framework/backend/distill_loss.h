// Device-neutral entry point of the logit-distillation kernels: per row, the temperature-scaled
// KL(softmax(teacher / T) || softmax(student / T)) and its gradient in the student's logits.
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

enum class DistillLossOp {
  Forward,   // lse_s[r], lse_t[r]: log-sum-exp of student / T and teacher / T; row_loss[r] =
             // T^2 KL(p_t || p_s) (all 0 on ignored rows)
  Backward,  // dstudent = scale * T * (softmax(student / T) - softmax(teacher / T)), zero rows
             // where ignored
};

// student and teacher: row r at ptr + r * ld, V unit-stride logits; targets [N] int32 say only
// which rows are scored (ignore_index: not scored).
struct DistillLossParams {
  Device device;
  DType dtype = DType::F32;  // of the logits, lse and dstudent
  DistillLossOp op = DistillLossOp::Forward;
  const void* student = nullptr;
  const void* teacher = nullptr;
  int64_t ld = 0, N = 0, V = 0;
  const int32_t* targets = nullptr;
  int32_t ignore_index = -100;
  double temperature = 1.0;
  void* lse_student = nullptr;  // [N]: Forward writes, Backward reads
  void* lse_teacher = nullptr;  // [N]: Forward writes, Backward reads
  double* row_loss = nullptr;   // [N] host memory, Forward
  double scale = 1;             // Backward: incoming gradient over the divisor of the loss
  void* dstudent = nullptr;     // [N, V] contiguous, Backward
};

inline void distill_loss(const DistillLossParams& p) { launch("distill_loss", p); }

}  // namespace strand::backend
