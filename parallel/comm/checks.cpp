// Argument checks shared by the Group backends (see checks.h).
#include "parallel/comm/checks.h"

#include "framework/core/error.h"

namespace strand::parallel::internal {

std::string op_name(const char* backend, const char* op) { return std::string(backend) + " " + op; }

void check_contiguous(const Tensor& t, const std::string& op, const char* arg) {
  STRAND_CHECK(t.defined(), ValueError, op, ": ", arg, " is an undefined tensor");
  STRAND_CHECK(t.is_contiguous(), ValueError, op, ": ", arg, " must be contiguous, got ", describe(t),
               " with strides ", t.strides());
}

void check_rank(int peer, int size, const std::string& op, const char* arg) {
  STRAND_CHECK(peer >= 0 && peer < size, ValueError, op, ": ", arg, " ", peer,
               " is not a rank of this group of ", size);
}

void check_gather_shapes(const Tensor& t, const Tensor& out, int size, const std::string& op) {
  check_contiguous(t, op, "t");
  check_contiguous(out, op, "out");
  STRAND_CHECK(t.dim() >= 1, ShapeError, op, ": t needs a leading axis, got ", describe(t));
  Shape want = t.shape();
  want[0] *= size;
  STRAND_CHECK(out.shape() == want && out.dtype() == t.dtype(), ShapeError, op, ": out must be ",
               dtype_name(t.dtype()), want, " (", size, " ranks x t ", describe(t), "), got ",
               describe(out));
}

void check_scatter_shapes(const Tensor& t, const Tensor& out, int size, const std::string& op) {
  check_contiguous(t, op, "t");
  check_contiguous(out, op, "out");
  STRAND_CHECK(t.dim() >= 1 && t.shape()[0] % size == 0, ShapeError, op,
               ": t needs a leading axis divisible by the ", size, " ranks, got ", describe(t));
  Shape want = t.shape();
  want[0] /= size;
  STRAND_CHECK(out.shape() == want && out.dtype() == t.dtype(), ShapeError, op, ": out must be ",
               dtype_name(t.dtype()), want, " (t ", describe(t), " / ", size, " ranks), got ",
               describe(out));
}

void check_all_to_all_shapes(const Tensor& t, const Tensor& out, int size, const std::string& op) {
  check_contiguous(t, op, "t");
  check_contiguous(out, op, "out");
  STRAND_CHECK(t.dim() >= 1 && t.shape()[0] % size == 0, ShapeError, op,
               ": t needs a leading axis divisible by the ", size, " ranks, got ", describe(t));
  STRAND_CHECK(out.shape() == t.shape() && out.dtype() == t.dtype(), ShapeError, op,
               ": out must match t ", describe(t), ", got ", describe(out));
}

bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.storage() != b.storage()) return false;
  const char* a0 = static_cast<const char*>(a.raw_data());
  const char* b0 = static_cast<const char*>(b.raw_data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

}  // namespace strand::parallel::internal
