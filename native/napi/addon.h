// What the addon's parts share per environment (napi_set_instance_data), and the functions
// addon.cc exports besides the NativeModel class.
#pragma once

#include <napi.h>

#include <memory>

#include "napi/pool.h"

namespace hdlm {

class Model;

namespace js {

struct BatchParts;

struct AddonData {
  AddonData();
  ~AddonData();
  Napi::FunctionReference model_constructor;
  Napi::FunctionReference batch_constructor;
  std::unique_ptr<BatchParts> constructing_batch;  // handed from BatchWrap::New to the constructor
  std::unique_ptr<Pool> pool;
  std::shared_ptr<Model> constructing;  // handed from ModelWrap::New to the constructor
};

inline Pool& pool_of(Napi::Env env) { return *env.GetInstanceData<AddonData>()->pool; }

// model_loaders.cc: buildModel(spec), loadTorchScript(path, device, precision), buildGpt2(spec),
// each a promise of a NativeModel.
Napi::Value BuildModel(const Napi::CallbackInfo& info);
Napi::Value LoadTorchScript(const Napi::CallbackInfo& info);
Napi::Value BuildGpt2(const Napi::CallbackInfo& info);

// runtime.cc
Napi::Value GetRuntimeInfo(const Napi::CallbackInfo& info);
Napi::Value GetFusedKernelStatus(const Napi::CallbackInfo& info);
Napi::Value SetThreads(const Napi::CallbackInfo& info);
Napi::Value SetExitWait(const Napi::CallbackInfo& info);
Napi::Value SetMallocThresholds(const Napi::CallbackInfo& info);
Napi::Value GetCudaMemory(const Napi::CallbackInfo& info);
Napi::Value MetascheduleQuery(const Napi::CallbackInfo& info);

}  // namespace js
}  // namespace hdlm
