// Registers the CUDA implementation of each kernel family with the device seam (registry.h).
// A .cpp (host C++20) that names the launchers the .cu files define.
#include "framework/backend/cuda/attention_launch.h"
#include "framework/backend/cuda/ops.h"
#include "framework/backend/registry.h"

namespace strand::backend {

void register_cuda_kernels() {
  // One register_kernel<FamilyParams>(DeviceType::CUDA, &cuda::family) line per kernel family.
  register_kernel<MapParams>(DeviceType::CUDA, &cuda::elementwise_map);
  register_kernel<BinaryParams>(DeviceType::CUDA, &cuda::elementwise_binary);
  register_kernel<ActivationGradParams>(DeviceType::CUDA, &cuda::activation_grad);
  register_kernel<AxpyParams>(DeviceType::CUDA, &cuda::axpy);
  register_kernel<ReduceRowsParams>(DeviceType::CUDA, &cuda::reduce_rows);
  register_kernel<GemmParams>(DeviceType::CUDA, &cuda::gemm);
  register_kernel<SoftmaxParams>(DeviceType::CUDA, &cuda::softmax_rows);
  register_kernel<NormParams>(DeviceType::CUDA, &cuda::norm_rows);
  register_kernel<EmbeddingParams>(DeviceType::CUDA, &cuda::embedding);
  register_kernel<CrossEntropyParams>(DeviceType::CUDA, &cuda::cross_entropy);
  register_kernel<DistillLossParams>(DeviceType::CUDA, &cuda::distill_loss);
  register_kernel<DropoutParams>(DeviceType::CUDA, &cuda::dropout);
  register_kernel<CopyBlocksParams>(DeviceType::CUDA, &cuda::copy_blocks);
  register_kernel<RopeParams>(DeviceType::CUDA, &cuda::rope);
  register_kernel<AdamWParams>(DeviceType::CUDA, &cuda::adamw_update);
  register_kernel<ClipParams>(DeviceType::CUDA, &cuda::clip_grad);
  register_kernel<AttentionForwardParams>(DeviceType::CUDA, &cuda::attention_forward_kernel);
  register_kernel<AttentionBackwardParams>(DeviceType::CUDA, &cuda::attention_backward_kernel);
  register_kernel<AttentionMergeParams>(DeviceType::CUDA, &cuda::attention_merge_forward_kernel);
  register_kernel<AttentionMergeBackwardParams>(DeviceType::CUDA, &cuda::attention_merge_backward_kernel);
  register_kernel<AttentionAddRowsParams>(DeviceType::CUDA, &cuda::attention_add_rows_kernel);
}

}  // namespace strand::backend
