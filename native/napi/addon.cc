// The addon's entry point: registers the NativeModel class and the module-level functions, and
// gives each environment its pool of model threads. The parts, all free of libtorch headers
// (which cost ~20 s per translation unit; the engine behind engine/engine.h has them):
//   convert.*       JS values ↔ engine structs, errors with a `code`
//   options.*       the option readers (lib/binding.ts shapes → engine/types.h structs)
//   pool.*          the model threads and the promise tasks they run
//   model_wrap.*    NativeModel: info, forward, sample, sampleGamma, evaluate, openBatch, dispose
//   batch_wrap.*    NativeBatch: the batched fast sampler (add, remove, step, close)
//   model_loaders.cc, runtime.cc, metaschedule_query.cc   the module-level functions
#include "napi/addon.h"

#include <napi.h>

#include "napi/batch_wrap.h"
#include "napi/model_wrap.h"
#include "napi/pool.h"

namespace hdlm {
namespace js {
AddonData::AddonData() = default;
AddonData::~AddonData() = default;
}  // namespace js
}  // namespace hdlm

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace hdlm::js;
  auto* data = new AddonData();
  data->model_constructor = Napi::Persistent(ModelWrap::Define(env));
  data->batch_constructor = Napi::Persistent(BatchWrap::Define(env));
  data->pool = std::make_unique<Pool>(env, pool_size_from_env());
  env.SetInstanceData(data);
  exports.Set("buildModel", Napi::Function::New(env, BuildModel));
  exports.Set("loadTorchScript", Napi::Function::New(env, LoadTorchScript));
  exports.Set("runtimeInfo", Napi::Function::New(env, GetRuntimeInfo));
  exports.Set("fusedKernelStatus", Napi::Function::New(env, GetFusedKernelStatus));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("setExitWait", Napi::Function::New(env, SetExitWait));
  exports.Set("setMallocThresholds", Napi::Function::New(env, SetMallocThresholds));
  exports.Set("cudaMemory", Napi::Function::New(env, GetCudaMemory));
  exports.Set("metascheduleQuery", Napi::Function::New(env, MetascheduleQuery));
  exports.Set("buildGpt2", Napi::Function::New(env, BuildGpt2));
  return exports;
}

}  // namespace

NODE_API_MODULE(hdlm, Init)
