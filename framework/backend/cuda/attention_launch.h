// The CUDA attention kernels as the device seam registers them (register.cpp): forward,
// backward, merge and row adds over the parameter structs of framework/backend/attention.h.
#pragma once
#include "framework/backend/attention.h"

namespace strand::cuda {

void attention_forward_kernel(const backend::AttentionForwardParams& p);
void attention_backward_kernel(const backend::AttentionBackwardParams& p);
void attention_merge_forward_kernel(const backend::AttentionMergeParams& p);
void attention_merge_backward_kernel(const backend::AttentionMergeBackwardParams& p);
void attention_add_rows_kernel(const backend::AttentionAddRowsParams& p);

}  // namespace strand::cuda
