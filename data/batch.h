// One step's rows as the models read them (Batch) and the ignored-target id: the light part of
// the data layer, so a model user includes neither HDF5 nor the tokenizer.
#pragma once
#include <cstdint>

#include "framework/core/tensor.h"

namespace strand::data {

// Targets equal to this are not scored (PyTorch's cross_entropy default).
inline constexpr int32_t kIgnoreIndex = -100;

struct Batch {
  Tensor inputs;          // [B, T] int32: tokens [g*T, g*T + T) of row g
  Tensor targets;         // [B, T] int32: tokens [g*T + 1, g*T + T + 1), the LM targets at every position
  Tensor answer_targets;  // [B, T] int32, synthetic tasks only: the target where it is an answer token,
                          // kIgnoreIndex elsewhere (undefined for text data)
  int64_t step = 0;       // the loader step that produced the batch
  int64_t epoch = 0;      // passes over the token stream completed before this step (0 for synthetic)
};

}  // namespace strand::data
