// Tensor: a strided view of a Storage, with dtype, device and autograd metadata.
// Ops that record gradients are free functions in framework/ops; this class holds data access,
// factories, raw views and the autograd accessors.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "framework/core/shape.h"
#include "framework/core/storage.h"

namespace strand {

namespace autograd { class Node; }
struct TensorImpl;

struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<autograd::Node> grad_fn;          // null for leaves
  uint32_t output_nr = 0;                           // which output of grad_fn this tensor is
  std::shared_ptr<TensorImpl> grad;                 // accumulated gradient of a leaf
  std::weak_ptr<autograd::Node> grad_accumulator;   // the leaf's AccumulateGrad node, while alive
  // Called after each backward pass has added into this leaf's grad (autograd::add_post_accumulate_hook).
  std::vector<std::pair<int, std::function<void()>>> post_accumulate_hooks;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::F32;
  AutogradMeta autograd;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Factories (no gradient recorded; set_requires_grad makes a leaf).
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  // Values are converted to dtype; values.size() must equal the shape's element count.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            DType dtype = DType::F32);
  static Tensor arange(int64_t n, DType dtype = DType::F32);
  // Standard normal (Box-Muller over a counter-based stream) and uniform [lo, hi) from a seed.
  static Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::F32, double stddev = 1.0);
  static Tensor uniform(const Shape& shape, uint64_t seed, double lo, double hi, DType dtype = DType::F32);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int64_t dim() const { return static_cast<int64_t>(impl_->shape.size()); }
  int64_t size(int64_t axis) const;  // negative axes count from the end
  int64_t numel() const { return numel_of(impl_->shape); }
  int64_t offset() const { return impl_->offset; }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device(); }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }

  // Pointer to the first element; T must match the dtype (checked).
  template <class T> T* data() const;
  void* raw_data() const;
  const std::shared_ptr<Storage>& storage() const { return impl_->storage; }
  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }

  // A view sharing storage with this tensor; records no gradient (ops/view.h has the recorded forms).
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;

  // Data copies with no gradient recorded: a contiguous copy in `dtype`, on `device`.
  Tensor copy_as(DType dtype, Device device) const;
  // Copies src's values into this tensor (same shape, any strides and dtypes); bumps the version.
  void copy_from(const Tensor& src);
  void fill_(double value);

  // Reads values as double (any dtype, strides or device), for tests and logs.
  std::vector<double> to_vector() const;
  double item() const;

  // Autograd.
  bool requires_grad() const { return impl_->autograd.requires_grad; }
  Tensor& set_requires_grad(bool on);  // only on leaves
  bool is_leaf() const { return impl_->autograd.grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl_->autograd.grad_fn; }
  Tensor grad() const;
  void set_grad(const Tensor& g);
  void zero_grad();  // drops the accumulated gradient
  // Shares storage, records no history.
  Tensor detach() const;
  // Reverse pass from this tensor; grad may be omitted for a one-element tensor.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

  uint64_t version() const { return impl_->storage->version(); }
  void bump_version() const { impl_->storage->bump_version(); }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::string describe(const Tensor& t);  // "float32[2, 3] cpu"

}  // namespace strand
