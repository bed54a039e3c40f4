// NativeBatch: the JS object over an engine BatchedSampler (engine.h), opened by
// NativeModel.openBatch(). add and remove take effect at the next step; step() runs one step of
// every request on the addon's pool; close() lets the sampler and the model go.
#pragma once

#include <napi.h>

#include <memory>

#include "engine/engine.h"
#include "napi/model_wrap.h"

namespace hdlm {
namespace js {

// What ModelWrap::OpenBatch hands to the NativeBatch constructor.
struct BatchParts {
  std::shared_ptr<Model> model;
  std::shared_ptr<BatchedSampler> sampler;
  std::shared_ptr<ModelState> state;
};

class BatchWrap : public Napi::ObjectWrap<BatchWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::Object New(Napi::Env env, BatchParts parts);
  explicit BatchWrap(const Napi::CallbackInfo& info);

 private:
  BatchParts& live(Napi::Env env);
  Napi::Value Add(const Napi::CallbackInfo& info);
  Napi::Value Remove(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  BatchParts parts_;
  bool closed_ = false;
};

}  // namespace js
}  // namespace hdlm
