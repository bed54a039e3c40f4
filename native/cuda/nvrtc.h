// Compiles CUDA C++ at run time with NVRTC and launches its kernels through the CUDA driver API.
// NVRTC and the driver are loaded with dlopen (NVRTC: the library libtorch itself uses), so
// building the addon needs no CUDA compiler nor CUDA headers beyond libtorch's, and loading it
// works on machines without a driver: libtorch's wheels ship neither nvrtc.h nor libtorch's own
// NVRTC header, and linking libcuda directly would break loading the addon there. CUDA builds
// only (HDLM_WITH_CUDA).
#pragma once

#ifdef HDLM_WITH_CUDA

#include <cstdint>
#include <string>
#include <vector>

namespace hdlm {
namespace nvrtc {

using CUfunction = void*;

// Compiles `source` (no #include) as `file_name` for the architecture of CUDA device `device`,
// loads it into the device's primary context (the one the CUDA runtime uses) for the rest of
// the process, like libtorch's own JIT kernels, and looks up the extern "C" kernels `names` into
// `functions`. Returns false with `why` set when NVRTC or the driver is missing or a step fails.
bool load_kernels(int device, const char* source, const char* file_name, const std::vector<const char*>& names,
                  std::vector<CUfunction>& functions, std::string& why);

// Launches `f` on the current CUDA stream with a (grid, grid_y) grid of `block` threads; `args`
// as cuLaunchKernel takes them. Throws (a c10::Error) when the launch fails.
void launch(CUfunction f, int64_t grid, int block, void** args, int64_t grid_y = 1);

}  // namespace nvrtc
}  // namespace hdlm

#endif  // HDLM_WITH_CUDA
