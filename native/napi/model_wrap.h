// NativeModel: the JS object wrapping an engine model. Its calls run on the addon's pool;
// dispose() releases the model once the calls already running end.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/engine.h"
#include "napi/pool.h"

namespace hdlm {
namespace js {

// What the jobs of one model share with it: dispose() sets `disposed` and aborts running samples.
struct ModelState {
  std::atomic<bool> disposed{false};
};

// The abort flag of one sample or evaluate call; aborted by its AbortSignal, by dispose(), or at exit.
struct AbortFlag {
  std::atomic<bool> requested{false};
  std::atomic<int64_t> steps_done{0};
  std::atomic<int64_t> steps_at_abort{-1};
  void abort() {
    int64_t expected = -1;
    steps_at_abort.compare_exchange_strong(expected, steps_done.load());
    requested.store(true);
  }
};

// The sampling call a pool thread runs: one of the engine's samplers, bound to its options.
using SampleCall = std::function<std::vector<int32_t>(Model&, const std::atomic<bool>&, const StepCallback&)>;

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env);

  // Wraps an engine model in a new JS object (main thread only).
  static Napi::Object New(Napi::Env env, std::shared_ptr<Model> model);

  // Takes the model ModelWrap::New left in the addon data: no napi_external (whose finalizer
  // record lingers until a GC that may never come; valgrind showed it lost at exit).
  explicit ModelWrap(const Napi::CallbackInfo& info);

  // Main thread: a call of this model finished (its promise settles now).
  void CallDone() { --pending_; }

 private:
  std::shared_ptr<Model> live(Napi::Env env);

  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Sample(const Napi::CallbackInfo& info);
  Napi::Value SampleGamma(const Napi::CallbackInfo& info);
  Napi::Value Evaluate(const Napi::CallbackInfo& info);
  Napi::Value OpenBatch(const Napi::CallbackInfo& info);
  Napi::Value SaveTorchScript(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);
  Napi::Value PendingCalls(const Napi::CallbackInfo& info);

  Napi::Value StartSample(const Napi::CallbackInfo& info, std::shared_ptr<Model> model, SampleCall call);
  // A new abort flag, remembered so that dispose() can abort the call.
  std::shared_ptr<AbortFlag> TrackAbort();
  // Queues an abortable task on the pool; returns { promise, abort }.
  Napi::Value SubmitAbortable(Napi::Env env, PromiseTask* task, const std::shared_ptr<AbortFlag>& abort);

  std::shared_ptr<Model> model_;
  std::shared_ptr<ModelState> state_ = std::make_shared<ModelState>();
  std::vector<std::weak_ptr<AbortFlag>> aborts_;  // main thread only
  int64_t pending_ = 0;                           // main thread only
};

}  // namespace js
}  // namespace hdlm
