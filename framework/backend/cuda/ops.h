// The CUDA implementation of each non-attention kernel family, one function per parameter struct
// of the device seam (framework/backend/*.h); register.cpp registers them for DeviceType::CUDA.
#pragma once
#include "framework/backend/adamw.h"
#include "framework/backend/clip.h"
#include "framework/backend/cross_entropy.h"
#include "framework/backend/distill_loss.h"
#include "framework/backend/dropout.h"
#include "framework/backend/elementwise.h"
#include "framework/backend/embedding.h"
#include "framework/backend/gemm.h"
#include "framework/backend/join.h"
#include "framework/backend/norm.h"
#include "framework/backend/reduce.h"
#include "framework/backend/rope.h"
#include "framework/backend/softmax.h"

namespace strand::cuda {

void elementwise_map(const backend::MapParams& p);
void elementwise_binary(const backend::BinaryParams& p);
void activation_grad(const backend::ActivationGradParams& p);
void axpy(const backend::AxpyParams& p);
void reduce_rows(const backend::ReduceRowsParams& p);
void softmax_rows(const backend::SoftmaxParams& p);
void norm_rows(const backend::NormParams& p);
void rope(const backend::RopeParams& p);
void embedding(const backend::EmbeddingParams& p);
void cross_entropy(const backend::CrossEntropyParams& p);
void distill_loss(const backend::DistillLossParams& p);
void dropout(const backend::DropoutParams& p);
void adamw_update(const backend::AdamWParams& p);
void clip_grad(const backend::ClipParams& p);
void copy_blocks(const backend::CopyBlocksParams& p);
void gemm(const backend::GemmParams& p);  // gemm.cpp: cuBLASLt

}  // namespace strand::cuda
