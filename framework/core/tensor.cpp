// Tensor factories, raw views, strided copies with dtype conversion, and the autograd accessors.
#include "framework/core/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "framework/core/device_runtime.h"
#include "framework/core/error.h"
#include "framework/core/random.h"

namespace strand {
namespace {

// Reads/writes element i of a buffer of dtype dt as double.
double load(const void* base, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(base)[i];
    case DType::F64: return static_cast<const double*>(base)[i];
    case DType::BF16: return bf16_bits_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::F16: return f16_bits_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::I32: return static_cast<const int32_t*>(base)[i];
  }
  return 0;
}

void store(void* base, DType dt, int64_t i, double v) {
  switch (dt) {
    case DType::F32: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case DType::F64: static_cast<double*>(base)[i] = v; break;
    case DType::BF16: static_cast<uint16_t*>(base)[i] = float_to_bf16_bits(static_cast<float>(v)); break;
    case DType::F16: static_cast<uint16_t*>(base)[i] = float_to_f16_bits(static_cast<float>(v)); break;
    case DType::I32: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v); break;
  }
}

// Same-dtype strided copy of a CPU tensor into contiguous dst, row by row over the last axis.
template <class T>
void gather_strided(const T* src, const Shape& shape, const Shape& strides, T* dst) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (nd == 0) { dst[0] = src[0]; return; }
  const int64_t inner = shape[nd - 1], istride = strides[nd - 1];
  const int64_t rows = numel_of(shape) / std::max<int64_t>(inner, 1);
  #pragma omp parallel for if (rows * inner > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r, off = 0;
    for (int64_t d = nd - 2; d >= 0; --d) {
      off += (rem % shape[d]) * strides[d];
      rem /= shape[d];
    }
    const T* s = src + off;
    T* o = dst + r * inner;
    if (istride == 1) std::copy(s, s + inner, o);
    else for (int64_t j = 0; j < inner; ++j) o[j] = s[j * istride];
  }
}

void gather_any(const void* src, DType dt, const Shape& shape, const Shape& strides, void* dst) {
  switch (dtype_size(dt)) {
    case 2: gather_strided(static_cast<const uint16_t*>(src), shape, strides, static_cast<uint16_t*>(dst)); break;
    case 4: gather_strided(static_cast<const uint32_t*>(src), shape, strides, static_cast<uint32_t*>(dst)); break;
    case 8: gather_strided(static_cast<const uint64_t*>(src), shape, strides, static_cast<uint64_t*>(dst)); break;
  }
}

// Converts n contiguous elements between dtypes. The common cases (a plain copy, float32 to
// and from bfloat16 for mixed precision) have loops of their own that vectorise; the general
// path goes through double element by element. All give the same bits.
void convert(const void* src, DType from, void* dst, DType to, int64_t n) {
  if (from == to) {
    const size_t es = dtype_size(from);
    const char* s = static_cast<const char*>(src);
    char* d = static_cast<char*>(dst);
    constexpr int64_t kChunk = int64_t{1} << 16;  // elements per parallel piece
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    #pragma omp parallel for if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t lo = c * kChunk, len = std::min(n, lo + kChunk) - lo;
      std::memcpy(d + lo * static_cast<int64_t>(es), s + lo * static_cast<int64_t>(es), static_cast<size_t>(len) * es);
    }
    return;
  }
  if (from == DType::F32 && to == DType::BF16) {
    const float* s = static_cast<const float*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
    #pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16_bits(s[i]);
    return;
  }
  if (from == DType::BF16 && to == DType::F32) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    float* d = static_cast<float*>(dst);
    #pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = bf16_bits_to_float(s[i]);
    return;
  }
  if (from == DType::F32 && to == DType::F64) {
    const float* s = static_cast<const float*>(src);
    double* d = static_cast<double*>(dst);
    #pragma omp parallel for if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = s[i];
    return;
  }
  if (from == DType::F64 && to == DType::F32) {
    const double* s = static_cast<const double*>(src);
    float* d = static_cast<float*>(dst);
    #pragma omp parallel for if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(s[i]);
    return;
  }
  #pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) store(dst, to, i, load(src, from, i));
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    STRAND_CHECK(d >= 0, ShapeError, "empty: negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(numel_of(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor cpu = empty(shape, dtype);
  cpu.fill_(value);
  return device.is_cpu() ? cpu : cpu.copy_as(dtype, device);
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  STRAND_CHECK(static_cast<int64_t>(values.size()) == numel_of(shape), ShapeError, "from_vector: ",
               values.size(), " values for shape ", shape_str(shape));
  Tensor t = empty(shape, dtype);
  convert(values.data(), DType::F64, t.raw_data(), dtype, t.numel());
  return t;
}

Tensor Tensor::arange(int64_t n, DType dtype) {
  Tensor t = empty({n}, dtype);
  for (int64_t i = 0; i < n; ++i) store(t.raw_data(), dtype, i, static_cast<double>(i));
  return t;
}

Tensor Tensor::randn(const Shape& shape, uint64_t seed, DType dtype, double stddev) {
  Tensor t = empty(shape, dtype);
  const int64_t n = t.numel();
  void* out = t.raw_data();
  // Each value depends only on (seed, index), so the parallel loop draws the same numbers.
  #pragma omp parallel for if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) store(out, dtype, i, stddev * random::normal(seed, 0, i));
  return t;
}

Tensor Tensor::uniform(const Shape& shape, uint64_t seed, double lo, double hi, DType dtype) {
  Tensor t = empty(shape, dtype);
  const int64_t n = t.numel();
  void* out = t.raw_data();
  #pragma omp parallel for if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) store(out, dtype, i, lo + (hi - lo) * random::uniform01(seed, 0, i));
  return t;
}

int64_t Tensor::size(int64_t axis) const { return shape()[wrap_axis(axis, dim(), "size")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = impl_->shape.size(); i-- > 0;) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

template <class T>
T* Tensor::data() const {
  STRAND_CHECK(dtype_of<T>() == dtype(), DTypeError, "data: tensor is ", dtype_name(dtype()),
               ", asked for ", dtype_name(dtype_of<T>()));
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int32_t* Tensor::data<int32_t>() const;
template bfloat16* Tensor::data<bfloat16>() const;
template float16* Tensor::data<float16>() const;

void* Tensor::raw_data() const {
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * static_cast<int64_t>(dtype_size(dtype()));
}

Tensor Tensor::as_strided(const Shape& shape, const Shape& strides, int64_t offset) const {
  STRAND_CHECK(shape.size() == strides.size(), ShapeError, "as_strided: shape ", shape_str(shape),
               " and strides ", shape_str(strides), " differ in length");
  // The view must stay inside the storage: its lowest and highest reachable elements.
  int64_t lo = offset, hi = offset;
  bool empty_view = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    STRAND_CHECK(shape[i] >= 0, ShapeError, "as_strided: negative size in ", shape_str(shape));
    if (shape[i] == 0) empty_view = true;
    const int64_t reach = (shape[i] - 1) * strides[i];
    (reach < 0 ? lo : hi) += reach;
  }
  const int64_t capacity = static_cast<int64_t>(impl_->storage->nbytes() / dtype_size(dtype()));
  STRAND_CHECK(empty_view || (lo >= 0 && hi < capacity), ShapeError, "as_strided: view ", shape_str(shape),
               " with strides ", shape_str(strides), " at offset ", offset, " reaches outside a storage of ",
               capacity, " elements");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::copy_as(DType dtype_to, Device device_to) const {
  Tensor out = empty(shape(), dtype_to, device_to);
  out.copy_from(*this);
  return out;
}

void Tensor::copy_from(const Tensor& src) {
  STRAND_CHECK(src.shape() == shape(), ShapeError, "copy: source ", shape_str(src.shape()),
               " does not match destination ", shape_str(shape()));
  const int64_t n = numel();
  bump_version();
  if (n == 0) return;
  if (device().is_cpu() && src.device().is_cpu()) {
    const bool contiguous_src = src.is_contiguous();
    if (is_contiguous() && contiguous_src) {
      convert(src.raw_data(), src.dtype(), raw_data(), dtype(), n);
      return;
    }
    // A strided read straight into place, unless src may overlap us (a view of our storage).
    if (is_contiguous() && src.dtype() == dtype() && src.storage() != storage()) {
      gather_any(src.raw_data(), src.dtype(), src.shape(), src.strides(), raw_data());
      return;
    }
    // Gather src into a contiguous buffer of its dtype, convert, then scatter through our strides.
    Tensor packed = contiguous_src ? src : empty(src.shape(), src.dtype());
    if (!contiguous_src) gather_any(src.raw_data(), src.dtype(), src.shape(), src.strides(), packed.raw_data());
    if (is_contiguous()) {
      convert(packed.raw_data(), src.dtype(), raw_data(), dtype(), n);
      return;
    }
    Tensor converted = packed.dtype() == dtype() ? packed : packed.copy_as(dtype(), Device::cpu());
    const size_t es = dtype_size(dtype());
    const char* s = static_cast<const char*>(converted.raw_data());
    char* base = static_cast<char*>(raw_data());
    const int64_t nd = dim();
    for (int64_t i = 0; i < n; ++i) {
      int64_t rem = i, off = 0;
      for (int64_t d = nd - 1; d >= 0; --d) {
        off += (rem % shape()[d]) * strides()[d];
        rem /= shape()[d];
      }
      std::memcpy(base + off * static_cast<int64_t>(es), s + i * static_cast<int64_t>(es), es);
    }
    return;
  }
  // A device is involved: stage through a contiguous host copy in the destination dtype.
  STRAND_CHECK(is_contiguous(), DeviceError, "copy: a device destination must be contiguous, got ", describe(*this));
  if (!src.device().is_cpu()) {
    STRAND_CHECK(src.is_contiguous() && src.dtype() == dtype(), DeviceError,
                 "copy: a device source must be contiguous and of the destination dtype, got ", describe(src),
                 " into ", describe(*this));
    if (device().is_cpu()) {
      device_runtime(src.device().type).copy_to_host(raw_data(), src.raw_data(), nbytes(), src.device().index);
      return;
    }
    STRAND_CHECK(device().type == src.device().type, DeviceError, "copy: from ", src.device().str(), " to ",
                 device().str(), " is not supported; copy through the cpu");
    device_runtime(device().type).copy_within(raw_data(), src.raw_data(), nbytes(), device().index);
    return;
  }
  Tensor host = (src.is_contiguous() && src.dtype() == dtype()) ? src : src.copy_as(dtype(), Device::cpu());
  device_runtime(device().type).copy_from_host(raw_data(), host.raw_data(), nbytes(), device().index);
}

void Tensor::fill_(double value) {
  STRAND_CHECK(device().is_cpu(), DeviceError, "fill: only cpu tensors can be filled in place");
  bump_version();
  const int64_t n = numel();
  if (is_contiguous()) {
    if (dtype() == DType::F32) { std::fill_n(data<float>(), n, static_cast<float>(value)); return; }
    if (dtype() == DType::F64) { std::fill_n(data<double>(), n, value); return; }
    for (int64_t i = 0; i < n; ++i) store(raw_data(), dtype(), i, value);
    return;
  }
  copy_from(full(shape(), value, dtype()));
}

std::vector<double> Tensor::to_vector() const {
  Tensor c = (device().is_cpu() && is_contiguous()) ? *this : copy_as(dtype(), Device::cpu());
  std::vector<double> out(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) out[static_cast<size_t>(i)] = load(c.raw_data(), dtype(), i);
  return out;
}

double Tensor::item() const {
  STRAND_CHECK(numel() == 1, ShapeError, "item: tensor of shape ", shape_str(shape()), " has ", numel(),
               " elements, not one");
  return to_vector()[0];
}

Tensor& Tensor::set_requires_grad(bool on) {
  STRAND_CHECK(is_leaf(), AutogradError, "set_requires_grad: only leaf tensors can change requires_grad");
  STRAND_CHECK(!on || is_floating(dtype()), DTypeError, "set_requires_grad: ", dtype_name(dtype()),
               " tensors cannot require gradients");
  impl_->autograd.requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return Tensor(impl_->autograd.grad); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined())
    STRAND_CHECK(g.shape() == shape() && g.dtype() == dtype(), AutogradError, "set_grad: gradient ",
                 describe(g), " does not match tensor ", describe(*this));
  impl_->autograd.grad = g.impl();
}

void Tensor::zero_grad() { impl_->autograd.grad.reset(); }

Tensor Tensor::detach() const { return as_strided(shape(), strides(), offset()); }

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined";
  return detail::concat(dtype_name(t.dtype()), shape_str(t.shape()), " ", t.device().str());
}

}  // namespace strand
