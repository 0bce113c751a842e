// Registers the CPU implementation of every kernel family with the device seam (registry.h).
#include "framework/backend/cpu/adamw.h"
#include "framework/backend/cpu/attention_decode.h"
#include "framework/backend/cpu/attention_int8.h"
#include "framework/backend/cpu/attention_kernels.h"
#include "framework/backend/cpu/attention_reference.h"
#include "framework/backend/cpu/clip.h"
#include "framework/backend/cpu/column_sum.h"
#include "framework/backend/cpu/cross_entropy.h"
#include "framework/backend/cpu/distill_loss.h"
#include "framework/backend/cpu/dropout.h"
#include "framework/backend/cpu/elementwise.h"
#include "framework/backend/cpu/embedding.h"
#include "framework/backend/cpu/gemm.h"
#include "framework/backend/cpu/join.h"
#include "framework/backend/cpu/linear_attention.h"
#include "framework/backend/cpu/norm.h"
#include "framework/backend/cpu/reduce.h"
#include "framework/backend/cpu/rope.h"
#include "framework/backend/cpu/softmax.h"
#include "framework/backend/registry.h"

namespace strand::backend {

void register_cpu_kernels() {
  constexpr DeviceType kCpu = DeviceType::CPU;
  register_kernel<MapParams>(kCpu, &cpu::elementwise_map);
  register_kernel<BinaryParams>(kCpu, &cpu::elementwise_binary);
  register_kernel<ActivationGradParams>(kCpu, &cpu::activation_grad);
  register_kernel<AxpyParams>(kCpu, &cpu::axpy);
  register_kernel<ReduceRowsParams>(kCpu, &cpu::reduce_rows);
  register_kernel<GemmParams>(kCpu, &cpu::gemm);
  register_kernel<ColumnSumCastParams>(kCpu, &cpu::column_sum_cast);
  register_kernel<SoftmaxParams>(kCpu, &cpu::softmax_rows);
  register_kernel<NormParams>(kCpu, &cpu::norm_rows);
  register_kernel<EmbeddingParams>(kCpu, &cpu::embedding);
  register_kernel<CrossEntropyParams>(kCpu, &cpu::cross_entropy);
  register_kernel<DistillLossParams>(kCpu, &cpu::distill_loss);
  register_kernel<DropoutParams>(kCpu, &cpu::dropout);
  register_kernel<CopyBlocksParams>(kCpu, &cpu::copy_blocks);
  register_kernel<RopeParams>(kCpu, &cpu::rope);
  register_kernel<AdamWParams>(kCpu, &cpu::adamw_update);
  register_kernel<ClipParams>(kCpu, &cpu::clip_grad);

  // Attention (framework/backend/attention.h).
  register_kernel<AttentionForwardParams>(kCpu, &cpu::attention_forward_kernel);
  register_kernel<AttentionBackwardParams>(kCpu, &cpu::attention_backward_kernel);
  register_kernel<AttentionInt8ForwardParams>(kCpu, &cpu::attention_forward_int8_kernel);
  register_kernel<AttentionMergeParams>(kCpu, &cpu::attention_merge_forward_kernel);
  register_kernel<AttentionMergeBackwardParams>(kCpu, &cpu::attention_merge_backward_kernel);
  register_kernel<AttentionAddRowsParams>(kCpu, &cpu::attention_add_rows_kernel);
  register_kernel<AttentionDecodeParams>(kCpu, &cpu::attention_decode_kernel);
  register_kernel<AttentionReferenceForwardParams>(kCpu, &cpu::attention_reference_forward_kernel);
  register_kernel<AttentionReferenceBackwardParams>(kCpu, &cpu::attention_reference_backward_kernel);
  register_kernel<LinearAttentionForwardParams>(kCpu, &cpu::linear_attention_forward_kernel);
  register_kernel<LinearAttentionBackwardParams>(kCpu, &cpu::linear_attention_backward_kernel);
}

}  // namespace strand::backend
