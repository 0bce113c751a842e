// Crash-safe file replacement: write under a temporary name in the same directory, fsync,
// rename over the final name, fsync the directory. A reader never sees a half-written file.
#pragma once
#include <string>

#include "framework/core/error.h"

namespace strand::io {

// Any failure to write, read or validate a checkpoint; the message names the file.
struct CheckpointError : Error { using Error::Error; };

// ".tmp-<name>-<pid>" beside `final_path`, so the rename stays within one filesystem.
std::string temp_path_for(const std::string& final_path);

// Flushes `temp_path` to disk, renames it to `final_path` (replacing it), and flushes the
// directory entry. Throws CheckpointError naming the file; removes temp_path on failure.
void commit_file(const std::string& temp_path, const std::string& final_path);

// Writes `text` to `path` through a temporary file and commit_file.
void write_text_atomically(const std::string& path, const std::string& text);

}  // namespace strand::io
