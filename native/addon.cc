// N-API glue only: unpacks arguments into engine.h structs, runs long calls on worker threads
// (AsyncWorker + Deferred), reports progress through a thread-safe function and maps engine
// errors to JS errors with a `code`. No libtorch headers here (they cost ~20 s per TU).
// Arguments are validated in TypeScript (lib/validate.ts); the checks here only keep a direct
// caller from crashing the process.
#include <napi.h>

#include <atomic>
#include <cstring>
#include <memory>

#include "engine.h"

namespace {

using hdlm::EngineError;

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  auto err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

[[noreturn]] void throw_type(Napi::Env env, const std::string& what) {
  throw make_error(env, "HDLM_INVALID_ARGUMENT", "native: expected " + what);
}

Napi::Value get(const Napi::Object& o, const char* key) { return o.Get(key); }

hdlm::Precision to_precision(Napi::Env env, const std::string& name) {
  if (name == "fp32") return hdlm::Precision::Fp32;
  if (name == "A") return hdlm::Precision::ContextA;
  if (name == "B") return hdlm::Precision::ContextB;
  if (name == "C") return hdlm::Precision::ContextC;
  throw make_error(env, "HDLM_INVALID_ARGUMENT", "native: expected precision fp32, A, B or C");
}

double get_number(const Napi::Object& o, const char* key) {
  auto v = get(o, key);
  if (!v.IsNumber()) throw_type(o.Env(), std::string("a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}

int64_t get_int(const Napi::Object& o, const char* key) {
  const double d = get_number(o, key);
  if (d != static_cast<double>(static_cast<int64_t>(d))) throw_type(o.Env(), std::string("an integer for ") + key);
  return static_cast<int64_t>(d);
}

std::string get_string(const Napi::Object& o, const char* key) {
  auto v = get(o, key);
  if (!v.IsString()) throw_type(o.Env(), std::string("a string for ") + key);
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int32_t> to_int32_vector(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw_type(env, std::string("an Int32Array for ") + what);
  }
  auto arr = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(arr.Data(), arr.Data() + arr.ElementLength());
}

Napi::Int32Array to_int32_array(Napi::Env env, const std::vector<int32_t>& data) {
  auto arr = Napi::Int32Array::New(env, data.size());
  if (!data.empty()) std::memcpy(arr.Data(), data.data(), data.size() * sizeof(int32_t));
  return arr;
}

// A worker whose result settles a promise. Run() executes off the main thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  virtual void Run() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

  void Execute() override {
    try {
      Run();
    } catch (const EngineError& e) {
      code_ = e.code;
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "HDLM_NATIVE";
      SetError(e.what());
    } catch (...) {
      code_ = "HDLM_NATIVE";
      SetError("unknown native error");
    }
  }
  void OnOK() override {
    try {
      deferred_.Resolve(Result(Env()));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(make_error(Env(), code_, e.Message()).Value()); }

  Napi::Promise::Deferred deferred_;
  std::string code_ = "HDLM_NATIVE";
};

// ---------------------------------------------------------------------------------------------
// Model objects

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("forward", &ModelWrap::Forward),
                        InstanceMethod("sample", &ModelWrap::Sample), InstanceMethod("dispose", &ModelWrap::Dispose),
                        InstanceMethod("isDisposed", &ModelWrap::IsDisposed),
                        InstanceMethod("evaluate", &ModelWrap::Evaluate)});
  }

  // Wraps an engine model in a new JS object (main thread only).
  static Napi::Object New(Napi::Env env, std::shared_ptr<hdlm::Model> model);

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw make_error(info.Env(), "HDLM_INVALID_ARGUMENT", "NativeModel cannot be constructed from JavaScript");
    }
    model_ = *info[0].As<Napi::External<std::shared_ptr<hdlm::Model>>>().Data();
  }

 private:
  std::shared_ptr<hdlm::Model> live(Napi::Env env) {
    if (!model_) throw make_error(env, "HDLM_DISPOSED", "the model has been disposed");
    return model_;
  }

  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Sample(const Napi::CallbackInfo& info);
  Napi::Value Evaluate(const Napi::CallbackInfo& info);  // evaluation (issue 8), below
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    // Running jobs hold their own reference and finish; the module is freed after the last one.
    model_.reset();
    return info.Env().Undefined();
  }
  Napi::Value IsDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !model_); }

  std::shared_ptr<hdlm::Model> model_;
};

struct AddonData {
  Napi::FunctionReference model_constructor;
};

Napi::Object ModelWrap::New(Napi::Env env, std::shared_ptr<hdlm::Model> model) {
  auto* data = env.GetInstanceData<AddonData>();
  auto holder = Napi::External<std::shared_ptr<hdlm::Model>>::New(
      env, new std::shared_ptr<hdlm::Model>(std::move(model)),
      [](Napi::Env, std::shared_ptr<hdlm::Model>* p) { delete p; });
  return data->model_constructor.New({holder});
}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  hdlm::ModelInfo mi;
  try {
    mi = model->info();
  } catch (const std::exception& e) {
    throw make_error(env, "HDLM_NATIVE", e.what());
  }
  auto out = Napi::Object::New(env);
  out.Set("family", mi.family);
  out.Set("configJson", mi.config_json);
  out.Set("device", mi.device);
  out.Set("formatVersion", Napi::Number::New(env, static_cast<double>(mi.format_version)));
  out.Set("precision", mi.precision);
  return out;
}

class ForwardWorker : public PromiseWorker {
 public:
  ForwardWorker(Napi::Env env, std::shared_ptr<hdlm::Model> model, std::vector<int32_t> tokens, int64_t batch,
                int64_t length, std::vector<int32_t> positions, bool fast)
      : PromiseWorker(env), model_(std::move(model)), tokens_(std::move(tokens)), positions_(std::move(positions)),
        batch_(batch), length_(length), fast_(fast) {}

 protected:
  void Run() override { logits_ = model_->forward(tokens_, batch_, length_, positions_, fast_); }
  Napi::Value Result(Napi::Env env) override {
    auto data = Napi::Float32Array::New(env, logits_.data.size());
    if (!logits_.data.empty()) std::memcpy(data.Data(), logits_.data.data(), logits_.data.size() * sizeof(float));
    auto shape = Napi::Array::New(env, 3);
    shape.Set(0u, Napi::Number::New(env, static_cast<double>(logits_.batch)));
    shape.Set(1u, Napi::Number::New(env, static_cast<double>(logits_.length)));
    shape.Set(2u, Napi::Number::New(env, static_cast<double>(logits_.vocab)));
    auto out = Napi::Object::New(env);
    out.Set("data", data);
    out.Set("shape", shape);
    return out;
  }

 private:
  std::shared_ptr<hdlm::Model> model_;
  std::vector<int32_t> tokens_, positions_;
  int64_t batch_, length_;
  bool fast_;
  hdlm::Logits logits_;
};

Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  if (info.Length() < 4 || !info[1].IsNumber() || !info[2].IsNumber()) {
    throw_type(env, "forward(tokens: Int32Array, batch: number, length: number, positions: Int32Array | null)");
  }
  auto tokens = to_int32_vector(env, info[0], "tokens");
  const auto batch = info[1].As<Napi::Number>().Int64Value();
  const auto length = info[2].As<Napi::Number>().Int64Value();
  std::vector<int32_t> positions;
  if (!info[3].IsNull() && !info[3].IsUndefined()) positions = to_int32_vector(env, info[3], "positions");
  const bool fast = info.Length() > 4 && info[4].ToBoolean();
  if (batch < 1 || length < 1 || static_cast<int64_t>(tokens.size()) != batch * length ||
      (!positions.empty() && positions.size() != tokens.size()) || (fast && !positions.empty())) {
    throw_type(env, "tokens (and positions) of batch × length elements; no positions in fast mode");
  }
  auto* worker = new ForwardWorker(env, std::move(model), std::move(tokens), batch, length, std::move(positions), fast);
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

// ---------------------------------------------------------------------------------------------
// Sampling: a worker, an abort flag and (optionally) a progress thread-safe function. The
// promise settles only after the worker finished AND every queued progress call was delivered,
// so onStep never fires after the promise settled.

struct StepEvent {
  int64_t step, total;
  std::vector<int32_t> tokens;
};

struct SampleJob {
  Napi::Promise::Deferred deferred;
  int pending;  // parts still running: the worker, and the progress TSFN if any
  bool failed = false;
  std::string code, message;
  std::vector<int32_t> result;

  SampleJob(Napi::Env env, int parts) : deferred(Napi::Promise::Deferred::New(env)), pending(parts) {}

  void part_done(Napi::Env env) {
    if (--pending > 0) return;
    if (failed) {
      deferred.Reject(make_error(env, code, message).Value());
    } else {
      deferred.Resolve(to_int32_array(env, result));
    }
  }
};


void deliver_step(Napi::Env env, Napi::Function callback, SampleJob*, StepEvent* event) {
  std::unique_ptr<StepEvent> owned(event);
  if (env == nullptr || callback.IsEmpty()) return;
  try {
    callback.Call({Napi::Number::New(env, static_cast<double>(event->step)),
                   Napi::Number::New(env, static_cast<double>(event->total)),
                   event->tokens.empty() ? env.Null() : to_int32_array(env, event->tokens).As<Napi::Value>()});
  } catch (const Napi::Error& e) {
    // A throwing onStep must not take the process down; report it like Node does.
    napi_fatal_exception(env, e.Value());
  }
}

using ProgressTsfnDelivering = Napi::TypedThreadSafeFunction<SampleJob, StepEvent, deliver_step>;

class SampleWorker : public Napi::AsyncWorker {
 public:
  SampleWorker(Napi::Env env, std::shared_ptr<hdlm::Model> model, hdlm::SampleOptions options,
               std::shared_ptr<std::atomic<bool>> abort, std::shared_ptr<SampleJob> job,
               ProgressTsfnDelivering progress, bool has_progress)
      : Napi::AsyncWorker(env), model_(std::move(model)), options_(std::move(options)), abort_(std::move(abort)),
        job_(std::move(job)), progress_(progress), has_progress_(has_progress) {}

  void Execute() override {
    try {
      hdlm::StepCallback cb;
      if (has_progress_) {
        cb = [this](int64_t step, int64_t total, std::vector<int32_t>&& tokens) {
          progress_.NonBlockingCall(new StepEvent{step, total, std::move(tokens)});
        };
      }
      result_ = model_->sample(options_, *abort_, cb);
    } catch (const EngineError& e) {
      code_ = e.code;
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "HDLM_NATIVE";
      SetError(e.what());
    }
    if (has_progress_) progress_.Release();
  }
  void OnOK() override {
    job_->result = std::move(result_);
    job_->part_done(Env());
  }
  void OnError(const Napi::Error& e) override {
    job_->failed = true;
    job_->code = code_;
    job_->message = e.Message();
    job_->part_done(Env());
  }

 private:
  std::shared_ptr<hdlm::Model> model_;
  hdlm::SampleOptions options_;
  std::shared_ptr<std::atomic<bool>> abort_;
  std::shared_ptr<SampleJob> job_;
  ProgressTsfnDelivering progress_;
  bool has_progress_;
  std::vector<int32_t> result_;
  std::string code_ = "HDLM_NATIVE";
};

hdlm::SampleOptions read_sample_options(Napi::Env env, const Napi::Object& o) {
  hdlm::SampleOptions s;
  const auto mode = get_string(o, "mode");
  if (mode != "full" && mode != "semi") throw_type(env, "mode 'full' or 'semi'");
  s.semi = mode == "semi";
  const auto alg = get_string(o, "alg");
  if (alg == "original") s.alg = hdlm::Algorithm::Original;
  else if (alg == "acs") s.alg = hdlm::Algorithm::Acs;
  else if (alg == "remask") s.alg = hdlm::Algorithm::Remask;
  else if (alg == "remask_adhoc_shuffle") s.alg = hdlm::Algorithm::RemaskAdhocShuffle;
  else if (alg == "remdm") s.alg = hdlm::Algorithm::Remdm;
  else throw_type(env, "a known alg");
  s.batch_size = get_int(o, "batchSize");
  s.steps = get_int(o, "steps");
  s.temperature = get_number(o, "temperature");
  s.cfg_scale = get_number(o, "cfgScale");
  s.context_length = get_int(o, "contextLength");
  s.eps = get_number(o, "eps");
  s.mask_id = get_int(o, "maskId");
  s.eta = get_number(o, "eta");
  s.block_size = get_int(o, "blockSize");
  s.prompt_length = get_int(o, "promptLength");
  auto prompt = get(o, "prompt");
  if (!prompt.IsNull() && !prompt.IsUndefined()) s.prompt = to_int32_vector(env, prompt, "prompt");
  auto seed = get(o, "seed");
  if (!seed.IsBigInt()) throw_type(env, "a bigint seed");
  bool lossless = false;
  s.seed = seed.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw_type(env, "a seed in [0, 2^64)");
  s.step_tokens = get(o, "stepTokens").ToBoolean();
  s.fast = !get(o, "reference").ToBoolean();
  // Shape sanity that would otherwise index out of bounds natively.
  if (s.batch_size < 1 || s.steps < 1 || s.context_length < 1 || s.block_size < 1 || s.prompt_length < 0 ||
      s.prompt_length > s.context_length ||
      static_cast<int64_t>(s.prompt.size()) != (s.prompt_length > 0 ? s.batch_size * s.prompt_length : 0) ||
      (s.cfg_scale > 0 && s.prompt_length == 0)) {
    throw_type(env, "consistent sampling options (sizes, prompt shape)");
  }
  return s;
}

Napi::Value ModelWrap::Sample(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "sample(options, onStep)");
  auto options = read_sample_options(env, info[0].As<Napi::Object>());
  const bool has_progress = info.Length() > 1 && info[1].IsFunction();

  auto job = std::make_shared<SampleJob>(env, has_progress ? 2 : 1);
  auto abort = std::make_shared<std::atomic<bool>>(false);
  ProgressTsfnDelivering progress;
  if (has_progress) {
    // The finalizer runs after the last queued call was delivered: that is the TSFN's part.
    auto* keep = new std::shared_ptr<SampleJob>(job);
    progress = ProgressTsfnDelivering::New(env, info[1].As<Napi::Function>(), "hdlm.onStep", 0, 1, keep->get(),
                                           [keep](Napi::Env env, void*, SampleJob* j) {
                                             j->part_done(env);
                                             delete keep;
                                           });
  }
  auto* worker = new SampleWorker(env, std::move(model), std::move(options), abort, job, progress, has_progress);
  worker->Queue();

  auto out = Napi::Object::New(env);
  out.Set("promise", job->deferred.Promise());
  out.Set("abort", Napi::Function::New(env, [abort](const Napi::CallbackInfo& info) {
            abort->store(true);
            return info.Env().Undefined();
          }));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Evaluation (issue 8): model.evaluate(request) → { promise, abort }, and buildGpt2(spec).

class EvalWorker : public Napi::AsyncWorker {
 public:
  EvalWorker(Napi::Env env, std::shared_ptr<hdlm::Model> model, hdlm::EvalRequest request,
             std::shared_ptr<std::atomic<bool>> abort)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), model_(std::move(model)),
        request_(std::move(request)), abort_(std::move(abort)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      result_ = model_->evaluate(request_, *abort_);
    } catch (const EngineError& e) {
      code_ = e.code;
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "HDLM_NATIVE";
      SetError(e.what());
    }
  }
  void OnOK() override {
    auto env = Env();
    auto values = Napi::Float64Array::New(env, result_.values.size());
    if (!result_.values.empty()) std::memcpy(values.Data(), result_.values.data(), result_.values.size() * sizeof(double));
    auto out = Napi::Object::New(env);
    out.Set("values", values);
    out.Set("rows", Napi::Number::New(env, static_cast<double>(result_.rows)));
    out.Set("cols", Napi::Number::New(env, static_cast<double>(result_.cols)));
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(make_error(Env(), code_, e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<hdlm::Model> model_;
  hdlm::EvalRequest request_;
  std::shared_ptr<std::atomic<bool>> abort_;
  hdlm::EvalResult result_;
  std::string code_ = "HDLM_NATIVE";
};

Napi::Value ModelWrap::Evaluate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "evaluate(request)");
  auto o = info[0].As<Napi::Object>();
  hdlm::EvalRequest r;
  r.op = get_string(o, "op");
  r.tokens = to_int32_vector(env, get(o, "tokens"), "tokens");
  r.rows = get_int(o, "rows");
  r.length = get_int(o, "length");
  r.batch_size = get_int(o, "batchSize");
  r.repetitions = get_int(o, "repetitions");
  r.sampling_eps = get_number(o, "samplingEps");
  r.mask_id = get_int(o, "maskId");
  auto seed = get(o, "seed");
  if (!seed.IsBigInt()) throw_type(env, "a bigint seed");
  bool lossless = false;
  r.seed = seed.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw_type(env, "a seed in [0, 2^64)");
  if (r.rows < 1 || r.length < 1 || static_cast<int64_t>(r.tokens.size()) != r.rows * r.length || r.batch_size < 1 ||
      r.repetitions < 1) {
    throw_type(env, "tokens of rows × length ids, batchSize and repetitions ≥ 1");
  }
  auto abort = std::make_shared<std::atomic<bool>>(false);
  auto* worker = new EvalWorker(env, std::move(model), std::move(r), abort);
  auto out = Napi::Object::New(env);
  out.Set("promise", worker->Promise());
  out.Set("abort", Napi::Function::New(env, [abort](const Napi::CallbackInfo& info) {
            abort->store(true);
            return info.Env().Undefined();
          }));
  worker->Queue();
  return out;
}

class Gpt2BuildWorker : public PromiseWorker {
 public:
  Gpt2BuildWorker(Napi::Env env, hdlm::BuildSpec spec) : PromiseWorker(env), spec_(std::move(spec)) {}

 protected:
  void Run() override { model_ = hdlm::build_gpt2(spec_); }
  Napi::Value Result(Napi::Env env) override { return ModelWrap::New(env, std::move(model_)); }

 private:
  hdlm::BuildSpec spec_;
  std::shared_ptr<hdlm::Model> model_;
};

// { weightsPath, fileSize, configJson, device, nHeads, nLayers, tensors: [{ name, dtype, shape, begin, end }] }
hdlm::BuildSpec read_gpt2_spec(Napi::Env env, const Napi::Object& o) {
  hdlm::BuildSpec spec;
  spec.weights_path = get_string(o, "weightsPath");
  spec.file_size = static_cast<uint64_t>(get_int(o, "fileSize"));
  spec.config_json = get_string(o, "configJson");
  spec.device = get_string(o, "device");
  spec.arch.family = "gpt2";
  spec.arch.n_heads = get_int(o, "nHeads");
  spec.arch.n_blocks = get_int(o, "nLayers");
  auto tensors = get(o, "tensors");
  if (!tensors.IsArray()) throw_type(env, "an array of tensors");
  auto list = tensors.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) {
    auto item = list.Get(i);
    if (!item.IsObject()) throw_type(env, "tensor entries as objects");
    auto t = item.As<Napi::Object>();
    hdlm::TensorEntry e;
    e.name = get_string(t, "name");
    e.dtype = get_string(t, "dtype");
    e.begin = static_cast<uint64_t>(get_int(t, "begin"));
    e.end = static_cast<uint64_t>(get_int(t, "end"));
    auto shape = get(t, "shape");
    if (!shape.IsArray()) throw_type(env, "a shape array");
    auto dims = shape.As<Napi::Array>();
    for (uint32_t j = 0; j < dims.Length(); ++j) {
      auto dim = dims.Get(j);
      if (!dim.IsNumber()) throw_type(env, "numeric dimensions");
      e.shape.push_back(dim.As<Napi::Number>().Int64Value());
    }
    spec.tensors.push_back(std::move(e));
  }
  return spec;
}

Napi::Value BuildGpt2(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "buildGpt2(spec)");
  auto* worker = new Gpt2BuildWorker(env, read_gpt2_spec(env, info[0].As<Napi::Object>()));
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

// ---------------------------------------------------------------------------------------------
// Module-level functions

class BuildWorker : public PromiseWorker {
 public:
  BuildWorker(Napi::Env env, hdlm::BuildSpec spec) : PromiseWorker(env), spec_(std::move(spec)) {}

 protected:
  void Run() override { model_ = hdlm::build_model(spec_); }
  Napi::Value Result(Napi::Env env) override { return ModelWrap::New(env, std::move(model_)); }

 private:
  hdlm::BuildSpec spec_;
  std::shared_ptr<hdlm::Model> model_;
};

class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, std::string path, std::string device, hdlm::Precision precision)
      : PromiseWorker(env), path_(std::move(path)), device_(std::move(device)), precision_(precision) {}

 protected:
  void Run() override { model_ = hdlm::load_torchscript(path_, device_, precision_); }
  Napi::Value Result(Napi::Env env) override { return ModelWrap::New(env, std::move(model_)); }

 private:
  std::string path_, device_;
  hdlm::Precision precision_;
  std::shared_ptr<hdlm::Model> model_;
};

Napi::Value BuildModel(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "buildModel(spec)");
  auto o = info[0].As<Napi::Object>();
  hdlm::BuildSpec spec;
  spec.weights_path = get_string(o, "weightsPath");
  spec.file_size = static_cast<uint64_t>(get_int(o, "fileSize"));
  spec.config_json = get_string(o, "configJson");
  spec.device = get_string(o, "device");
  spec.precision = to_precision(env, get_string(o, "precision"));
  auto cache = get(o, "cachePath");
  if (cache.IsString()) spec.cache_path = cache.As<Napi::String>().Utf8Value();
  auto arch = get(o, "arch");
  if (!arch.IsObject()) throw_type(env, "an arch object");
  auto a = arch.As<Napi::Object>();
  spec.arch.family = get_string(a, "family");
  spec.arch.vocab_size = get_int(a, "vocabSize");
  spec.arch.hidden_size = get_int(a, "hiddenSize");
  spec.arch.n_heads = get_int(a, "nHeads");
  spec.arch.n_blocks = get_int(a, "nBlocks");
  auto tensors = get(o, "tensors");
  if (!tensors.IsArray()) throw_type(env, "an array of tensors");
  auto list = tensors.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) {
    auto item = list.Get(i);
    if (!item.IsObject()) throw_type(env, "tensor entries as objects");
    auto t = item.As<Napi::Object>();
    hdlm::TensorEntry e;
    e.name = get_string(t, "name");
    e.dtype = get_string(t, "dtype");
    e.begin = static_cast<uint64_t>(get_int(t, "begin"));
    e.end = static_cast<uint64_t>(get_int(t, "end"));
    auto shape = get(t, "shape");
    if (!shape.IsArray()) throw_type(env, "a shape array");
    auto dims = shape.As<Napi::Array>();
    for (uint32_t j = 0; j < dims.Length(); ++j) {
      auto dim = dims.Get(j);
      if (!dim.IsNumber()) throw_type(env, "numeric dimensions");
      e.shape.push_back(dim.As<Napi::Number>().Int64Value());
    }
    spec.tensors.push_back(std::move(e));
  }
  auto* worker = new BuildWorker(env, std::move(spec));
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value LoadTorchScript(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString()) {
    throw_type(env, "loadTorchScript(path, device, precision)");
  }
  auto* worker = new LoadWorker(env, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(),
                                to_precision(env, info[2].As<Napi::String>().Utf8Value()));
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto ri = hdlm::runtime_info();
  auto out = Napi::Object::New(env);
  out.Set("libtorchVersion", ri.libtorch_version);
  out.Set("cudaCompiled", Napi::Boolean::New(env, ri.cuda_compiled));
  out.Set("cudaDeviceCount", Napi::Number::New(env, static_cast<double>(ri.cuda_device_count)));
  out.Set("threads", Napi::Number::New(env, static_cast<double>(ri.threads)));
  return out;
}

Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean()) throw_type(env, "cudaMemory(deviceIndex, resetPeak)");
  hdlm::CudaMemory m;
  try {
    m = hdlm::cuda_memory(info[0].As<Napi::Number>().Int64Value(), info[1].As<Napi::Boolean>().Value());
  } catch (const EngineError& e) {
    throw make_error(env, e.code, e.what());
  }
  auto out = Napi::Object::New(env);
  out.Set("allocated", Napi::Number::New(env, static_cast<double>(m.allocated)));
  out.Set("peakAllocated", Napi::Number::New(env, static_cast<double>(m.peak_allocated)));
  out.Set("reserved", Napi::Number::New(env, static_cast<double>(m.reserved)));
  return out;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw_type(env, "setThreads(n)");
  const auto n = info[0].As<Napi::Number>().Int64Value();
  if (n < 1 || n > 4096) throw_type(env, "a thread count in [1, 4096]");
  try {
    hdlm::set_threads(n);
  } catch (const EngineError& e) {
    throw make_error(env, e.code, e.what());
  }
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->model_constructor = Napi::Persistent(ModelWrap::Define(env));
  env.SetInstanceData(data);
  exports.Set("buildModel", Napi::Function::New(env, BuildModel));
  exports.Set("loadTorchScript", Napi::Function::New(env, LoadTorchScript));
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("cudaMemory", Napi::Function::New(env, CudaMemory));
  exports.Set("buildGpt2", Napi::Function::New(env, BuildGpt2));  // evaluation (issue 8)
  return exports;
}

}  // namespace

NODE_API_MODULE(hdlm, Init)
