// CPU kernel of the fused AdamW update on the parameters of backend/adamw.h. Plain pointers and
// sizes; no Tensor here.
#pragma once
#include "framework/backend/adamw.h"

namespace strand::cpu {

// One AdamW step (formula in backend/adamw.h); T is the parameter, gradient and moment type
// (float or double) and the arithmetic runs in T.
template <class T>
void adamw_update(const backend::AdamWParams& p, T* param, const T* grad, T* m, T* v);

// The family entry registered with the device seam: adamw_update for p.dtype.
void adamw_update(const backend::AdamWParams& p);

}  // namespace strand::cpu
