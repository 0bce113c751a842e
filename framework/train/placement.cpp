// run.device: the rank's device and the in-place move of parameters onto it (placement.h).
#include "framework/train/placement.h"

#include <set>

#include "framework/core/device_runtime.h"
#include "framework/core/error.h"
#include "parallel/comm/launcher.h"

namespace strand::train {

Device training_device(const config::Config& config) {
  if (config.run.device == config::RunDevice::Cpu) return Device::cpu();
  const int gpus = device_count(DeviceType::CUDA);
#ifdef STRAND_WITH_CUDA
  const char* why = "this machine has no GPU visible to strand (check nvidia-smi and CUDA_VISIBLE_DEVICES)";
#else
  const char* why = "this build has no CUDA, so no GPU (rebuild with the CUDA toolkit: STRAND_CUDA=ON)";
#endif
  STRAND_CHECK(gpus > 0, config::ConfigError, "key 'run.device': cuda, but ", why, "; use run.device: cpu");
  // Ranks on one machine take its GPUs in turn; more ranks than GPUs share them.
  return Device::cuda(parallel::detect_launch().local_rank % gpus);
}

void check_device(const config::Config& config) { (void)training_device(config); }

void place_tensors(const std::vector<Tensor>& tensors, Device device) {
  std::set<const void*> storages;
  for (const Tensor& t : tensors) {
    if (t.device() == device) continue;
    // Two parameters on one storage (views of a shared buffer) would each get a copy: refused.
    STRAND_CHECK(storages.insert(t.storage().get()).second && t.is_contiguous() && t.offset() == 0 &&
                     t.nbytes() == t.storage()->nbytes(),
                 ValueError, "run.device: ", describe(t), " is a view of a shared buffer; it cannot move alone");
    const Tensor moved = t.copy_as(t.dtype(), device);
    t.impl()->storage = moved.storage();  // the same TensorImpl, now over device memory
  }
}

}  // namespace strand::train
