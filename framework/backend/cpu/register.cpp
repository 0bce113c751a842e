// Registers the CPU implementation of every kernel family with the device seam (registry.h).
#include "framework/backend/registry.h"

#include "framework/backend/cpu/attention_kernels.h"
#include "framework/backend/cpu/attention_reference.h"
#include "framework/backend/cpu/linear_attention.h"

namespace strand::backend {

void register_cpu_kernels() {
  // One register_kernel<FamilyParams>(DeviceType::CPU, &cpu::family) line per kernel family.

  // Attention (framework/backend/attention.h).
  register_kernel<AttentionForwardParams>(DeviceType::CPU, &cpu::attention_forward_kernel);
  register_kernel<AttentionBackwardParams>(DeviceType::CPU, &cpu::attention_backward_kernel);
  register_kernel<AttentionMergeParams>(DeviceType::CPU, &cpu::attention_merge_forward_kernel);
  register_kernel<AttentionMergeBackwardParams>(DeviceType::CPU, &cpu::attention_merge_backward_kernel);
  register_kernel<AttentionAddRowsParams>(DeviceType::CPU, &cpu::attention_add_rows_kernel);
  register_kernel<AttentionReferenceForwardParams>(DeviceType::CPU, &cpu::attention_reference_forward_kernel);
  register_kernel<AttentionReferenceBackwardParams>(DeviceType::CPU, &cpu::attention_reference_backward_kernel);
  register_kernel<LinearAttentionForwardParams>(DeviceType::CPU, &cpu::linear_attention_forward_kernel);
  register_kernel<LinearAttentionBackwardParams>(DeviceType::CPU, &cpu::linear_attention_backward_kernel);
}

}  // namespace strand::backend
