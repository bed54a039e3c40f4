// The runtime queries of the engine's face (engine.h): libtorch's version and threads, the CUDA
// devices, the fused kernels' status and the CUDA allocator's counters.
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>
#ifdef HDLM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "cuda/fused_kernels.h"
#include "engine/engine.h"
#include "engine/guarded.h"

namespace hdlm {

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.libtorch_version = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                          std::to_string(TORCH_VERSION_PATCH);
#ifdef HDLM_WITH_CUDA
  info.cuda_compiled = true;
  info.cuda_device_count = static_cast<int64_t>(torch::cuda::device_count());
  if (info.cuda_device_count > 0) info.cuda_device_name = at::cuda::getDeviceProperties(0)->name;
#endif
  info.threads = at::get_num_threads();
  return info;
}

FusedKernelStatus fused_kernel_status(int64_t device_index) {
  FusedKernelStatus s;
#ifdef HDLM_WITH_CUDA
  if (device_index < 0 || device_index >= static_cast<int64_t>(torch::cuda::device_count())) {
    s.reason = "no CUDA device " + std::to_string(device_index);
    return s;
  }
  guarded("HDLM_NATIVE", "fused kernels", [&] {
    s.available = fused::available(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index)), &s.reason);
  });
#else
  s.reason = "built without CUDA";
#endif
  return s;
}

CudaMemory cuda_memory(int64_t device_index, bool reset_peak) {
  CudaMemory m;
#ifdef HDLM_WITH_CUDA
  if (device_index >= 0 && device_index < static_cast<int64_t>(torch::cuda::device_count())) {
    const auto index = static_cast<c10::DeviceIndex>(device_index);
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    // index 0 of every StatArray is StatType::AGGREGATE (all pools)
    m.allocated = static_cast<int64_t>(stats.allocated_bytes[0].current);
    m.peak_allocated = static_cast<int64_t>(stats.allocated_bytes[0].peak);
    m.reserved = static_cast<int64_t>(stats.reserved_bytes[0].current);
    if (reset_peak) c10::cuda::CUDACachingAllocator::resetPeakStats(index);
  }
#endif
  return m;
}

void set_threads(int64_t n) {
  guarded("HDLM_INVALID_ARGUMENT", "threads", [&] { at::set_num_threads(static_cast<int>(n)); });
}

}  // namespace hdlm
