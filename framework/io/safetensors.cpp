// safetensors writer and reader: the JSON header is written by hand and read by a small
// recursive-descent parser that knows exactly the JSON the format uses.
#include "framework/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "framework/core/json.h"
#include "framework/core/json_value.h"

namespace strand::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would have to swap bytes");

namespace {

// The reference implementation refuses headers above 100 MB; so do we (a corrupt length).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {
    {DType::F32, "F32"}, {DType::F64, "F64"}, {DType::BF16, "BF16"}, {DType::F16, "F16"}, {DType::I32, "I32"}};

uint64_t json_uint(const JsonValue& v, const std::string& file, const std::string& what) {
  if (v.kind != JsonValue::Kind::Number || v.text.empty() || v.text.find_first_not_of("0123456789") != std::string::npos)
    throw CheckpointError(file + ": " + what + " must be a non-negative integer");
  return std::stoull(v.text);
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  for (const DTypeName& d : kDTypeNames)
    if (d.dtype == dtype) return d.name;
  STRAND_CHECK(false, DTypeError, "safetensors: no name for dtype ", dtype_name(dtype));
  return "";
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Contiguous CPU copies where needed, and the header with running offsets.
  std::vector<Tensor> data;
  data.reserve(tensors.size());
  std::set<std::string> seen;
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ',';
      first = false;
      append_json_string(header, key);
      header += ':';
      append_json_string(header, value);
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__" || !seen.insert(name).second)
      throw CheckpointError(path + ": tensor name '" + name + "' is empty, reserved or given twice");
    if (!t.defined()) throw CheckpointError(path + ": tensor '" + name + "' is undefined");
    bool known = false;
    for (const DTypeName& d : kDTypeNames) known = known || d.dtype == t.dtype();
    if (!known) throw CheckpointError(path + ": tensor '" + name + "' has dtype " + dtype_name(t.dtype()));
    data.push_back(t.is_contiguous() && t.device().is_cpu() ? t : t.copy_as(t.dtype(), Device::cpu()));
    if (header.size() > 1) header += ',';
    append_json_string(header, name);
    header += ":{\"dtype\":\"";
    header += safetensors_dtype_name(t.dtype());
    header += "\",\"shape\":[";
    for (size_t i = 0; i < t.shape().size(); ++i) {
      if (i) header += ',';
      header += std::to_string(t.shape()[i]);
    }
    const uint64_t end = offset + data.back().nbytes();
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  header += '}';
  // Spaces after the JSON so that the data starts 8-byte aligned, as the reference writer does.
  while ((8 + header.size()) % 8 != 0) header += ' ';

  const std::string temp = temp_path_for(path);
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), sizeof n);  // little-endian host (static_assert above)
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const Tensor& t : data)
      out.write(static_cast<const char*>(t.raw_data()), static_cast<std::streamsize>(t.nbytes()));
    out.close();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temp, ignored);
      throw CheckpointError(path + ": cannot write " + temp + " (disk full or no permission?)");
    }
  }
  commit_file(temp, path);
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(path + ": cannot open safetensors file");
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (file_size < 8) throw CheckpointError(path + ": not a safetensors file (" + std::to_string(file_size) + " bytes)");
  uint64_t header_size = 0;
  in.read(reinterpret_cast<char*>(&header_size), sizeof header_size);
  if (header_size > kMaxHeaderBytes || 8 + header_size > file_size)
    throw CheckpointError(path + ": safetensors header length " + std::to_string(header_size) +
                          " does not fit a file of " + std::to_string(file_size) + " bytes");
  std::string header(header_size, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_size));
  if (header.empty() || header[0] != '{') throw CheckpointError(path + ": safetensors header does not start with '{'");
  JsonValue root;
  try {
    root = parse_json(header);
  } catch (const ValueError& e) {
    throw CheckpointError(path + ": bad safetensors header " + e.what());
  }
  if (root.kind != JsonValue::Kind::Object) throw CheckpointError(path + ": safetensors header is not a JSON object");

  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };
  SafetensorsFile file;
  std::vector<Entry> entries;
  for (const auto& [name, v] : root.members) {
    if (name == "__metadata__") {
      if (v.kind != JsonValue::Kind::Object) throw CheckpointError(path + ": __metadata__ is not an object");
      for (const auto& [key, value] : v.members) {
        if (value.kind != JsonValue::Kind::String)
          throw CheckpointError(path + ": __metadata__ value of '" + key + "' is not a string");
        file.metadata[key] = value.text;
      }
      continue;
    }
    const JsonValue* dtype = v.kind == JsonValue::Kind::Object ? v.find("dtype") : nullptr;
    const JsonValue* shape = v.kind == JsonValue::Kind::Object ? v.find("shape") : nullptr;
    const JsonValue* offsets = v.kind == JsonValue::Kind::Object ? v.find("data_offsets") : nullptr;
    if (!dtype || dtype->kind != JsonValue::Kind::String || !shape || shape->kind != JsonValue::Kind::Array || !offsets ||
        offsets->kind != JsonValue::Kind::Array || offsets->items.size() != 2)
      throw CheckpointError(path + ": tensor '" + name + "' needs dtype, shape and data_offsets [begin, end]");
    Entry e{name, DType::F32, {}, 0, 0};
    bool known = false;
    for (const DTypeName& d : kDTypeNames)
      if (dtype->text == d.name) e.dtype = d.dtype, known = true;
    if (!known) throw CheckpointError(path + ": tensor '" + name + "' has dtype '" + dtype->text + "', which strand does not read");
    for (const JsonValue& dim : shape->items) e.shape.push_back(static_cast<int64_t>(json_uint(dim, path, "a dimension of '" + name + "'")));
    e.begin = json_uint(offsets->items[0], path, "data_offsets of '" + name + "'");
    e.end = json_uint(offsets->items[1], path, "data_offsets of '" + name + "'");
    const uint64_t bytes = static_cast<uint64_t>(numel_of(e.shape)) * dtype_size(e.dtype);
    if (e.end < e.begin || e.end - e.begin != bytes)
      throw CheckpointError(path + ": tensor '" + name + "' of shape " + shape_str(e.shape) + " " +
                            dtype_name(e.dtype) + " needs " + std::to_string(bytes) + " bytes, data_offsets give [" +
                            std::to_string(e.begin) + ", " + std::to_string(e.end) + ")");
    entries.push_back(std::move(e));
  }
  // The tensors must tile the data exactly: sorted by offset, each starts where the last ended.
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return entries[a].begin < entries[b].begin; });
  const uint64_t data_size = file_size - 8 - header_size;
  uint64_t expected = 0;
  for (const size_t i : order) {
    if (entries[i].begin != expected)
      throw CheckpointError(path + ": tensor '" + entries[i].name + "' starts at data byte " +
                            std::to_string(entries[i].begin) + ", expected " + std::to_string(expected) +
                            " (a gap or an overlap)");
    expected = entries[i].end;
  }
  if (expected != data_size)
    throw CheckpointError(path + ": the tensors cover " + std::to_string(expected) + " data bytes, the file holds " +
                          std::to_string(data_size) + (expected > data_size ? " (truncated)" : " (trailing bytes)"));
  for (const size_t i : order) {
    const Entry& e = entries[i];
    Tensor t = Tensor::empty(e.shape, e.dtype);
    in.seekg(static_cast<std::streamoff>(8 + header_size + e.begin));
    in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) throw CheckpointError(path + ": cannot read tensor '" + e.name + "'");
    file.tensors.emplace_back(e.name, std::move(t));
  }
  return file;
}

}  // namespace strand::io
