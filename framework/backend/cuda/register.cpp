// Registers the CUDA implementation of each kernel family with the device seam (registry.h).
// A .cpp (host C++20) that names the launchers the .cu files define.
#include "framework/backend/cuda/attention_launch.h"
#include "framework/backend/registry.h"

namespace strand::backend {

void register_cuda_kernels() {
  // One register_kernel<FamilyParams>(DeviceType::CUDA, &cuda::family) line per kernel family.
  register_kernel<AttentionForwardParams>(DeviceType::CUDA, &cuda::attention_forward_kernel);
  register_kernel<AttentionBackwardParams>(DeviceType::CUDA, &cuda::attention_backward_kernel);
  register_kernel<AttentionMergeParams>(DeviceType::CUDA, &cuda::attention_merge_forward_kernel);
  register_kernel<AttentionMergeBackwardParams>(DeviceType::CUDA, &cuda::attention_merge_backward_kernel);
  register_kernel<AttentionAddRowsParams>(DeviceType::CUDA, &cuda::attention_add_rows_kernel);
}

}  // namespace strand::backend
