// A run's checkpoint directory: step-numbered files, the `latest` pointer written last, the
// keep-N rule, and resolving `checkpoint.resume` (auto | none | PATH) to a file.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "framework/io/checkpoint.h"

namespace strand::io {

class CheckpointDir {
 public:
  // keep: the newest files kept after each save; 0 keeps all. Throws CheckpointError if < 0.
  CheckpointDir(std::string dir, int64_t keep);

  const std::string& dir() const { return dir_; }
  // DIR/step_00000020.h5 (eight digits, more when the step needs them).
  std::string path_for_step(int64_t step) const;

  // Creates the directory if needed, writes the step's file (temp + rename), then `latest`
  // (temp + rename), then deletes files beyond `keep`, oldest first. Returns the file's path.
  std::string save(int64_t step, const CheckpointData& data) const;

  // The file `latest` names; without a `latest` file, the highest-numbered step file; nullopt
  // when the directory holds none. A `latest` naming a missing file is a CheckpointError.
  std::optional<std::string> latest() const;

  // (step, path) of every step_*.h5 file, ascending by step.
  std::vector<std::pair<int64_t, std::string>> list() const;

 private:
  void prune() const;

  std::string dir_;
  int64_t keep_;
};

// checkpoint.resume: "none" -> nullopt (fresh start); "auto" -> the latest file in `dir`, or
// nullopt when there is none; a directory -> its latest file (none is an error); a file path
// -> itself. A path that does not exist is a CheckpointError, never a silent fresh start.
std::optional<std::string> resolve_resume(const std::string& resume, const std::string& dir);

}  // namespace strand::io
