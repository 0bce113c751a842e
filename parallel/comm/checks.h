// Argument checks every Group backend runs before communicating, so that a bad call fails on
// each rank with the same message (naming the backend, the operation and the shapes) instead of
// deadlocking or corrupting memory inside MPI or NCCL.
#pragma once
#include <string>

#include "framework/core/tensor.h"

namespace strand::parallel::internal {

// The operation's name in messages, e.g. "mpi all_gather".
std::string op_name(const char* backend, const char* op);

// t is defined and contiguous (the layout every backend sends as one block).
void check_contiguous(const Tensor& t, const std::string& op, const char* arg);
// peer is a rank of a group of `size` ranks.
void check_rank(int peer, int size, const std::string& op, const char* arg);
// out is [size * n...] with t [n...], same dtype: the all_gather contract.
void check_gather_shapes(const Tensor& t, const Tensor& out, int size, const std::string& op);
// t is [size * n...] and out [n...], same dtype: the reduce_scatter contract.
void check_scatter_shapes(const Tensor& t, const Tensor& out, int size, const std::string& op);
// t and out have the same shape and dtype, with a leading axis divisible by size.
void check_all_to_all_shapes(const Tensor& t, const Tensor& out, int size, const std::string& op);
// The byte ranges of a and b overlap (a collective then needs a separate send buffer).
bool overlaps(const Tensor& a, const Tensor& b);

}  // namespace strand::parallel::internal
