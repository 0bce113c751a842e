// The status of every config key: implemented (with the test that checks its effect) or
// refused (its feature is not built yet, so any value but the default is a ConfigError).
#pragma once
#include <span>
#include <string>

namespace strand::config {

enum class KeyState { Implemented, Refused };

struct KeyStatus {
  const char* key;    // dotted, as config_keys() lists it
  KeyState state;
  // Implemented: the GoogleTest case ("Suite.Name") that checks what the key changes.
  // Refused: the feature that is not built ("gradient checkpointing").
  const char* note;
};

// One entry per key of config_keys(), in the same order (config_test checks both).
std::span<const KeyStatus> key_statuses();

// The entry of a dotted key; ConfigError for a key that has none.
const KeyStatus& key_status(const std::string& key);

}  // namespace strand::config
