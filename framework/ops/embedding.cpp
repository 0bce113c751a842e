// Embedding lookup: gather rows of the table; backward scatter-adds into a [V, C] gradient.
#include "framework/ops/embedding.h"

#include "framework/autograd/node.h"
#include "framework/backend/cpu/embedding.h"
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
    Tensor dtable = Tensor::empty(table_shape, gc.dtype());
    dispatch_float("embedding backward", gc.dtype(), [&]<class T>() {
      cpu::embedding_scatter_add<T>(gc.data<T>(), ids.data<int32_t>(), ids.numel(), V, C, dtable.data<T>());
    });
    return {dtable};
  }
};

}  // namespace

Tensor embedding(const Tensor& table, const Tensor& ids) {
  check_cpu("embedding", {&table, &ids});
  check_float("embedding", table);
  STRAND_CHECK(table.dim() == 2, ShapeError, "embedding: table must be [V, C], got ", shape_str(table.shape()));
  STRAND_CHECK(ids.dtype() == DType::I32, DTypeError, "embedding: ids must be int32, got ", describe(ids));
  const int64_t V = table.shape()[0], C = table.shape()[1];
  Tensor idc = contiguous_data(ids);
  const int32_t* id = idc.data<int32_t>();
  const int64_t n = idc.numel();
  const int64_t bad = cpu::first_id_out_of_range(id, n, V);
  STRAND_CHECK(bad < 0, ValueError, "embedding: id ", (bad < 0 ? 0 : id[bad]), " at position ", bad,
               " of ids ", shape_str(ids.shape()), " is outside [0, V) for a table of V = ", V, " rows (",
               shape_str(table.shape()), ")");

  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor tc = contiguous_data(table);
  Tensor y = Tensor::empty(out_shape, table.dtype());
  dispatch_float("embedding", table.dtype(), [&]<class T>() {
    cpu::embedding_gather<T>(tc.data<T>(), C, id, n, y.data<T>());
  });
  if (auto node = autograd::make_node<EmbeddingBackward>({&table}, table.shape())) {
    node->save(idc);
    autograd::set_history(node, {&y});
  }
  return y;
}

}  // namespace strand::ops
