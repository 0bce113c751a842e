// CPU rotary position embedding kernel (GPT-NeoX / LLaMA half rotation) on the parameters of
// backend/rope.h: plain pointers and strides; no Tensor, no autograd.
#pragma once
#include "framework/backend/rope.h"

namespace strand::cpu {

using backend::RopeParams;

// T = float or double. Angles and their cos/sin are computed in double, then rounded to T.
template <class T> void rope_apply(const RopeParams& p);

// The family entry registered with the device seam: rope_apply for p.dtype.
void rope(const RopeParams& p);

}  // namespace strand::cpu
