// A pruned model's kept attention heads: their record in a checkpoint (group /pruning), the
// config field every loader sets from it before building the model, and the physical removal of
// heads (slicing c_attn columns and c_proj rows) from one model's weights into a smaller model.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "framework/config/config.h"
#include "framework/io/checkpoint.h"
#include "models/model.h"

namespace strand::train {

inline constexpr const char* kPruningGroup = "pruning";

// Whether the model config has per-layer kept heads (config::ModelConfig::kept_heads).
bool is_pruned(const config::ModelConfig& model);

// The kept query and key/value heads of every layer: model.kept_heads, or all of them.
std::vector<std::vector<int64_t>> kept_query_heads(const config::ModelConfig& model);
std::vector<std::vector<int64_t>> kept_kv_heads(const config::ModelConfig& model);

// The /pruning group of a pruned model: int64 lists layer_{i}.kept_heads and
// layer_{i}.kept_kv_heads (original head indices, ascending).
io::CheckpointGroup pruning_group(const config::ModelConfig& model);

// Sets model.kept_heads and kept_kv_heads from a checkpoint's /pruning group (none: unpruned,
// the fields are cleared). Throws CheckpointError naming the file for a group that does not fit
// the model section (layer count, indices outside [0, n_head), a query head whose key/value
// head was removed).
void adopt_pruned_heads(config::Config& config, const io::CheckpointData& checkpoint);

// The heads of the checkpoint checkpoint.resume names (auto: the newest in checkpoint.dir), set
// as adopt_pruned_heads does, so that `strand train` resumes a pruned run; nothing when there is
// none to resume.
void adopt_resumed_heads(config::Config& config);

// Checks kept heads against the model section (ValueError naming the layer): ascending
// indices in range, at least one query head per layer, each kept query head's key/value head
// kept, every kept key/value head serving at least one kept query head, and with parallel.sp_mode
// ulysses or hybrid a head count per layer that the Ulysses group splits (Note [Pruned heads
// under Ulysses] in pruned_heads.cpp).
void check_kept_heads(const config::Config& config);

// The config of `config`'s model with only the heads `keep` (per layer, indices into the
// layer's current kept heads) left; key/value heads that serve no kept query head go too.
config::Config prune_config(const config::Config& config, const std::vector<std::vector<int64_t>>& keep);

// The parameters of the pruned model `to_config` (made by prune_config from `from_config`)
// sliced from the named parameters of a model of `from_config`: c_attn.weight columns and
// c_attn.bias entries of the kept q, k and v heads, c_proj.weight rows of the kept query heads;
// everything else copied. Loaded with io::load_into.
io::CheckpointData slice_heads(const config::Config& from_config, const config::Config& to_config,
                               const std::vector<std::pair<std::string, Tensor>>& from_parameters);

// Builds the model of `to_config` holding `from`'s weights minus the removed heads.
std::shared_ptr<models::Model> pruned_model(const config::Config& from_config, const models::Model& from,
                                            const config::Config& to_config);

}  // namespace strand::train
