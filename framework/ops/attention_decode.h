// Single-query attention for generation: the newest token's queries against a key/value cache
// whose slots hold keys at given global positions (framework/nn/kv_cache.h keeps them).
#pragma once
#include <cstdint>
#include <span>

#include "framework/core/tensor.h"
#include "framework/ops/attention_contract.h"

namespace strand::ops {

// q [B, Hq, 1, D] (or [B, Hq, D]) against k, v [B, Hkv, S, D] whose slot s holds the key at
// global position key_positions[s] (-1: empty, never attended). The query sits at global position
// q_position; `mask` decides which keys it attends, as in ops::attention (its offsets are
// ignored). float32 or float64, one dtype; unit stride along D (views read in place). Returns
// o [B, Hq, 1, D]. Records no gradient: generation only.
Tensor attention_decode(const Tensor& q, const Tensor& k, const Tensor& v, std::span<const int64_t> key_positions,
                        int64_t q_position, const MaskSpec& mask, double scale = 0.0);

}  // namespace strand::ops
