// The CPU INT8 attention forward for inference (Note [INT8 scores] in attention_int8.cpp), behind
// framework/backend/attention.h's AttentionInt8ForwardParams.
#pragma once
#include "framework/backend/attention.h"

namespace strand::cpu {

// True when this CPU has AVX512-VNNI (and AVX512-BW): the integer scores use vpdpbusd.
bool cpu_has_vnni();

// o and lse from float32 q, k, v with INT8 scores; p.generic forces the portable integer path.
void attention_forward_int8_kernel(const backend::AttentionInt8ForwardParams& p);

}  // namespace strand::cpu
