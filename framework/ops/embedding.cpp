// Embedding lookup: gather rows of the table; backward scatter-adds into a [V, C] gradient.
#include "framework/ops/embedding.h"

#include "framework/autograd/node.h"
#include "framework/backend/embedding.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

struct EmbeddingBackward final : Node {
  Shape table_shape;
  explicit EmbeddingBackward(Shape s) : Node("embedding"), table_shape(std::move(s)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor ids = saved(0);  // contiguous, checked in range by the forward
    Tensor gc = contiguous_data(g[0]);
    const int64_t V = table_shape[0], C = table_shape[1];
    Tensor dtable = Tensor::empty(table_shape, gc.dtype(), gc.device());
    check_same_device("embedding backward", {&gc, &ids});
    check_float_dtype("embedding backward", gc.dtype());
    backend::EmbeddingParams p;
    p.device = gc.device();
    p.dtype = gc.dtype();
    p.op = backend::EmbeddingOp::ScatterAdd;
    p.ids = ids.data<int32_t>();
    p.n = ids.numel();
    p.V = V;
    p.C = C;
    p.src = gc.raw_data();
    p.dst = dtable.raw_data();
    backend::embedding(p);
    return {dtable};
  }
};

}  // namespace

Tensor embedding(const Tensor& table, const Tensor& ids) {
  const Device device = check_same_device("embedding", {&table, &ids});
  check_float("embedding", table);
  STRAND_CHECK(table.dim() == 2, ShapeError, "embedding: table must be [V, C], got ", shape_str(table.shape()));
  STRAND_CHECK(ids.dtype() == DType::I32, DTypeError, "embedding: ids must be int32, got ", describe(ids));
  const int64_t V = table.shape()[0], C = table.shape()[1];
  Tensor idc = contiguous_data(ids);
  backend::EmbeddingParams p;
  p.device = device;
  p.dtype = table.dtype();
  p.ids = idc.data<int32_t>();
  p.n = idc.numel();
  p.V = V;
  p.C = C;
  int64_t bad = -1;
  int32_t bad_id = 0;
  p.op = backend::EmbeddingOp::CheckIds;
  p.first_bad = &bad;
  p.bad_id = &bad_id;
  backend::embedding(p);
  STRAND_CHECK(bad < 0, ValueError, "embedding: id ", bad_id, " at position ", bad,
               " of ids ", shape_str(ids.shape()), " is outside [0, V) for a table of V = ", V, " rows (",
               shape_str(table.shape()), ")");

  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor tc = contiguous_data(table);
  Tensor y = Tensor::empty(out_shape, table.dtype(), device);
  p.op = backend::EmbeddingOp::Gather;
  p.src = tc.raw_data();
  p.dst = y.raw_data();
  backend::embedding(p);
  if (auto node = autograd::make_node<EmbeddingBackward>({&table}, table.shape())) {
    node->save(idc);
    autograd::set_history(node, {&y});
  }
  return y;
}

}  // namespace strand::ops
