// The CPU attention kernels for bfloat16 inputs (q, k, v and d_o bf16; o, lse and the gradients
// float32): the AVX512-BF16 tile kernels and a generic path, one of them picked at run time.
#pragma once
#include <string>

#include "framework/backend/attention.h"

namespace strand::cpu {

using backend::AttentionParams;

// The entries attention_forward_kernel and attention_backward_kernel call for p.dtype == BF16.
void attention_bf16_forward(const AttentionParams& p);
void attention_bf16_backward(const AttentionParams& p);

// Which path bf16 attention takes now: "avx512bf16" (vdpbf16ps tiles) or "generic" (the float32
// kernels on the inputs widened to float32). The CPU picks it; STRAND_ATTENTION_ISA=generic
// forces the generic path, =avx512bf16 insists on the tiles (an error where cpuid lacks them),
// =auto or unset leaves the choice to the CPU.
std::string attention_bf16_isa();

// The AVX512-BF16 tile kernels (attention_bf16_forward.cpp, attention_bf16_backward.cpp). They
// need an even D and even row strides (D pairs are read as 32-bit words).
void attention_bf16_forward_native(const AttentionParams& p);
void attention_bf16_backward_native(const AttentionParams& p);

}  // namespace strand::cpu
