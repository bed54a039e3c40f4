#include "cuda/nvrtc.h"

#ifdef HDLM_WITH_CUDA

#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

namespace hdlm {
namespace nvrtc {
namespace {

using CUresult = int;
using CUmodule = void*;
using CUstream = void*;
using CUcontext = void*;
using nvrtcResult = int;
using nvrtcProgram = void*;
constexpr int kSuccess = 0;

struct Api {
  nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram*, const char*, const char*, int, const char* const*,
                                    const char* const*);
  nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int, const char* const*);
  nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t*);
  nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char*);
  nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram, size_t*);
  nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram, char*);
  nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram*);
  const char* (*nvrtcGetErrorString)(nvrtcResult);
  CUresult (*cuModuleLoadData)(CUmodule*, const void*);
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                             void**, void**);
  CUresult (*cuCtxGetCurrent)(CUcontext*);
  CUresult (*cuGetErrorString)(CUresult, const char**);
};

template <typename F>
bool resolve(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

// Loads the API once; `why` says what is missing when it fails.
const Api* api(std::string* why) {
  static std::string error;
  static const Api* loaded = []() -> const Api* {
    // libtorch loads its NVRTC (found through its own RPATH) on first use; asking for it first
    // lets the dlopen below find the same library by soname.
    try {
      (void)at::globalContext().getNVRTC();
    } catch (const std::exception&) {
    }
    void* nvrtc = nullptr;
    const std::string major = std::to_string(CUDART_VERSION / 1000);
    for (const std::string name : {"libnvrtc.so." + major, std::string("libnvrtc.so")}) {
      if ((nvrtc = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL))) break;
    }
    void* cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvrtc || !cuda) {
      error = std::string("could not load ") + (!nvrtc ? "libnvrtc" : "libcuda");
      return nullptr;
    }
    static Api a;
    if (!resolve(nvrtc, "nvrtcCreateProgram", a.nvrtcCreateProgram) ||
        !resolve(nvrtc, "nvrtcCompileProgram", a.nvrtcCompileProgram) ||
        !resolve(nvrtc, "nvrtcGetProgramLogSize", a.nvrtcGetProgramLogSize) ||
        !resolve(nvrtc, "nvrtcGetProgramLog", a.nvrtcGetProgramLog) ||
        !resolve(nvrtc, "nvrtcGetCUBINSize", a.nvrtcGetCUBINSize) ||
        !resolve(nvrtc, "nvrtcGetCUBIN", a.nvrtcGetCUBIN) ||
        !resolve(nvrtc, "nvrtcDestroyProgram", a.nvrtcDestroyProgram) ||
        !resolve(nvrtc, "nvrtcGetErrorString", a.nvrtcGetErrorString) ||
        !resolve(cuda, "cuModuleLoadData", a.cuModuleLoadData) ||
        !resolve(cuda, "cuModuleGetFunction", a.cuModuleGetFunction) ||
        !resolve(cuda, "cuLaunchKernel", a.cuLaunchKernel) || !resolve(cuda, "cuCtxGetCurrent", a.cuCtxGetCurrent) ||
        !resolve(cuda, "cuGetErrorString", a.cuGetErrorString)) {
      error = "libnvrtc / libcuda lack an expected entry point";
      return nullptr;
    }
    return &a;
  }();
  if (!loaded && why) *why = error;
  return loaded;
}

}  // namespace

bool load_kernels(int device, const char* source, const char* file_name, const std::vector<const char*>& names,
                  std::vector<CUfunction>& functions, std::string& why) {
  const Api* nv = api(&why);
  if (!nv) return false;
  const auto* prop = at::cuda::getDeviceProperties(device);
  const std::string arch = "--gpu-architecture=sm_" + std::to_string(prop->major) + std::to_string(prop->minor);
  nvrtcProgram prog;
  if (nv->nvrtcCreateProgram(&prog, source, file_name, 0, nullptr, nullptr) != kSuccess) {
    why = "nvrtcCreateProgram failed";
    return false;
  }
  std::vector<const char*> opts = {arch.c_str(), "--std=c++17"};
  const auto res = nv->nvrtcCompileProgram(prog, static_cast<int>(opts.size()), opts.data());
  if (res != kSuccess) {
    size_t log_size = 0;
    nv->nvrtcGetProgramLogSize(prog, &log_size);
    std::string log(log_size, '\0');
    if (log_size) nv->nvrtcGetProgramLog(prog, &log[0]);
    why = std::string("NVRTC could not compile the fused kernels (") + arch + "): " + nv->nvrtcGetErrorString(res) +
          " " + log;
    nv->nvrtcDestroyProgram(&prog);
    return false;
  }
  size_t size = 0;
  nv->nvrtcGetCUBINSize(prog, &size);
  std::string cubin(size, '\0');
  nv->nvrtcGetCUBIN(prog, &cubin[0]);
  nv->nvrtcDestroyProgram(&prog);
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  cudaFree(nullptr);
  CUmodule module;
  bool loaded = nv->cuModuleLoadData(&module, cubin.data()) == kSuccess;
  functions.assign(names.size(), nullptr);
  for (size_t i = 0; loaded && i < names.size(); ++i)
    loaded = nv->cuModuleGetFunction(&functions[i], module, names[i]) == kSuccess;
  if (!loaded) {
    why = "could not load the fused kernels' module";
    return false;
  }
  return true;
}

void launch(CUfunction f, int64_t grid, int block, void** args, int64_t grid_y) {
  const Api* nv = api(nullptr);
  CUcontext ctx = nullptr;
  nv->cuCtxGetCurrent(&ctx);
  if (!ctx) cudaFree(nullptr);  // a thread that has not used the runtime yet: bind the primary context
  const auto stream = at::cuda::getCurrentCUDAStream();
  const CUresult r =
      nv->cuLaunchKernel(f, static_cast<unsigned>(grid), static_cast<unsigned>(grid_y), 1, static_cast<unsigned>(block),
                         1, 1, 0, static_cast<CUstream>(stream.stream()), args, nullptr);
  if (r != kSuccess) {
    const char* msg = nullptr;
    nv->cuGetErrorString(r, &msg);
    TORCH_CHECK(false, "fused kernel launch failed: ", msg ? msg : "unknown CUDA error");
  }
}

}  // namespace nvrtc
}  // namespace hdlm

#endif  // HDLM_WITH_CUDA
