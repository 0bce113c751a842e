// HDF5 checkpoint writer, reader and parameter loader (HDF5 C API). Errors are one line that
// names the file: HDF5's own error-stack printing is switched off and its innermost message
// is folded into ours.
#include "framework/io/checkpoint.h"
#include "framework/io/hdf5_handle.h"

#include <hdf5.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <set>

namespace strand::io {
namespace {

void quiet_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

std::string hdf5_reason() { return hdf5::error_reason(); }
using hdf5::Handle;

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  const std::string reason = hdf5_reason();
  throw CheckpointError(file + ": " + what + (reason.empty() ? "" : ": " + reason));
}

// Groups that remember link creation order, so a reader lists parameters as they were written.
Handle new_group_plist() {
  Handle gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  return gcpl;
}

Handle vlen_utf8_type() {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

// ---- writing ----

void write_string_attribute(const std::string& file, hid_t obj, const char* name, const std::string& value) {
  Handle type = vlen_utf8_type();
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  const char* text = value.c_str();
  if (!attr.valid() || H5Awrite(attr.get(), type.get(), &text) < 0)
    fail(file, std::string("cannot write attribute '") + name + "'");
}

void write_int_attribute(const std::string& file, hid_t obj, const char* name, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.valid() || H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0)
    fail(file, std::string("cannot write attribute '") + name + "'");
}

// Note [Checkpoint checksums]: every non-empty array dataset is stored in chunks with HDF5's
// Fletcher32 filter, so a byte that changes after the write (bit rot, a damaged copy) makes
// the read of that dataset fail, and the error names it; scalars are too small to chunk. A
// dataset is cut along its first axis into equal chunks of at most 64 MiB (HDF5 caps a chunk
// at 4 GiB).
Handle checksummed_layout(const std::vector<hsize_t>& dims, size_t element_bytes) {
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (element_bytes == 0 || dims.empty()) return dcpl;
  constexpr hsize_t kChunkBytes = hsize_t{64} << 20;
  std::vector<hsize_t> chunk = dims;
  hsize_t row_bytes = element_bytes;
  for (size_t i = 1; i < dims.size(); ++i) row_bytes *= dims[i];
  // Equal chunks: HDF5 stores an edge chunk at full size, so a cut near the end would waste
  // almost a whole chunk of file.
  const hsize_t pieces = std::max<hsize_t>(1, (dims[0] * row_bytes + kChunkBytes - 1) / kChunkBytes);
  chunk[0] = std::max<hsize_t>(1, (dims[0] + pieces - 1) / pieces);
  // Rows past 64 MiB on their own: cut the later axes too, each to what still fits.
  for (size_t i = 1; i < chunk.size(); ++i) {
    hsize_t bytes = element_bytes;
    for (hsize_t c : chunk) bytes *= c;
    if (bytes <= kChunkBytes) break;
    chunk[i] = std::max<hsize_t>(1, chunk[i] * kChunkBytes / bytes);
  }
  H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
  H5Pset_fletcher32(dcpl.get());
  return dcpl;
}

// Writes one dataset at `name` (relative to `group`), creating the subgroups a '/' asks for.
// `dims` empty with `scalar` set makes a scalar dataspace.
void write_dataset(const std::string& file, hid_t group, const std::string& group_name, const std::string& name,
                   hid_t file_type, hid_t mem_type, const std::vector<hsize_t>& dims, bool scalar, const void* values) {
  const std::string where = "dataset '" + group_name + "/" + name + "'";
  if (name.empty() || name.front() == '/' || name.back() == '/' || name.find("//") != std::string::npos ||
      name == "." || name.find("/./") != std::string::npos || name.rfind("./", 0) == 0)
    throw CheckpointError(file + ": " + where + ": a name must be non-empty parts separated by single '/'");
  std::vector<std::unique_ptr<Handle>> parents;
  hid_t parent = group;
  size_t start = 0;
  for (size_t slash; (slash = name.find('/', start)) != std::string::npos; start = slash + 1) {
    const std::string part = name.substr(start, slash - start);
    const htri_t exists = H5Lexists(parent, part.c_str(), H5P_DEFAULT);
    hid_t id = -1;
    if (exists > 0) {
      id = H5Gopen2(parent, part.c_str(), H5P_DEFAULT);
    } else {
      Handle gcpl = new_group_plist();
      id = H5Gcreate2(parent, part.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT);
    }
    if (id < 0) fail(file, "cannot create group '" + part + "' for " + where);
    parents.push_back(std::make_unique<Handle>(id, H5Gclose));
    parent = id;
  }
  const std::string leaf = name.substr(start);
  Handle space(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
               H5Sclose);
  hsize_t count = 1;
  for (hsize_t d : dims) count *= d;
  Handle dcpl = checksummed_layout(dims, scalar || count == 0 ? 0 : H5Tget_size(file_type));
  Handle ds(H5Dcreate2(parent, leaf.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), H5Dclose);
  if (!ds.valid()) fail(file, "cannot create " + where);
  if (count > 0 && H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) < 0)
    fail(file, "cannot write " + where);
}

void write_tensor(const std::string& file, hid_t group, const std::string& group_name, const std::string& name,
                  const Tensor& t) {
  const std::string where = "tensor '" + group_name + "/" + name + "'";
  if (!t.defined()) throw CheckpointError(file + ": " + where + " is undefined");
  hid_t file_type = -1, mem_type = -1;
  switch (t.dtype()) {
    case DType::F32: file_type = H5T_IEEE_F32LE, mem_type = H5T_NATIVE_FLOAT; break;
    case DType::F64: file_type = H5T_IEEE_F64LE, mem_type = H5T_NATIVE_DOUBLE; break;
    case DType::I32: file_type = H5T_STD_I32LE, mem_type = H5T_NATIVE_INT32; break;
    default:
      throw CheckpointError(file + ": " + where + " has dtype " + dtype_name(t.dtype()) +
                            "; checkpoints hold float32, float64 or int32 (convert it first)");
  }
  if (t.dim() == 0 && t.dtype() == DType::F64)
    throw CheckpointError(file + ": " + where + " is a 0-d float64 tensor; store it in float64s");
  const Tensor host = t.device().is_cpu() && t.is_contiguous() ? t : t.copy_as(t.dtype(), Device::cpu());
  std::vector<hsize_t> dims(host.shape().begin(), host.shape().end());
  write_dataset(file, group, group_name, name, file_type, mem_type, dims, dims.empty(), host.raw_data());
}

void write_group(const std::string& file, hid_t parent, const std::string& group_name, const CheckpointGroup& g) {
  Handle gcpl = new_group_plist();
  Handle group(H5Gcreate2(parent, group_name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
  if (!group.valid()) fail(file, "cannot create group '" + group_name + "'");
  for (const auto& [name, t] : g.tensors) write_tensor(file, group.get(), group_name, name, t);
  for (const auto& [name, v] : g.int64s)
    write_dataset(file, group.get(), group_name, name, H5T_STD_I64LE, H5T_NATIVE_INT64, {v.size()}, false, v.data());
  for (const auto& [name, v] : g.uint64s)
    write_dataset(file, group.get(), group_name, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, {v.size()}, false, v.data());
  for (const auto& [name, v] : g.float64s)
    write_dataset(file, group.get(), group_name, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {}, true, &v);
}

// Writes the whole file at `temp`; every HDF5 handle is closed when this returns or throws.
void write_file(const std::string& temp, const std::string& shown, const CheckpointData& data) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST);  // large attributes (config)
  Handle file(H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
  if (!file.valid()) fail(shown, "cannot create the temporary file " + temp);
  write_string_attribute(shown, file.get(), "format", kCheckpointFormat);
  write_int_attribute(shown, file.get(), "version", kCheckpointVersion);
  write_string_attribute(shown, file.get(), "config", data.config_yaml);
  write_group(shown, file.get(), "model", data.model);
  write_group(shown, file.get(), "optimizer", data.optimizer);
  write_group(shown, file.get(), "trainer", data.trainer);
  for (const auto& [name, g] : data.extra) {
    if (name == "model" || name == "optimizer" || name == "trainer" || name.empty() ||
        name.find('/') != std::string::npos)
      throw CheckpointError(shown + ": extra group name '" + name + "' is reserved or not a plain name");
    write_group(shown, file.get(), name, g);
  }
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0 || file.release() < 0) fail(shown, "cannot finish writing " + temp);
}

// ---- reading ----

std::string read_string_attribute(const std::string& file, hid_t obj, const char* name) {
  Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (!attr.valid()) fail(file, std::string("cannot open attribute '") + name + "'");
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) throw CheckpointError(file + ": attribute '" + name + "' is not a string");
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem = vlen_utf8_type();
    char* text = nullptr;
    if (H5Aread(attr.get(), mem.get(), &text) < 0) fail(file, std::string("cannot read attribute '") + name + "'");
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }
  const size_t size = H5Tget_size(type.get());
  Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mem.get(), size);
  std::string value(size, '\0');
  if (H5Aread(attr.get(), mem.get(), value.data()) < 0) fail(file, std::string("cannot read attribute '") + name + "'");
  value.resize(value.find('\0') == std::string::npos ? size : value.find('\0'));
  return value;
}

// Opens `path` read-only and checks the `format` and `version` attributes.
Handle open_checkpoint(const std::string& path, int64_t& version) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw CheckpointError(path + ": no such checkpoint file");
  if (std::filesystem::is_directory(path, ec)) throw CheckpointError(path + ": is a directory, not a checkpoint file");
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    hdf5_reason();
    throw CheckpointError(path + ": not an HDF5 file (corrupt, or not a strand checkpoint)");
  }
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.valid()) fail(path, "corrupt or truncated HDF5 file");
  const htri_t has_format = H5Aexists(file.get(), "format");
  if (has_format < 0) fail(path, "corrupt HDF5 file, its attributes cannot be read");
  if (has_format == 0)
    throw CheckpointError(path + ": not a strand checkpoint (no 'format' attribute)");
  const std::string format = read_string_attribute(path, file.get(), "format");
  if (format != kCheckpointFormat)
    throw CheckpointError(path + ": format attribute is '" + format + "', expected '" + kCheckpointFormat + "'");
  Handle attr(H5Aopen(file.get(), "version", H5P_DEFAULT), H5Aclose);
  if (!attr.valid() || H5Aread(attr.get(), H5T_NATIVE_INT64, &version) < 0) fail(path, "cannot read the 'version' attribute");
  if (version < 1 || version > kCheckpointVersion)
    throw CheckpointError(path + ": checkpoint version " + std::to_string(version) + " is not one this build reads (1 to " +
                          std::to_string(kCheckpointVersion) + ")");
  return file;
}

struct ReadContext {
  std::string file;
  hsize_t file_size = 0;
};

// True when the dataset carries the Fletcher32 filter (checkpoints written since version 2).
bool has_checksum(hid_t ds) {
  Handle dcpl(H5Dget_create_plist(ds), H5Pclose);
  if (!dcpl.valid()) return false;
  unsigned flags = 0;
  size_t nelmts = 0;
  unsigned config = 0;
  return H5Pget_filter_by_id2(dcpl.get(), H5Z_FILTER_FLETCHER32, &flags, &nelmts, nullptr, 0, nullptr, &config) >= 0;
}

void read_dataset(const ReadContext& ctx, hid_t ds, const std::string& group_name, const std::string& name,
                  CheckpointGroup& out) {
  const std::string where = "dataset '" + group_name + "/" + name + "'";
  Handle type(H5Dget_type(ds), H5Tclose);
  Handle space(H5Dget_space(ds), H5Sclose);
  if (!type.valid() || !space.valid()) fail(ctx.file, "cannot read the type of " + where);
  const H5T_class_t cls = H5Tget_class(type.get());
  const size_t size = H5Tget_size(type.get());
  const bool is_signed = cls == H5T_INTEGER && H5Tget_sign(type.get()) == H5T_SGN_2;
  const bool scalar = H5Sget_simple_extent_type(space.get()) == H5S_SCALAR;
  const int ndims = H5Sget_simple_extent_ndims(space.get());
  if (ndims < 0) fail(ctx.file, "cannot read the shape of " + where);
  std::vector<hsize_t> dims(static_cast<size_t>(ndims));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  hsize_t count = 1;
  for (hsize_t d : dims) count *= d;
  // A corrupt header could claim terabytes; no dataset is larger than the file holding it.
  if (count * size > ctx.file_size)
    throw CheckpointError(ctx.file + ": " + where + " claims " + std::to_string(count * size) +
                          " bytes, more than the file's " + std::to_string(ctx.file_size) + " (corrupt?)");
  auto read_into = [&](hid_t mem_type, void* buf) {
    if (count == 0 || H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) return;
    if (has_checksum(ds))  // Note [Checkpoint checksums]
      fail(ctx.file, "cannot read " + where + ": its checksum does not match (the file changed after it was "
                     "written, or is truncated)");
    fail(ctx.file, "cannot read " + where + ", the file is corrupt or truncated");
  };
  if (cls == H5T_FLOAT && size == 8 && scalar) {
    double v = 0;
    read_into(H5T_NATIVE_DOUBLE, &v);
    out.float64s[name] = v;
  } else if ((cls == H5T_FLOAT && (size == 4 || size == 8)) || (cls == H5T_INTEGER && size == 4 && is_signed)) {
    const DType dt = cls == H5T_INTEGER ? DType::I32 : size == 4 ? DType::F32 : DType::F64;
    Tensor t = Tensor::empty(Shape(dims.begin(), dims.end()), dt);
    read_into(dt == DType::F32 ? H5T_NATIVE_FLOAT : dt == DType::F64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT32, t.raw_data());
    out.tensors.emplace_back(name, std::move(t));
  } else if (cls == H5T_INTEGER && size == 8 && ndims <= 1) {
    if (is_signed) {
      std::vector<int64_t> v(count);
      read_into(H5T_NATIVE_INT64, v.data());
      out.int64s[name] = std::move(v);
    } else {
      std::vector<uint64_t> v(count);
      read_into(H5T_NATIVE_UINT64, v.data());
      out.uint64s[name] = std::move(v);
    }
  } else {
    throw CheckpointError(ctx.file + ": " + where + " has a type or rank checkpoints do not use");
  }
}

// Reads every dataset below `g` into `out`, names relative to the top-level group.
void read_members(const ReadContext& ctx, hid_t g, const std::string& group_name, const std::string& prefix,
                  CheckpointGroup& out) {
  H5G_info_t info;
  if (H5Gget_info(g, &info) < 0) fail(ctx.file, "cannot list group '" + group_name + "/" + prefix + "'");
  H5_index_t index = H5_INDEX_NAME;
  {
    Handle gcpl(H5Gget_create_plist(g), H5Pclose);
    unsigned flags = 0;
    if (gcpl.valid() && H5Pget_link_creation_order(gcpl.get(), &flags) >= 0 && (flags & H5P_CRT_ORDER_INDEXED))
      index = H5_INDEX_CRT_ORDER;  // files from other tools may not track it: then by name
  }
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = H5Lget_name_by_idx(g, ".", index, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0) fail(ctx.file, "cannot list group '" + group_name + "'");
    std::string link(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(g, ".", index, H5_ITER_INC, i, link.data(), link.size(), H5P_DEFAULT);
    link.resize(static_cast<size_t>(len));
    Handle obj(H5Oopen(g, link.c_str(), H5P_DEFAULT), H5Oclose);
    if (!obj.valid()) fail(ctx.file, "cannot open '" + group_name + "/" + prefix + link + "'");
    const H5I_type_t kind = H5Iget_type(obj.get());
    if (kind == H5I_GROUP) read_members(ctx, obj.get(), group_name, prefix + link + "/", out);
    else if (kind == H5I_DATASET) read_dataset(ctx, obj.get(), group_name, prefix + link, out);
  }
}

}  // namespace

// ---- CheckpointGroup accessors ----

namespace {
[[noreturn]] void missing(const CheckpointGroup& g, const std::string& name, const std::string& what) {
  throw CheckpointError((g.origin.empty() ? std::string("checkpoint") : g.origin) + ": " + what + " '" + name + "' is missing");
}
}  // namespace

const std::vector<int64_t>& CheckpointGroup::get_ints(const std::string& name) const {
  auto it = int64s.find(name);
  if (it == int64s.end()) missing(*this, name, "int64 dataset");
  return it->second;
}
int64_t CheckpointGroup::get_int(const std::string& name) const {
  const auto& v = get_ints(name);
  if (v.size() != 1)
    throw CheckpointError((origin.empty() ? std::string("checkpoint") : origin) + ": int64 dataset '" + name + "' holds " +
                          std::to_string(v.size()) + " values, expected 1");
  return v[0];
}
const std::vector<uint64_t>& CheckpointGroup::get_uints(const std::string& name) const {
  auto it = uint64s.find(name);
  if (it == uint64s.end()) missing(*this, name, "uint64 dataset");
  return it->second;
}
double CheckpointGroup::get_float(const std::string& name) const {
  auto it = float64s.find(name);
  if (it == float64s.end()) missing(*this, name, "float64 dataset");
  return it->second;
}
const Tensor* CheckpointGroup::find_tensor(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

// ---- public entry points ----

namespace {

// The bytes a checkpoint's data take (the file adds a little: metadata, checksums).
uint64_t data_bytes(const CheckpointData& data) {
  uint64_t n = data.config_yaml.size();
  auto add = [&](const CheckpointGroup& g) {
    for (const auto& [name, t] : g.tensors) n += t.defined() ? t.nbytes() : 0;
    for (const auto& [name, v] : g.int64s) n += v.size() * sizeof(int64_t);
    for (const auto& [name, v] : g.uint64s) n += v.size() * sizeof(uint64_t);
    n += g.float64s.size() * sizeof(double);
  };
  add(data.model);
  add(data.optimizer);
  add(data.trainer);
  for (const auto& [name, g] : data.extra) add(g);
  return n;
}

std::string mib(uint64_t bytes) { return detail::concat(std::fixed, std::setprecision(1), bytes / 1048576.0, " MiB"); }

// A save that cannot fit is refused before it starts: the previous checkpoint stays, and the
// message names what is missing (a write that fails halfway says only "no space left").
void check_free_space(const std::string& path, const CheckpointData& data) {
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  struct statvfs fs {};
  if (::statvfs(dir.empty() ? "." : dir.c_str(), &fs) != 0) return;  // the write reports it
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  const uint64_t needed = data_bytes(data) + (uint64_t{1} << 20);  // metadata and checksums
  if (free_bytes < needed)
    throw CheckpointError(detail::concat(path, ": needs about ", mib(needed), ", the file system holding ",
                                         dir.empty() ? "." : dir.string(), " has ", mib(free_bytes),
                                         " free; nothing written, the previous checkpoint is kept"));
}

}  // namespace

void write_checkpoint(const std::string& path, const CheckpointData& data) {
  quiet_hdf5();
  check_free_space(path, data);
  const std::string temp = temp_path_for(path);
  try {
    write_file(temp, path, data);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    throw;
  }
  commit_file(temp, path);
}

CheckpointData read_checkpoint(const std::string& path) {
  quiet_hdf5();
  CheckpointData data;
  data.source = path;
  Handle file = open_checkpoint(path, data.version);
  data.config_yaml = read_string_attribute(path, file.get(), "config");
  ReadContext ctx{path, 0};
  if (H5Fget_filesize(file.get(), &ctx.file_size) < 0) fail(path, "cannot get the file size");

  H5G_info_t info;
  if (H5Gget_info(file.get(), &info) < 0) fail(path, "cannot list the top-level groups");
  bool has_model = false;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = H5Lget_name_by_idx(file.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0) fail(path, "cannot list the top-level groups");
    std::string name(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(file.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<size_t>(len));
    Handle obj(H5Oopen(file.get(), name.c_str(), H5P_DEFAULT), H5Oclose);
    if (!obj.valid()) fail(path, "cannot open '/" + name + "'");
    if (H5Iget_type(obj.get()) != H5I_GROUP) continue;  // not part of the format
    CheckpointGroup& g = name == "model" ? data.model
                         : name == "optimizer" ? data.optimizer
                         : name == "trainer" ? data.trainer
                                             : data.extra[name];
    has_model |= name == "model";
    g.origin = path + ":/" + name;
    read_members(ctx, obj.get(), name, "", g);
  }
  if (!has_model) throw CheckpointError(path + ": has no 'model' group");
  return data;
}

std::string read_checkpoint_config(const std::string& path) {
  quiet_hdf5();
  int64_t version = 0;
  Handle file = open_checkpoint(path, version);
  return read_string_attribute(path, file.get(), "config");
}

void load_into(const std::vector<std::pair<std::string, Tensor>>& params, const CheckpointData& data) {
  const std::string src = data.source.empty() ? std::string("checkpoint") : data.source;
  std::set<std::string> wanted;
  for (const auto& [name, t] : params) wanted.insert(name);
  auto listed = [](const std::vector<std::string>& names) {
    std::string s;
    const size_t shown = std::min<size_t>(names.size(), 5);
    for (size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + ("'" + names[i] + "'");
    if (names.size() > shown) s += " and " + std::to_string(names.size() - shown) + " more";
    return s;
  };
  std::vector<std::string> lacking, unexpected;
  for (const auto& [name, t] : params)
    if (!data.model.find_tensor(name)) lacking.push_back(name);
  for (const auto& [name, t] : data.model.tensors)
    if (!wanted.count(name)) unexpected.push_back(name);
  if (!lacking.empty() || !unexpected.empty()) {
    std::string msg = src + ": checkpoint does not match the model:";
    if (!lacking.empty()) msg += " missing parameter" + std::string(lacking.size() > 1 ? "s " : " ") + listed(lacking);
    if (!lacking.empty() && !unexpected.empty()) msg += ";";
    if (!unexpected.empty())
      msg += " unexpected parameter" + std::string(unexpected.size() > 1 ? "s " : " ") + listed(unexpected);
    throw CheckpointError(msg);
  }
  for (const auto& [name, t] : params) {
    const Tensor& saved = *data.model.find_tensor(name);
    if (saved.shape() != t.shape())
      throw CheckpointError(src + ": parameter '" + name + "': checkpoint has shape " + shape_str(saved.shape()) +
                            ", model has " + shape_str(t.shape()));
    if (!is_floating(saved.dtype()))
      throw CheckpointError(src + ": parameter '" + name + "': checkpoint holds " + dtype_name(saved.dtype()) +
                            ", expected a float tensor");
  }
  for (const auto& [name, t] : params) {
    Tensor target = t;
    target.copy_from(*data.model.find_tensor(name));
  }
}

}  // namespace strand::io
