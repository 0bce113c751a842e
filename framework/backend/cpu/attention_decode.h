// The CPU single-query (decode) attention kernel behind framework/backend/attention_decode.h.
#pragma once
#include "framework/backend/attention_decode.h"

namespace strand::cpu {

// T = float or double; scores, the softmax and the weighted sum of values accumulate in double.
template <class T> void attention_decode(const backend::AttentionDecodeParams& p);

// The registered entry point: attention_decode<T> for p.dtype.
void attention_decode_kernel(const backend::AttentionDecodeParams& p);

}  // namespace strand::cpu
