// What the parser (config.cpp) and the rule check (rules.cpp) share: where each key was
// written, for errors; the emitter's number format; and the check that follows parsing.
#pragma once
#include <string>

#include "framework/config/config.h"

namespace strand::config::detail {

// Where the keys of one parse came from.
class KeySource {
 public:
  virtual ~KeySource() = default;
  // "cfg.yaml:12", "--set train.lr=1" or, for a key left at its default, the source's name.
  virtual std::string where(const std::string& key) const = 0;
  // Written in the file or by a --set.
  virtual bool given(const std::string& key) const = 0;
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ConfigError(where(key) + ": key '" + key + "': " + what);
  }
};

// Shortest text that reads back to the same double ("0.0003", "1.0", "6.02e+23").
std::string format_real(double v);

// Fills the defaults that derive from other keys (n_kv_head, d_ff, checkpoint.dir, the auto
// layout), refuses keys whose feature is not built, then checks every rule that spans keys.
void resolve_and_check(Config& c, const KeySource& keys);

}  // namespace strand::config::detail
