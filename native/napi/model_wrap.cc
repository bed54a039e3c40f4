#include "napi/model_wrap.h"

#include <algorithm>

#include "napi/addon.h"
#include "napi/batch_wrap.h"
#include "napi/convert.h"
#include "napi/options.h"

namespace hdlm {
namespace js {
namespace {

// A call on a model: keeps the JS model object alive (a napi_ref, released on the main thread
// in Deliver) and fails with HDLM_DISPOSED if dispose() came before it started.
class ModelTask : public PromiseTask {
 public:
  ModelTask(Napi::Env env, ModelWrap* wrap, std::shared_ptr<Model> model, std::shared_ptr<ModelState> state)
      : PromiseTask(env), wrap_(wrap), model_(std::move(model)), state_(std::move(state)) {
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_reference(env, wrap->Value(), 1, &self_));
  }
  void Deliver(Napi::Env env) override {
    {
      Napi::HandleScope scope(env);
      wrap_->CallDone();
      napi_delete_reference(env, self_);
    }
    PromiseTask::Deliver(env);
  }

 protected:
  void check_live() {
    if (state_->disposed.load()) throw EngineError("HDLM_DISPOSED", "the model was disposed before this call started");
  }
  // Runs on the pool thread; drops the model reference here, so a disposed model's memory is
  // returned by the pool thread as soon as its last job ends.
  void Execute() override {
    PromiseTask::Execute();
    model_.reset();
  }

  ModelWrap* wrap_;
  napi_ref self_ = nullptr;
  std::shared_ptr<Model> model_;
  std::shared_ptr<ModelState> state_;
};

class ForwardTask : public ModelTask {
 public:
  ForwardTask(Napi::Env env, ModelWrap* wrap, std::shared_ptr<Model> model, std::shared_ptr<ModelState> state,
              ForwardRequest request)
      : ModelTask(env, wrap, std::move(model), std::move(state)), request_(std::move(request)) {}

 protected:
  void Run() override {
    check_live();
    const auto& r = request_;
    logits_ = model_->forward(r.tokens, r.batch, r.length, r.positions, r.sigma, r.fast);
  }
  napi_value Result(Napi::Env env) override {
    auto data = to_float32_array(env, logits_.data);
    logits_.data = std::vector<float>();
    auto shape = Napi::Array::New(env, 3);
    shape.Set(0u, to_number(env, logits_.batch));
    shape.Set(1u, to_number(env, logits_.length));
    shape.Set(2u, to_number(env, logits_.vocab));
    auto out = Napi::Object::New(env);
    out.Set("data", data);
    out.Set("shape", shape);
    return out;
  }

 private:
  ForwardRequest request_;
  Logits logits_;
};

class SaveTask : public ModelTask {
 public:
  SaveTask(Napi::Env env, ModelWrap* wrap, std::shared_ptr<Model> model, std::shared_ptr<ModelState> state,
           std::string path)
      : ModelTask(env, wrap, std::move(model), std::move(state)), path_(std::move(path)) {}

 protected:
  void Run() override {
    check_live();
    model_->save_torchscript(path_);
  }
  napi_value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  std::string path_;
};

// Sampling: a task, an abort flag and (optionally) progress events posted through the pool's
// thread-safe function before the result, so onStep never fires after the promise settled.

// The JS side of one sample call's progress: the onStep function (a napi_ref, deleted on the
// main thread when the call's promise settles).
struct ProgressTarget {
  napi_ref callback = nullptr;
};

class StepMessage : public Message {
 public:
  StepMessage(std::shared_ptr<ProgressTarget> target, int64_t step, int64_t total, std::vector<int32_t> tokens)
      : target_(std::move(target)), step_(step), total_(total), tokens_(std::move(tokens)) {}
  void Deliver(Napi::Env env) override {
    if (!target_->callback) return;
    Napi::HandleScope scope(env);
    try {
      napi_value fn;
      if (napi_get_reference_value(env, target_->callback, &fn) != napi_ok || fn == nullptr) return;
      Napi::Function(env, fn).Call({to_number(env, step_), to_number(env, total_),
                                    tokens_.empty() ? env.Null() : to_int32_array(env, tokens_).As<Napi::Value>()});
    } catch (const Napi::Error& e) {
      // A throwing onStep must not take the process down; report it like Node does.
      napi_fatal_exception(env, e.Value());
    }
  }

 private:
  std::shared_ptr<ProgressTarget> target_;
  int64_t step_, total_;
  std::vector<int32_t> tokens_;
};

class SampleTask : public ModelTask {
 public:
  SampleTask(Napi::Env env, ModelWrap* wrap, std::shared_ptr<Model> model, std::shared_ptr<ModelState> state,
             SampleCall call, std::shared_ptr<AbortFlag> abort, std::shared_ptr<ProgressTarget> progress)
      : ModelTask(env, wrap, std::move(model), std::move(state)),
        pool_(&pool_of(env)),
        call_(std::move(call)),
        abort_(std::move(abort)),
        progress_(std::move(progress)) {}

  void Cancel() override { abort_->abort(); }

  void Deliver(Napi::Env env) override {
    if (progress_ && progress_->callback) {
      napi_delete_reference(env, progress_->callback);
      progress_->callback = nullptr;
    }
    ModelTask::Deliver(env);
  }

 protected:
  void Run() override {
    check_live();
    StepCallback cb = [this](int64_t step, int64_t total, bool report, std::vector<int32_t>&& tokens) {
      abort_->steps_done.store(step);
      if (progress_ && report) pool_->Post(new StepMessage(progress_, step, total, std::move(tokens)));
    };
    try {
      result_ = call_(*model_, abort_->requested, cb);
    } catch (const EngineError& e) {
      if (e.code == "HDLM_NON_FINITE") {
        throw EngineError(e.code, std::string(e.what()) + ", at step " + std::to_string(abort_->steps_done.load() + 1));
      }
      if (e.code != "HDLM_ABORTED") throw;
      if (state_->disposed.load()) {
        throw EngineError("HDLM_DISPOSED", "the model was disposed while this call was running");
      }
      throw;
    }
  }
  napi_value Result(Napi::Env env) override { return to_int32_array(env, result_); }

  // Rejections carry how many steps ran, and how many had run when abort was asked for.
  void Decorate(Napi::Env env, Napi::Error& err) override {
    err.Set("stepsDone", to_number(env, abort_->steps_done.load()));
    const auto at = abort_->steps_at_abort.load();
    if (at >= 0) err.Set("stepsAtAbort", to_number(env, at));
  }

 private:
  Pool* pool_;
  SampleCall call_;
  std::shared_ptr<AbortFlag> abort_;
  std::shared_ptr<ProgressTarget> progress_;
  std::vector<int32_t> result_;
};

// model.evaluate(request) → { promise, abort }.
class EvalTask : public ModelTask {
 public:
  EvalTask(Napi::Env env, ModelWrap* wrap, std::shared_ptr<Model> model, std::shared_ptr<ModelState> state,
           EvalRequest request, std::shared_ptr<AbortFlag> abort)
      : ModelTask(env, wrap, std::move(model), std::move(state)),
        request_(std::move(request)),
        abort_(std::move(abort)) {}

  void Cancel() override { abort_->abort(); }

 protected:
  void Run() override {
    check_live();
    result_ = model_->evaluate(request_, abort_->requested);
  }
  napi_value Result(Napi::Env env) override {
    auto out = Napi::Object::New(env);
    out.Set("values", to_float64_array(env, result_.values));
    out.Set("emptyDraws", to_int32_array(env, result_.empty_draws));
    out.Set("rows", to_number(env, result_.rows));
    out.Set("cols", to_number(env, result_.cols));
    return out;
  }

 private:
  EvalRequest request_;
  std::shared_ptr<AbortFlag> abort_;
  EvalResult result_;
};

}  // namespace

Napi::Function ModelWrap::Define(Napi::Env env) {
  return DefineClass(
      env, "NativeModel",
      {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("forward", &ModelWrap::Forward),
       InstanceMethod("sample", &ModelWrap::Sample), InstanceMethod("sampleGamma", &ModelWrap::SampleGamma),
       InstanceMethod("dispose", &ModelWrap::Dispose), InstanceMethod("isDisposed", &ModelWrap::IsDisposed),
       InstanceMethod("pendingCalls", &ModelWrap::PendingCalls), InstanceMethod("evaluate", &ModelWrap::Evaluate),
       InstanceMethod("openBatch", &ModelWrap::OpenBatch),
       InstanceMethod("saveTorchScript", &ModelWrap::SaveTorchScript)});
}

Napi::Object ModelWrap::New(Napi::Env env, std::shared_ptr<Model> model) {
  auto* data = env.GetInstanceData<AddonData>();
  data->constructing = std::move(model);
  try {
    auto obj = data->model_constructor.New({});
    data->constructing.reset();
    return obj;
  } catch (...) {
    data->constructing.reset();
    throw;
  }
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  auto* data = info.Env().GetInstanceData<AddonData>();
  if (!data->constructing) {
    throw make_error(info.Env(), "HDLM_INVALID_ARGUMENT", "NativeModel cannot be constructed from JavaScript");
  }
  model_ = std::move(data->constructing);
}

std::shared_ptr<Model> ModelWrap::live(Napi::Env env) {
  if (!model_) throw make_error(env, "HDLM_DISPOSED", "the model has been disposed");
  return model_;
}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  ModelInfo mi;
  try {
    mi = model->info();
  } catch (const std::exception& e) {
    throw make_error(env, "HDLM_NATIVE", e.what());
  }
  auto out = Napi::Object::New(env);
  out.Set("family", mi.family);
  out.Set("configJson", mi.config_json);
  out.Set("device", mi.device);
  out.Set("formatVersion", to_number(env, mi.format_version));
  out.Set("precision", mi.precision);
  return out;
}

Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  auto request = read_forward_request(info);
  auto* task = new ForwardTask(env, this, std::move(model), state_, std::move(request));
  napi_value promise = task->Promise();
  ++pending_;
  pool_of(env).Submit(task);
  return Napi::Value(env, promise);
}

Napi::Value ModelWrap::SaveTorchScript(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  if (info.Length() < 1 || !info[0].IsString()) throw_type(env, "saveTorchScript(path)");
  auto* task = new SaveTask(env, this, std::move(model), state_, info[0].As<Napi::String>().Utf8Value());
  napi_value promise = task->Promise();
  ++pending_;
  pool_of(env).Submit(task);
  return Napi::Value(env, promise);
}

Napi::Value ModelWrap::Sample(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "sample(options, onStep)");
  auto options = read_sample_options(env, info[0].As<Napi::Object>());
  return StartSample(info, std::move(model),
                     [options](Model& m, const std::atomic<bool>& abort, const StepCallback& cb) {
                       return m.sample(options, abort, cb);
                     });
}

Napi::Value ModelWrap::SampleGamma(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "sampleGamma(options, onStep)");
  auto options = read_gamma_options(env, info[0].As<Napi::Object>());
  return StartSample(info, std::move(model),
                     [options](Model& m, const std::atomic<bool>& abort, const StepCallback& cb) {
                       return m.sample_gamma(options, abort, cb);
                     });
}

Napi::Value ModelWrap::Evaluate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "evaluate(request)");
  auto request = read_eval_request(env, info[0].As<Napi::Object>());
  auto abort = TrackAbort();  // dispose() aborts running evaluations too
  return SubmitAbortable(env, new EvalTask(env, this, std::move(model), state_, std::move(request), abort), abort);
}

Napi::Value ModelWrap::OpenBatch(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  std::shared_ptr<BatchedSampler> sampler;
  try {
    sampler = model->open_batch();
  } catch (const EngineError& e) {
    throw make_error(env, e.code, e.what());
  }
  return BatchWrap::New(env, BatchParts{std::move(model), std::move(sampler), state_});
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  // Calls not started yet reject with HDLM_DISPOSED; running samples stop at their next step
  // and reject with HDLM_DISPOSED; a running forward finishes. Jobs hold their own reference,
  // so the module is freed when the last of them returns.
  state_->disposed.store(true);
  for (auto& weak : aborts_) {
    if (auto flag = weak.lock()) flag->abort();
  }
  aborts_.clear();
  model_.reset();
  return info.Env().Undefined();
}

Napi::Value ModelWrap::IsDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !model_); }

Napi::Value ModelWrap::PendingCalls(const Napi::CallbackInfo& info) { return to_number(info.Env(), pending_); }

// Starts `call` on a pool thread; returns { promise, abort }. info[1] is the optional onStep.
Napi::Value ModelWrap::StartSample(const Napi::CallbackInfo& info, std::shared_ptr<Model> model, SampleCall call) {
  auto env = info.Env();
  std::shared_ptr<ProgressTarget> progress;
  if (info.Length() > 1 && info[1].IsFunction()) {
    progress = std::make_shared<ProgressTarget>();
    NAPI_THROW_IF_FAILED(env, napi_create_reference(env, info[1], 1, &progress->callback), Napi::Value());
  }
  auto abort = TrackAbort();
  return SubmitAbortable(env, new SampleTask(env, this, std::move(model), state_, std::move(call), abort, progress),
                         abort);
}

std::shared_ptr<AbortFlag> ModelWrap::TrackAbort() {
  // Forget the flags of finished calls, then remember this one for dispose().
  aborts_.erase(
      std::remove_if(aborts_.begin(), aborts_.end(), [](const std::weak_ptr<AbortFlag>& w) { return w.expired(); }),
      aborts_.end());
  auto abort = std::make_shared<AbortFlag>();
  aborts_.push_back(abort);
  return abort;
}

Napi::Value ModelWrap::SubmitAbortable(Napi::Env env, PromiseTask* task, const std::shared_ptr<AbortFlag>& abort) {
  napi_value promise = task->Promise();
  ++pending_;
  pool_of(env).Submit(task);
  auto out = Napi::Object::New(env);
  out.Set("promise", Napi::Value(env, promise));
  out.Set("abort", Napi::Function::New(env, [abort](const Napi::CallbackInfo& info) {
            abort->abort();
            return info.Env().Undefined();
          }));
  return out;
}

}  // namespace js
}  // namespace hdlm
