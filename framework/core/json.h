// The JSON text of a string and of a number, shared by every writer of JSON (checkpoint headers,
// metrics.jsonl, the eval and bench reports), so all of them escape and round-trip alike.
#pragma once
#include <string>

namespace strand {

// `text` as a JSON string, quotes included: `"` and `\` are backslash-escaped, every control
// character (below 0x20) is written \u00XX, and all other bytes (UTF-8 included) pass through.
std::string json_string(const std::string& text);
// Appends json_string(text) to `out`.
void append_json_string(std::string& out, const std::string& text);

// A finite number in the shortest form that reads back to the same double (at most 17
// significant digits), or `null` for NaN and infinities (JSON has neither).
std::string json_number(double value);

}  // namespace strand
