// The device seam: a kernel family launched on a device without an implementation is a
// DeviceError naming the kernel and the device; the cpu implements every family of the ops;
// device runtimes are found by type, and the cuda stand-in of a build without CUDA says so.
#include <gtest/gtest.h>

#include <string>

#include "framework/backend/adamw.h"
#include "framework/backend/attention.h"
#include "framework/backend/clip.h"
#include "framework/backend/column_sum.h"
#include "framework/backend/cross_entropy.h"
#include "framework/backend/dropout.h"
#include "framework/backend/elementwise.h"
#include "framework/backend/embedding.h"
#include "framework/backend/gemm.h"
#include "framework/backend/join.h"
#include "framework/backend/norm.h"
#include "framework/backend/reduce.h"
#include "framework/backend/rope.h"
#include "framework/backend/softmax.h"
#include "framework/core/device_runtime.h"
#include "framework/core/error.h"
#include "framework/core/tensor.h"
#include "framework/ops/elementwise.h"

namespace strand {
namespace {

// A family no backend implements, so the error path is tested in every build.
struct ProbeParams {
  Device device;
};

std::string launch_error(const ProbeParams& p) {
  try {
    backend::launch("probe_kernel", p);
  } catch (const DeviceError& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceSeam, LaunchWithoutAKernelNamesTheKernelAndTheDevice) {
  EXPECT_EQ(launch_error({Device::cpu()}), "probe_kernel: no kernel for device cpu in this build");
  EXPECT_EQ(launch_error({Device::cuda(1)}), "probe_kernel: no kernel for device cuda:1 in this build");
}

template <class Params>
bool registered(DeviceType t) {
  ensure_backends_registered();
  return backend::KernelSlot<Params>::fns[static_cast<size_t>(t)] != nullptr;
}

TEST(DeviceSeam, CpuImplementsEveryFamilyOfTheOps) {
  using namespace backend;
  constexpr DeviceType cpu = DeviceType::CPU;
  EXPECT_TRUE(registered<MapParams>(cpu));
  EXPECT_TRUE(registered<BinaryParams>(cpu));
  EXPECT_TRUE(registered<ActivationGradParams>(cpu));
  EXPECT_TRUE(registered<AxpyParams>(cpu));
  EXPECT_TRUE(registered<ReduceRowsParams>(cpu));
  EXPECT_TRUE(registered<GemmParams>(cpu));
  EXPECT_TRUE(registered<ColumnSumCastParams>(cpu));
  EXPECT_TRUE(registered<SoftmaxParams>(cpu));
  EXPECT_TRUE(registered<NormParams>(cpu));
  EXPECT_TRUE(registered<EmbeddingParams>(cpu));
  EXPECT_TRUE(registered<CrossEntropyParams>(cpu));
  EXPECT_TRUE(registered<DropoutParams>(cpu));
  EXPECT_TRUE(registered<CopyBlocksParams>(cpu));
  EXPECT_TRUE(registered<RopeParams>(cpu));
  EXPECT_TRUE(registered<AdamWParams>(cpu));
  EXPECT_TRUE(registered<ClipParams>(cpu));
}

TEST(DeviceSeam, AFamilyWithoutACudaKernelFailsOnCudaBeforeTouchingMemory) {
  // Linear (Performer) attention has no CUDA kernel in any build: the seam itself must refuse.
  ASSERT_FALSE(registered<backend::LinearAttentionForwardParams>(DeviceType::CUDA));
  backend::LinearAttentionForwardParams p;
  p.device = Device::cuda(0);
  p.batch = 1, p.q_heads = p.kv_heads = 1, p.q_len = p.kv_len = 4, p.head_dim = p.value_dim = 8, p.features = 4;
  try {  // null buffers: the launch must fail before any kernel reads them
    backend::launch("linear_attention_forward", p);
    ADD_FAILURE() << "linear_attention_forward ran on cuda:0";
  } catch (const DeviceError& e) {
    EXPECT_EQ(std::string(e.what()), "linear_attention_forward: no kernel for device cuda:0 in this build");
  }
}

TEST(DeviceSeam, OpsRejectADeviceMixBeforeLaunching) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "no cuda device: no tensor can be made there";
  Tensor a = Tensor::ones({2, 3});
  Tensor b = Tensor::ones({2, 3}, DType::F32, Device::cuda(0));
  try {
    ops::add(a, b);
    ADD_FAILURE() << "add mixed cpu and cuda:0";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("add: device mix"), std::string::npos) << e.what();
  }
}

TEST(DeviceRuntime, FoundByDeviceType) {
  EXPECT_EQ(device_count(DeviceType::CPU), 1);
  DeviceRuntime& cpu = device_runtime(DeviceType::CPU);
  void* p = cpu.allocate(512, 0);
  const double x = 2.5;
  double y = 0;
  cpu.copy_from_host(p, &x, sizeof x, 0);
  cpu.copy_to_host(&y, p, sizeof y, 0);
  EXPECT_EQ(y, 2.5);
  cpu.deallocate(p, 0);
}

TEST(DeviceRuntime, NoCudaDeviceIsADeviceErrorOnAllocation) {
  if (device_count(DeviceType::CUDA) > 0) GTEST_SKIP() << "a GPU is here";
  try {
    Tensor::empty({4}, DType::F32, Device::cuda(0));
    ADD_FAILURE() << "a cuda tensor was made without a cuda device";
  } catch (const DeviceError& e) {
#ifndef STRAND_WITH_CUDA
    EXPECT_NE(std::string(e.what()).find("strand was built without CUDA"), std::string::npos) << e.what();
#endif
  }
}

}  // namespace
}  // namespace strand
