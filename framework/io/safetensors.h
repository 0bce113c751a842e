// safetensors files (the Hugging Face tensor format): the writer `strand export` uses, and a
// reader that checks every rule of the format (tests, and tools that read exports back).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "framework/core/tensor.h"
#include "framework/io/atomic_file.h"

namespace strand::io {

// The layout (https://github.com/huggingface/safetensors, "Format"):
//   8 bytes   N, the header length, unsigned little-endian
//   N bytes   JSON header: {"__metadata__": {str: str}, NAME: {"dtype": "F32", "shape": [..],
//             "data_offsets": [begin, end]}, ...}, padded with spaces so that 8 + N is a
//             multiple of 8 (the data then starts aligned for every dtype)
//   the data  each tensor's bytes, row-major, little-endian; offsets are relative to the start
//             of the data and the tensors cover it without gaps or overlap.
// Tensors are written in the order given. dtypes: float32 "F32", float64 "F64", bfloat16
// "BF16", float16 "F16", int32 "I32".
struct SafetensorsFile {
  std::map<std::string, std::string> metadata;             // "__metadata__"
  std::vector<std::pair<std::string, Tensor>> tensors;     // in data order
};

// Writes the file through a temporary name and a rename (atomic_file.h): `path` holds either
// its previous content or the whole new file. Any tensor (non-contiguous ones are copied) on
// the CPU; names must be non-empty, unique and not "__metadata__". Throws CheckpointError
// naming the file (and the tensor).
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Reads a whole file. Refuses, with one CheckpointError line naming the file: a short file, a
// header length past the end, header JSON that does not parse or is not an object, an
// unknown dtype, a shape whose byte size differs from its offsets, gaps or overlaps between
// tensors, and data past the last tensor.
SafetensorsFile read_safetensors(const std::string& path);

// "F32" for DType::F32 and so on; DTypeError for a dtype the format has no name for.
const char* safetensors_dtype_name(DType dtype);

}  // namespace strand::io
