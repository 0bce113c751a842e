// A JSON document read into a tree, for readers of the JSON files runs and commands write
// (metrics.jsonl lines, the reports of other commands); json.h holds the writer's pieces.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace strand {

struct JsonValue {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0.0;                                    // Number
  std::string text;                                       // String: decoded; Number: as written
  std::vector<JsonValue> items;                           // Array
  std::vector<std::pair<std::string, JsonValue>> members;  // Object, in file order

  // The member `name` of an object, or nullptr (also for a value that is not an object).
  const JsonValue* find(const std::string& name) const;
  bool is_scalar() const { return kind != Kind::Array && kind != Kind::Object; }
};

// Parses one JSON document (RFC 8259; \u escapes outside the BMP join their surrogate pairs).
// Malformed text is a ValueError "at byte N: what was expected"; callers prefix the file name.
JsonValue parse_json(const std::string& text);

// The value written back as compact JSON text (numbers as they were written).
std::string to_json(const JsonValue& value);

}  // namespace strand
