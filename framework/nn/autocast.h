// The autocast policy of mixed-precision training: which dtype the matmuls and attention of
// the layers read while a guard is active (float32 everywhere else).
//
// Note [Mixed precision]
// Parameters, AdamW moments and every activation between layers stay float32 (the master
// copy). Under bf16 or fp16 compute, Linear (and the LM head, models/transformer.cpp) rounds
// its input and weight to the compute dtype and multiplies them with float32 accumulation into
// a float32 output (matmul of two bf16/f16 operands); attention rounds q, k and v to the
// compute dtype and keeps its softmax statistics in float32. Norms, activations, the loss and
// the optimizer are float32. The matmul's backward rounds the output gradient to the compute
// dtype once and runs both products in it (PyTorch's autocast, whose matmul output and so its
// gradient are bf16, does the same). The backward of each rounding (ops::to_dtype) hands the
// gradient back as float32, so the gradients that reach the master weights are float32 sums
// of low-precision products, as under PyTorch's autocast. On the CPU, Linear and the LM head
// run all of this as one op (ops::linear): the same forward values (the bias added inside the
// GEMM), the output gradient rounded once in the pass that sums the bias gradient, and dx, dw
// written in float32 by the GEMMs instead of rounded to the compute dtype and widened again. This CPU has no fp16
// arithmetic: fp16 is a storage format here (values rounded to fp16, products in float32),
// which keeps fp16's range (and so its overflows, which loss scaling handles) exactly.
#pragma once
#include "framework/core/tensor.h"

namespace strand::nn {

// The compute dtype of the calling thread: F32 (no autocast), BF16 or F16.
DType autocast_dtype();

// Sets the thread's compute dtype for its lifetime and restores the previous one after.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType compute);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType previous_;
};

// x in the compute dtype (a recorded cast) when autocast is on and x is float32; else x.
Tensor autocast(const Tensor& x);

// x rounded to the compute dtype and back to float32 (two recorded casts), for kernels that
// read float32 only; x itself when autocast is off.
Tensor autocast_round(const Tensor& x);

}  // namespace strand::nn
