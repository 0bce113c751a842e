// HDF5 checkpoints (architecture.md §6, docs/checkpoint-format.md): named tensors and scalars
// in groups `model`, `optimizer`, `trainer`, written by temp + rename, read back bit-exact, and
// loaded into a model's parameters with every name and shape checked.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "framework/core/tensor.h"
#include "framework/io/atomic_file.h"

namespace strand::io {

inline constexpr const char* kCheckpointFormat = "strand-checkpoint";  // file attribute `format`
inline constexpr int64_t kCheckpointVersion = 2;  // file attribute `version`; 2: checksummed datasets

// One HDF5 group. Each entry is one dataset; a '/' in a name makes subgroups ("m/<param>"),
// dots stay in the name ("transformer.h.0.ln_1.weight").
struct CheckpointGroup {
  // float32, float64 or int32 arrays of any rank (a 0-d float64 must go in float64s).
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::vector<int64_t>> int64s;    // 1-D int64 datasets
  std::map<std::string, std::vector<uint64_t>> uint64s;  // 1-D uint64 datasets (RNG states)
  std::map<std::string, double> float64s;                // scalar float64 datasets

  // Where the group came from ("ckpt.h5:/trainer"), for errors; empty when built in memory.
  std::string origin;

  void set_int(const std::string& name, int64_t value) { int64s[name] = {value}; }
  // The one-element int64 dataset `name`; CheckpointError naming origin and name otherwise.
  int64_t get_int(const std::string& name) const;
  const std::vector<int64_t>& get_ints(const std::string& name) const;
  const std::vector<uint64_t>& get_uints(const std::string& name) const;
  double get_float(const std::string& name) const;
  // The tensor `name`, or nullptr.
  const Tensor* find_tensor(const std::string& name) const;
  bool empty() const { return tensors.empty() && int64s.empty() && uint64s.empty() && float64s.empty(); }
};

struct CheckpointData {
  std::string config_yaml;  // file attribute `config`: the resolved YAML of the run
  CheckpointGroup model;    // parameter name -> float32 tensor
  CheckpointGroup optimizer;  // "m/<param>", "v/<param>" moments, int64 "step"
  CheckpointGroup trainer;  // step, tokens_seen, loader position, RNG states, loss scaler
  std::map<std::string, CheckpointGroup> extra;  // other groups, e.g. "pruning"
  int64_t version = kCheckpointVersion;  // as read from the file
  std::string source;       // the file read from; empty when built in memory
};

// Writes `data` to `path` via a temporary file in the same directory, fsync and rename: on any
// error (or crash) nothing appears under `path` and a file already there stays as it was.
// Throws CheckpointError naming the file and dataset (e.g. a bfloat16 tensor, a bad name).
void write_checkpoint(const std::string& path, const CheckpointData& data);

// Reads every group back. A missing, non-HDF5, truncated or foreign file, or one with the wrong
// `format` attribute, is one CheckpointError line naming the file.
CheckpointData read_checkpoint(const std::string& path);

// Only the `config` attribute (after the same format checks), without reading tensors.
std::string read_checkpoint_config(const std::string& path);

// Copies data.model's tensors into `params` (a module's named_parameters()). Refuses, before
// copying anything, a checkpoint whose names differ (naming the missing and unexpected ones)
// or whose shapes differ (naming the parameter and both shapes). Dtypes are converted.
void load_into(const std::vector<std::pair<std::string, Tensor>>& params, const CheckpointData& data);

}  // namespace strand::io
