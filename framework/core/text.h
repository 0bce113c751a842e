// Text helpers for messages: the printable form of bytes quoted from files, and the edit
// distance behind "did you mean" suggestions (config keys, subcommands).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace strand {

// `text` with every byte that is not printable UTF-8 written as \xNN: control characters (a
// newline and a terminal's escape sequences included), DEL, and bytes outside well-formed
// UTF-8. Error messages pass through it, so that bytes quoted from a file stay one line of
// plain text.
std::string printable(std::string_view text);

// Levenshtein distance: the fewest single-character insertions, deletions and substitutions
// that turn a into b.
size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace strand
