#include "napi/batch_wrap.h"

#include "napi/addon.h"
#include "napi/convert.h"
#include "napi/options.h"

namespace hdlm {
namespace js {
namespace {

// Steps of the batch on a pool thread; resolves to [{ id, step, total, done, tokens }].
class BatchStepTask : public PromiseTask {
 public:
  BatchStepTask(Napi::Env env, BatchParts parts, int64_t max_steps)
      : PromiseTask(env), parts_(std::move(parts)), max_steps_(max_steps) {}

 protected:
  void Run() override {
    if (parts_.state->disposed.load()) {
      throw EngineError("HDLM_DISPOSED", "the model was disposed while this call was running");
    }
    events_ = parts_.sampler->step(max_steps_);
  }
  void Execute() override {
    PromiseTask::Execute();
    parts_ = BatchParts();  // the pool thread drops its references (a disposed model's memory goes here)
  }
  napi_value Result(Napi::Env env) override {
    auto out = Napi::Array::New(env, events_.size());
    for (size_t i = 0; i < events_.size(); ++i) {
      const auto& e = events_[i];
      auto o = Napi::Object::New(env);
      o.Set("id", to_number(env, e.id));
      o.Set("step", to_number(env, e.step));
      o.Set("total", to_number(env, e.total));
      o.Set("done", Napi::Boolean::New(env, e.done));
      o.Set("tokens", e.tokens.empty() ? env.Null() : to_int32_array(env, e.tokens).As<Napi::Value>());
      out.Set(static_cast<uint32_t>(i), o);
    }
    events_.clear();
    return out;
  }

 private:
  BatchParts parts_;
  int64_t max_steps_;
  std::vector<BatchRowEvent> events_;
};

}  // namespace

Napi::Function BatchWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeBatch",
                     {InstanceMethod("add", &BatchWrap::Add), InstanceMethod("remove", &BatchWrap::Remove),
                      InstanceMethod("step", &BatchWrap::Step), InstanceMethod("close", &BatchWrap::Close)});
}

Napi::Object BatchWrap::New(Napi::Env env, BatchParts parts) {
  auto* data = env.GetInstanceData<AddonData>();
  data->constructing_batch = std::make_unique<BatchParts>(std::move(parts));
  try {
    auto obj = data->batch_constructor.New({});
    data->constructing_batch.reset();
    return obj;
  } catch (...) {
    data->constructing_batch.reset();
    throw;
  }
}

BatchWrap::BatchWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BatchWrap>(info) {
  auto* data = info.Env().GetInstanceData<AddonData>();
  if (!data->constructing_batch) {
    throw make_error(info.Env(), "HDLM_INVALID_ARGUMENT", "NativeBatch cannot be constructed from JavaScript");
  }
  parts_ = std::move(*data->constructing_batch);
  data->constructing_batch.reset();
}

BatchParts& BatchWrap::live(Napi::Env env) {
  if (closed_) throw make_error(env, "HDLM_INVALID_ARGUMENT", "this batch was closed");
  if (parts_.state->disposed.load()) throw make_error(env, "HDLM_DISPOSED", "the model has been disposed");
  return parts_;
}

// add(id, options, fixedTokens | null, watch)
Napi::Value BatchWrap::Add(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto& parts = live(env);
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsObject())
    throw_type(env, "add(id, options, fixedTokens, watch)");
  auto options = read_sample_options(env, info[1].As<Napi::Object>());
  if (info.Length() > 2 && !info[2].IsNull() && !info[2].IsUndefined()) {
    options.fixed_tokens = to_int32_vector(env, info[2], "fixedTokens");
  }
  try {
    const bool watch = info.Length() > 3 && info[3].ToBoolean().Value();
    parts.sampler->add(info[0].As<Napi::Number>().Int64Value(), options, watch);
  } catch (const EngineError& e) {
    throw make_error(env, e.code, e.what());
  }
  return env.Undefined();
}

Napi::Value BatchWrap::Remove(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (closed_) return env.Undefined();
  if (info.Length() < 1 || !info[0].IsNumber()) throw_type(env, "remove(id)");
  parts_.sampler->remove(info[0].As<Napi::Number>().Int64Value());
  return env.Undefined();
}

// step(maxSteps)
Napi::Value BatchWrap::Step(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto& parts = live(env);
  if (info.Length() < 1 || !info[0].IsNumber()) throw_type(env, "step(maxSteps)");
  const int64_t max_steps = info[0].As<Napi::Number>().Int64Value();
  if (max_steps < 1) throw make_error(env, "HDLM_INVALID_ARGUMENT", "step(maxSteps): maxSteps must be at least 1");
  auto* task = new BatchStepTask(env, parts, max_steps);
  napi_value promise = task->Promise();
  pool_of(env).Submit(task);
  return Napi::Value(env, promise);
}

Napi::Value BatchWrap::Close(const Napi::CallbackInfo& info) {
  closed_ = true;
  parts_ = BatchParts();
  return info.Env().Undefined();
}

}  // namespace js
}  // namespace hdlm
