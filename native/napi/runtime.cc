// runtimeInfo, fusedKernelStatus, setThreads and cudaMemory: the runtime as the engine sees it.
#include <cstdlib>  // defines __GLIBC__ where glibc is the C library
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "engine/engine.h"
#include "napi/addon.h"
#include "napi/convert.h"

namespace hdlm {
namespace js {

Napi::Value GetRuntimeInfo(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto ri = runtime_info();
  auto out = Napi::Object::New(env);
  out.Set("libtorchVersion", ri.libtorch_version);
  out.Set("cudaCompiled", Napi::Boolean::New(env, ri.cuda_compiled));
  out.Set("cudaDeviceCount", to_number(env, ri.cuda_device_count));
  out.Set("threads", to_number(env, ri.threads));
  out.Set("cudaDeviceName", ri.cuda_device_name);
  out.Set("workerThreads", to_number(env, static_cast<int64_t>(pool_of(env).size())));
  return out;
}

Napi::Value GetFusedKernelStatus(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto s = fused_kernel_status(static_cast<int64_t>(info[0].As<Napi::Number>().Int64Value()));
  auto out = Napi::Object::New(env);
  out.Set("available", Napi::Boolean::New(env, s.available));
  out.Set("reason", s.reason);
  return out;
}

Napi::Value SetMallocThresholds(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber())
    throw_type(env, "setMallocThresholds(mmap, trim)");
#if defined(__GLIBC__)
  const auto mmap_threshold = info[0].As<Napi::Number>().Int64Value();
  const auto trim_threshold = info[1].As<Napi::Number>().Int64Value();
  const bool ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold)) == 1 &&
                  mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) == 1;
  return Napi::Boolean::New(env, ok);
#else
  return Napi::Boolean::New(env, false);
#endif
}

Napi::Value SetExitWait(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw_type(env, "setExitWait(ms)");
  set_exit_wait_ms(info[0].As<Napi::Number>().Int64Value());
  return env.Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw_type(env, "setThreads(n)");
  const auto n = info[0].As<Napi::Number>().Int64Value();
  if (n < 1 || n > 4096) throw_type(env, "a thread count in [1, 4096]");
  try {
    set_threads(n);
  } catch (const EngineError& e) {
    throw engine_error(env, e);
  }
  return env.Undefined();
}

Napi::Value GetCudaMemory(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean())
    throw_type(env, "cudaMemory(deviceIndex, resetPeak)");
  const auto m = cuda_memory(info[0].As<Napi::Number>().Int64Value(), info[1].As<Napi::Boolean>().Value());
  if (m.allocated < 0) return env.Null();
  auto out = Napi::Object::New(env);
  out.Set("allocated", to_number(env, m.allocated));
  out.Set("peakAllocated", to_number(env, m.peak_allocated));
  out.Set("reserved", to_number(env, m.reserved));
  return out;
}

}  // namespace js
}  // namespace hdlm
