// Stand-in for the CUDA kernels in builds without CUDA: registers none, so launch on a cuda
// device reports that this build has no kernel there.
namespace strand::backend {

void register_cuda_kernels() {}

}  // namespace strand::backend
