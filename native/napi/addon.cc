// N-API glue only: unpacks arguments into engine.h structs, runs model work on the addon's own
// threads (a small pool; results and progress come back through one thread-safe function) and
// maps engine errors to JS errors with a `code`. No libtorch headers here (they cost ~20 s per TU).
// Arguments are validated in TypeScript (lib/validate.ts); the checks here only keep a direct
// caller from crashing the process.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

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

// ---------------------------------------------------------------------------------------------
// Model work runs on threads the addon owns, not on libuv's shared pool (4 threads by default,
// also used by fs, dns and zlib): long samples must not starve file reads. Results and progress
// events come back to the main thread through one thread-safe function per environment, in the
// order the worker posted them (so every onStep of a call is delivered before its promise
// settles). At exit the pool stops: running samples are aborted at their next step, queued work
// is dropped, and the threads are joined before libtorch's static destructors run.

// Something posted from a pool thread to the main thread.
class Message {
 public:
  virtual ~Message() = default;
  // Main thread. Must not throw.
  virtual void Deliver(Napi::Env env) = 0;
};

// A unit of model work: Execute() on a pool thread, then Deliver() on the main thread.
class Task : public Message {
 public:
  virtual void Execute() = 0;
  // Any thread: ask a running Execute() to stop soon (the process is exiting).
  virtual void Cancel() {}
};

class Pool;
std::mutex g_pools_mutex;
std::set<Pool*>* g_pools = nullptr;  // never freed: read from the atexit handler
bool g_atexit_registered = false;
void shutdown_all_pools();

class Pool {
 public:
  Pool(Napi::Env env, size_t threads) : env_(env), size_(threads) {
    napi_value name;
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_string_utf8(env, "hdlm.pool", NAPI_AUTO_LENGTH, &name));
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, nullptr,
                                                                   this, &Pool::CallJs, &done_));
    // Idle, the pool must not keep the process alive; Submit() refs it while work is out.
    napi_unref_threadsafe_function(env, done_);
    // Registered after the thread-safe function: cleanup hooks run last-in first-out, so the
    // threads are joined before Node tears the thread-safe function down.
    napi_add_env_cleanup_hook(env, &Pool::OnEnvCleanup, this);
    std::lock_guard<std::mutex> lock(g_pools_mutex);
    if (!g_pools) g_pools = new std::set<Pool*>();
    g_pools->insert(this);
    if (!g_atexit_registered) {
      // process.exit() does not run environment cleanup hooks; exit() runs this before the
      // static destructors of libtorch (loaded before this addon registered it).
      std::atexit(shutdown_all_pools);
      g_atexit_registered = true;
    }
  }

  // Main thread. Takes ownership of the task.
  void Submit(Task* task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        delete task;
        return;
      }
      if (threads_.empty()) {
        for (size_t i = 0; i < size_; ++i) threads_.emplace_back([this] { Loop(); });
      }
      queue_.push_back(task);
    }
    if (outstanding_++ == 0) napi_ref_threadsafe_function(env_, done_);
    cv_.notify_one();
  }

  // Pool thread: sends a message to the main thread; it is dropped if the environment is gone.
  void Post(Message* message) {
    if (napi_call_threadsafe_function(done_, message, napi_tsfn_nonblocking) != napi_ok) delete message;
  }

  // Stops and joins the threads; idempotent. From the env cleanup hook or the atexit handler.
  void Shutdown() {
    std::vector<std::thread> threads;
    std::deque<Task*> dropped;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      for (auto* t : running_) t->Cancel();
      threads.swap(threads_);
      dropped.swap(queue_);
    }
    cv_.notify_all();
    for (auto& t : threads) t.join();
    // Never started; their promises are abandoned with the environment. Deleting them here
    // only drops C++ state (tasks hold no JS handles that need the main thread).
    for (auto* t : dropped) delete t;
  }

  size_t size() const { return size_; }

  ~Pool() {
    Shutdown();
    napi_remove_env_cleanup_hook(env_, &Pool::OnEnvCleanup, this);
    std::lock_guard<std::mutex> lock(g_pools_mutex);
    if (g_pools) g_pools->erase(this);
  }

 private:
  void Loop() {
    for (;;) {
      Task* task = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        task = queue_.front();
        queue_.pop_front();
        running_.insert(task);
      }
      task->Execute();  // catches everything itself
      {
        std::lock_guard<std::mutex> lock(mu_);
        running_.erase(task);
      }
      Post(task);
    }
  }

  static void CallJs(napi_env env, napi_value, void* context, void* data) {
    std::unique_ptr<Message> message(static_cast<Message*>(data));
    if (env == nullptr) return;  // the environment is being torn down
    auto* pool = static_cast<Pool*>(context);
    if (dynamic_cast<Task*>(message.get()) && --pool->outstanding_ == 0) napi_unref_threadsafe_function(env, pool->done_);
    message->Deliver(Napi::Env(env));
  }

  static void OnEnvCleanup(void* arg) {
    auto* pool = static_cast<Pool*>(arg);
    pool->Shutdown();
    // The Pool object itself is freed with the addon's instance data (after this hook).
  }

  napi_env env_;
  size_t size_;
  napi_threadsafe_function done_ = nullptr;
  size_t outstanding_ = 0;  // main thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task*> queue_;
  std::set<Task*> running_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};

void shutdown_all_pools() {
  std::vector<Pool*> pools;
  {
    std::lock_guard<std::mutex> lock(g_pools_mutex);
    if (g_pools) pools.assign(g_pools->begin(), g_pools->end());
  }
  for (auto* p : pools) p->Shutdown();
}

size_t pool_size_from_env() {
  const char* s = std::getenv("HDLM_WORKER_THREADS");
  if (s && *s) {
    char* end = nullptr;
    const long n = std::strtol(s, &end, 10);
    if (end && *end == '\0' && n >= 1 && n <= 64) return static_cast<size_t>(n);
  }
  return 2;
}

// Settles a promise. napi_deferred needs no cleanup when abandoned at exit.
void settle(Napi::Env env, napi_deferred deferred, bool ok, napi_value value) {
  if (ok) napi_resolve_deferred(env, deferred, value);
  else napi_reject_deferred(env, deferred, value);
}

// A task whose result settles a promise.
class PromiseTask : public Task {
 public:
  explicit PromiseTask(Napi::Env env) {
    napi_value promise;
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_promise(env, &deferred_, &promise));
    promise_ = promise;
  }
  napi_value Promise() const { return promise_; }

  void Execute() override {
    try {
      Run();
    } catch (const EngineError& e) {
      failed_ = true;
      code_ = e.code;
      message_ = e.what();
    } catch (const std::exception& e) {
      failed_ = true;
      message_ = e.what();
    } catch (...) {
      failed_ = true;
      message_ = "unknown native error";
    }
  }

  void Deliver(Napi::Env env) override {
    Napi::HandleScope scope(env);
    try {
      if (failed_) {
        auto err = make_error(env, code_, message_);
        Decorate(env, err);
        settle(env, deferred_, false, err.Value());
      } else {
        settle(env, deferred_, true, Result(env));
      }
    } catch (const Napi::Error& e) {
      settle(env, deferred_, false, e.Value());
    }
  }

 protected:
  virtual void Run() = 0;
  virtual napi_value Result(Napi::Env env) = 0;
  // Adds properties to the rejection error.
  virtual void Decorate(Napi::Env env, Napi::Error& err) {}

  napi_deferred deferred_ = nullptr;
  napi_value promise_ = nullptr;  // valid only in the call that created the task
  bool failed_ = false;
  std::string code_ = "HDLM_NATIVE", message_;
};

// ---------------------------------------------------------------------------------------------
// Model objects

struct AddonData {
  Napi::FunctionReference model_constructor;
  std::unique_ptr<Pool> pool;
  std::shared_ptr<hdlm::Model> constructing;  // handed from ModelWrap::New to the constructor
};

Pool& pool_of(Napi::Env env) { return *env.GetInstanceData<AddonData>()->pool; }

// What the jobs of one model share with it: dispose() sets `disposed` and aborts running samples.
struct ModelState {
  std::atomic<bool> disposed{false};
};

// The sampling call a pool thread runs: one of the engine's samplers, bound to its options.
using SampleCall = std::function<std::vector<int32_t>(hdlm::Model&, const std::atomic<bool>&, const hdlm::StepCallback&)>;

// The abort flag of one sample call; aborted by its AbortSignal, by dispose(), or at exit.
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

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("forward", &ModelWrap::Forward),
                        InstanceMethod("sample", &ModelWrap::Sample),
                        InstanceMethod("sampleGamma", &ModelWrap::SampleGamma), InstanceMethod("dispose", &ModelWrap::Dispose),
                        InstanceMethod("isDisposed", &ModelWrap::IsDisposed),
                        InstanceMethod("pendingCalls", &ModelWrap::PendingCalls),
                        InstanceMethod("evaluate", &ModelWrap::Evaluate)});
  }

  // Wraps an engine model in a new JS object (main thread only).
  static Napi::Object New(Napi::Env env, std::shared_ptr<hdlm::Model> model);

  // Takes the model ModelWrap::New left in the addon data: no napi_external (whose finalizer
  // record lingers until a GC that may never come; valgrind showed it lost at exit).
  explicit ModelWrap(const Napi::CallbackInfo& info);

  // Main thread: a call of this model finished (its promise settles now).
  void CallDone() { --pending_; }

 private:
  std::shared_ptr<hdlm::Model> live(Napi::Env env) {
    if (!model_) throw make_error(env, "HDLM_DISPOSED", "the model has been disposed");
    return model_;
  }

  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Sample(const Napi::CallbackInfo& info);
  Napi::Value SampleGamma(const Napi::CallbackInfo& info);
  Napi::Value StartSample(const Napi::CallbackInfo& info, std::shared_ptr<hdlm::Model> model, SampleCall call);
  // A new abort flag, remembered so that dispose() can abort the call.
  std::shared_ptr<AbortFlag> TrackAbort();
  // Queues an abortable task on the pool; returns { promise, abort }.
  Napi::Value SubmitAbortable(Napi::Env env, PromiseTask* task, const std::shared_ptr<AbortFlag>& abort);
  Napi::Value Evaluate(const Napi::CallbackInfo& info);  // evaluation (issue 8), below
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
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
  Napi::Value IsDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !model_); }
  Napi::Value PendingCalls(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(pending_));
  }

  std::shared_ptr<hdlm::Model> model_;
  std::shared_ptr<ModelState> state_ = std::make_shared<ModelState>();
  std::vector<std::weak_ptr<AbortFlag>> aborts_;  // main thread only
  int64_t pending_ = 0;                            // main thread only
};

Napi::Object ModelWrap::New(Napi::Env env, std::shared_ptr<hdlm::Model> model) {
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

// A call on a model: keeps the JS model object alive (a napi_ref, released on the main thread
// in Deliver) and fails with HDLM_DISPOSED if dispose() came before it started.
class ModelTask : public PromiseTask {
 public:
  ModelTask(Napi::Env env, ModelWrap* wrap, std::shared_ptr<hdlm::Model> model, std::shared_ptr<ModelState> state)
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
  std::shared_ptr<hdlm::Model> model_;
  std::shared_ptr<ModelState> state_;
};

class ForwardTask : public ModelTask {
 public:
  ForwardTask(Napi::Env env, ModelWrap* wrap, std::shared_ptr<hdlm::Model> model, std::shared_ptr<ModelState> state,
              std::vector<int32_t> tokens, int64_t batch, int64_t length, std::vector<int32_t> positions,
              std::vector<float> sigma, bool fast)
      : ModelTask(env, wrap, std::move(model), std::move(state)), tokens_(std::move(tokens)),
        positions_(std::move(positions)), sigma_(std::move(sigma)), batch_(batch), length_(length), fast_(fast) {}

 protected:
  void Run() override {
    check_live();
    logits_ = model_->forward(tokens_, batch_, length_, positions_, sigma_, fast_);
  }
  napi_value Result(Napi::Env env) override {
    auto data = Napi::Float32Array::New(env, logits_.data.size());
    if (!logits_.data.empty()) std::memcpy(data.Data(), logits_.data.data(), logits_.data.size() * sizeof(float));
    logits_.data = std::vector<float>();
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
  std::vector<int32_t> tokens_, positions_;
  std::vector<float> sigma_;
  int64_t batch_, length_;
  bool fast_;
  hdlm::Logits logits_;
};

Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  if (info.Length() < 4 || !info[1].IsNumber() || !info[2].IsNumber()) {
    throw_type(env, "forward(tokens: Int32Array, batch: number, length: number, positions: Int32Array | null, sigma?: Float32Array | null)");
  }
  auto tokens = to_int32_vector(env, info[0], "tokens");
  const auto batch = info[1].As<Napi::Number>().Int64Value();
  const auto length = info[2].As<Napi::Number>().Int64Value();
  std::vector<int32_t> positions;
  if (!info[3].IsNull() && !info[3].IsUndefined()) positions = to_int32_vector(env, info[3], "positions");
  const bool fast = info.Length() > 5 && info[5].ToBoolean();
  std::vector<float> sigma;
  if (info.Length() > 4 && !info[4].IsNull() && !info[4].IsUndefined()) {
    if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw_type(env, "sigma as a Float32Array");
    }
    auto arr = info[4].As<Napi::Float32Array>();
    sigma.assign(arr.Data(), arr.Data() + arr.ElementLength());
  }
  if (batch < 1 || length < 1 || static_cast<int64_t>(tokens.size()) != batch * length ||
      (!positions.empty() && positions.size() != tokens.size()) || (!sigma.empty() && sigma.size() != tokens.size()) ||
      (fast && (!positions.empty() || !sigma.empty()))) {
    throw_type(env, "tokens (and positions, sigma) of batch × length elements; neither positions nor sigma in fast mode");
  }
  auto* task = new ForwardTask(env, this, std::move(model), state_, std::move(tokens), batch, length, std::move(positions),
                               std::move(sigma), fast);
  napi_value promise = task->Promise();
  ++pending_;
  pool_of(env).Submit(task);
  return Napi::Value(env, promise);
}

// ---------------------------------------------------------------------------------------------
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
      Napi::Function(env, fn).Call({Napi::Number::New(env, static_cast<double>(step_)),
                                    Napi::Number::New(env, static_cast<double>(total_)),
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
  SampleTask(Napi::Env env, ModelWrap* wrap, std::shared_ptr<hdlm::Model> model, std::shared_ptr<ModelState> state,
             SampleCall call, std::shared_ptr<AbortFlag> abort, std::shared_ptr<ProgressTarget> progress)
      : ModelTask(env, wrap, std::move(model), std::move(state)), pool_(&pool_of(env)), call_(std::move(call)),
        abort_(std::move(abort)), progress_(std::move(progress)) {}

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
    hdlm::StepCallback cb = [this](int64_t step, int64_t total, std::vector<int32_t>&& tokens) {
      abort_->steps_done.store(step);
      if (progress_) pool_->Post(new StepMessage(progress_, step, total, std::move(tokens)));
    };
    try {
      result_ = call_(*model_, abort_->requested, cb);
    } catch (const EngineError& e) {
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
    err.Set("stepsDone", Napi::Number::New(env, static_cast<double>(abort_->steps_done.load())));
    const auto at = abort_->steps_at_abort.load();
    if (at >= 0) err.Set("stepsAtAbort", Napi::Number::New(env, static_cast<double>(at)));
  }

 private:
  Pool* pool_;
  SampleCall call_;
  std::shared_ptr<AbortFlag> abort_;
  std::shared_ptr<ProgressTarget> progress_;
  std::vector<int32_t> result_;
};

hdlm::MetaScheduleSpec read_schedule(Napi::Env env, const Napi::Object& o) {
  hdlm::MetaScheduleSpec spec;
  const auto type = get_string(o, "type");
  if (type == "simple") spec.type = hdlm::ScheduleType::Simple;
  else if (type == "block") spec.type = hdlm::ScheduleType::Block;
  else if (type == "hybrid") spec.type = hdlm::ScheduleType::Hybrid;
  else throw_type(env, "a metaschedule type 'simple', 'block' or 'hybrid'");
  spec.width = get_int(o, "width");
  spec.tau = get_int(o, "tau");
  spec.length = get_int(o, "length");
  if (spec.width < 1 || spec.tau < 1 || (spec.type == hdlm::ScheduleType::Hybrid && spec.length < 1)) {
    throw_type(env, "a metaschedule with positive width, tau and length");
  }
  return spec;
}

hdlm::ContextAttention read_context(Napi::Env env, const std::string& s) {
  if (s == "full") return hdlm::ContextAttention::Full;
  if (s == "causal") return hdlm::ContextAttention::Causal;
  if (s == "block_causal") return hdlm::ContextAttention::BlockCausal;
  throw_type(env, "contextAttention 'full', 'causal' or 'block_causal'");
  return hdlm::ContextAttention::Full;
}

hdlm::BlockAttention read_block(Napi::Env env, const std::string& s) {
  if (s == "full") return hdlm::BlockAttention::Full;
  if (s == "causal") return hdlm::BlockAttention::Causal;
  throw_type(env, "blockAttention 'full' or 'causal'");
  return hdlm::BlockAttention::Full;
}

hdlm::SampleOptions read_sample_options(Napi::Env env, const Napi::Object& o) {
  hdlm::SampleOptions s;
  const auto mode = get_string(o, "mode");
  if (mode != "full" && mode != "semi" && mode != "full_shifted" && mode != "semi_shifted") {
    throw_type(env, "mode 'full', 'semi', 'full_shifted' or 'semi_shifted'");
  }
  s.semi = mode == "semi" || mode == "semi_shifted";
  s.shifted = mode == "full_shifted" || mode == "semi_shifted";
  if (s.shifted) {
    s.repetition_penalty = get_number(o, "repetitionPenalty");
    s.bos_id = get_int(o, "bosId");
  }
  if (mode == "semi_shifted") {
    auto ms = get(o, "metaschedule");
    if (!ms.IsObject()) throw_type(env, "a metaschedule object");
    s.schedule = read_schedule(env, ms.As<Napi::Object>());
    s.context_attention = read_context(env, get_string(o, "contextAttention"));
    s.block_attention = read_block(env, get_string(o, "blockAttention"));
  }
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
      (s.cfg_scale > 0 && s.prompt_length == 0 && !s.shifted) || s.bos_id < 0) {
    throw_type(env, "consistent sampling options (sizes, prompt shape)");
  }
  return s;
}

// Starts `call` on a pool thread; returns { promise, abort }. info[1] is the optional onStep.
Napi::Value ModelWrap::StartSample(const Napi::CallbackInfo& info, std::shared_ptr<hdlm::Model> model, SampleCall call) {
  auto env = info.Env();
  std::shared_ptr<ProgressTarget> progress;
  if (info.Length() > 1 && info[1].IsFunction()) {
    progress = std::make_shared<ProgressTarget>();
    NAPI_THROW_IF_FAILED(env, napi_create_reference(env, info[1], 1, &progress->callback), Napi::Value());
  }
  auto abort = TrackAbort();
  return SubmitAbortable(env, new SampleTask(env, this, std::move(model), state_, std::move(call), abort, progress), abort);
}

std::shared_ptr<AbortFlag> ModelWrap::TrackAbort() {
  // Forget the flags of finished calls, then remember this one for dispose().
  aborts_.erase(std::remove_if(aborts_.begin(), aborts_.end(), [](const std::weak_ptr<AbortFlag>& w) { return w.expired(); }),
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

Napi::Value ModelWrap::Sample(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "sample(options, onStep)");
  auto options = read_sample_options(env, info[0].As<Napi::Object>());
  return StartSample(info, std::move(model), [options](hdlm::Model& m, const std::atomic<bool>& abort, const hdlm::StepCallback& cb) {
    return m.sample(options, abort, cb);
  });
}

Napi::Value ModelWrap::SampleGamma(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = live(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "sampleGamma(options, onStep)");
  auto o = info[0].As<Napi::Object>();
  hdlm::GammaSampleOptions g;
  const auto mode = get_string(o, "mode");
  if (mode != "nar" && mode != "sar") throw_type(env, "mode 'nar' or 'sar'");
  g.sar = mode == "sar";
  auto ms = get(o, "metaschedule");
  if (!ms.IsObject()) throw_type(env, "a metaschedule object");
  g.schedule = read_schedule(env, ms.As<Napi::Object>());
  g.context_attention = read_context(env, get_string(o, "contextAttention"));
  g.block_attention = read_block(env, get_string(o, "blockAttention"));
  const auto graph = get_string(o, "graph");
  if (graph == "QGamma") g.graph = hdlm::GammaGraph::QGamma;
  else if (graph == "absorb") g.graph = hdlm::GammaGraph::Absorb;
  else throw_type(env, "graph 'QGamma' or 'absorb'");
  g.gamma = get_number(o, "gamma");
  g.vocab_size = get_int(o, "vocabSize");
  g.batch_size = get_int(o, "batchSize");
  g.context_length = get_int(o, "contextLength");
  g.eps = get_number(o, "eps");
  auto seed = get(o, "seed");
  if (!seed.IsBigInt()) throw_type(env, "a bigint seed");
  bool lossless = false;
  g.seed = seed.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw_type(env, "a seed in [0, 2^64)");
  g.step_tokens = get(o, "stepTokens").ToBoolean();
  if (g.batch_size < 1 || g.context_length < 1 || g.vocab_size < 2 || !(g.eps > 0 && g.eps < 0.05)) {
    throw_type(env, "consistent gamma sampling options");
  }
  return StartSample(info, std::move(model), [g](hdlm::Model& m, const std::atomic<bool>& abort, const hdlm::StepCallback& cb) {
    return m.sample_gamma(g, abort, cb);
  });
}

// ---------------------------------------------------------------------------------------------
// Evaluation (issue 8): model.evaluate(request) → { promise, abort }, and buildGpt2(spec).

class EvalTask : public ModelTask {
 public:
  EvalTask(Napi::Env env, ModelWrap* wrap, std::shared_ptr<hdlm::Model> model, std::shared_ptr<ModelState> state,
           hdlm::EvalRequest request, std::shared_ptr<AbortFlag> abort)
      : ModelTask(env, wrap, std::move(model), std::move(state)), request_(std::move(request)), abort_(std::move(abort)) {}

  void Cancel() override { abort_->abort(); }

 protected:
  void Run() override {
    check_live();
    result_ = model_->evaluate(request_, abort_->requested);
  }
  napi_value Result(Napi::Env env) override {
    auto values = Napi::Float64Array::New(env, result_.values.size());
    if (!result_.values.empty()) std::memcpy(values.Data(), result_.values.data(), result_.values.size() * sizeof(double));
    auto out = Napi::Object::New(env);
    out.Set("values", values);
    out.Set("rows", Napi::Number::New(env, static_cast<double>(result_.rows)));
    out.Set("cols", Napi::Number::New(env, static_cast<double>(result_.cols)));
    return out;
  }

 private:
  hdlm::EvalRequest request_;
  std::shared_ptr<AbortFlag> abort_;
  hdlm::EvalResult result_;
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
  auto abort = TrackAbort();  // dispose() aborts running evaluations too
  return SubmitAbortable(env, new EvalTask(env, this, std::move(model), state_, std::move(r), abort), abort);
}

// Builds a model from a spec with one of the engine's builders (build_model, build_gpt2).
class BuildTask : public PromiseTask {
 public:
  using Builder = std::shared_ptr<hdlm::Model> (*)(const hdlm::BuildSpec&);
  BuildTask(Napi::Env env, hdlm::BuildSpec spec, Builder build)
      : PromiseTask(env), spec_(std::move(spec)), build_(build) {}

 protected:
  void Run() override { model_ = build_(spec_); }
  napi_value Result(Napi::Env env) override { return ModelWrap::New(env, std::move(model_)); }

 private:
  hdlm::BuildSpec spec_;
  Builder build_;
  std::shared_ptr<hdlm::Model> model_;
};

// The safetensors entries lib/checkpoint.ts located: [{ name, dtype, shape, begin, end }].
std::vector<hdlm::TensorEntry> read_tensor_entries(Napi::Env env, const Napi::Object& o) {
  std::vector<hdlm::TensorEntry> out;
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
    const auto begin = get_int(t, "begin"), end = get_int(t, "end");
    if (begin < 0 || end < 0) throw_type(env, "non-negative tensor offsets");
    e.begin = static_cast<uint64_t>(begin);
    e.end = static_cast<uint64_t>(end);
    auto shape = get(t, "shape");
    if (!shape.IsArray()) throw_type(env, "a shape array");
    auto dims = shape.As<Napi::Array>();
    for (uint32_t j = 0; j < dims.Length(); ++j) {
      auto dim = dims.Get(j);
      if (!dim.IsNumber()) throw_type(env, "numeric dimensions");
      e.shape.push_back(dim.As<Napi::Number>().Int64Value());
    }
    out.push_back(std::move(e));
  }
  return out;
}

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
  spec.tensors = read_tensor_entries(env, o);
  return spec;
}

Napi::Value BuildGpt2(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "buildGpt2(spec)");
  auto* task = new BuildTask(env, read_gpt2_spec(env, info[0].As<Napi::Object>()), hdlm::build_gpt2);
  napi_value promise = task->Promise();
  pool_of(env).Submit(task);
  return Napi::Value(env, promise);
}

// ---------------------------------------------------------------------------------------------
// Module-level functions

Napi::Uint8Array to_uint8_array(Napi::Env env, const std::vector<uint8_t>& v) {
  auto a = Napi::Uint8Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size());
  return a;
}

// metascheduleQuery(spec, query): query.kind 'info' {n} → {worthless, width, maxStep};
// 'step' {k, n} → {levels: Int32Array, numSettled, relevantLength};
// 'plan' {k, n, eps, contextAttention, blockAttention, autoregressive} → {t, den, act, settled, mask}.
Napi::Value MetascheduleQuery(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) throw_type(env, "metascheduleQuery(spec, query)");
  auto spec = read_schedule(env, info[0].As<Napi::Object>());
  auto q = info[1].As<Napi::Object>();
  const auto kind = get_string(q, "kind");
  try {
    hdlm::MetaSchedule ms(spec);
    auto out = Napi::Object::New(env);
    if (kind == "info") {
      out.Set("worthless", Napi::Number::New(env, static_cast<double>(ms.worthless())));
      out.Set("width", Napi::Number::New(env, static_cast<double>(ms.width())));
      out.Set("maxStep", Napi::Number::New(env, static_cast<double>(ms.max_step(get_int(q, "n")))));
      return out;
    }
    const auto k = get_int(q, "k"), n = get_int(q, "n");
    if (k < 0 || n < 0 || n > (int64_t{1} << 20)) throw_type(env, "k >= 0 and 0 <= n <= 2^20");
    if (kind == "step") {
      auto lev = ms.levels(k, n);
      std::vector<int32_t> lev32(lev.begin(), lev.end());
      out.Set("levels", to_int32_array(env, lev32));
      out.Set("numSettled", Napi::Number::New(env, static_cast<double>(ms.num_settled(k))));
      out.Set("relevantLength", Napi::Number::New(env, static_cast<double>(ms.relevant_length(k))));
      return out;
    }
    if (kind == "plan") {
      if (n > 8192) throw_type(env, "n <= 8192 for an attention-mask plan");
      const auto ctx = read_context(env, get_string(q, "contextAttention"));
      const auto blk = read_block(env, get_string(q, "blockAttention"));
      const double eps = get_number(q, "eps");
      const bool ar = get(q, "autoregressive").ToBoolean();
      if (ar && n < 1) throw_type(env, "n >= 1 for the autoregressive plan");
      auto p = ar ? hdlm::t_and_mask_ar(ms, k, n, eps, ctx, blk) : hdlm::t_and_mask(ms, k, n, eps, ctx, blk);
      auto t = Napi::Float32Array::New(env, p.t.size());
      if (!p.t.empty()) std::memcpy(t.Data(), p.t.data(), p.t.size() * sizeof(float));
      out.Set("t", t);
      out.Set("den", to_uint8_array(env, p.den));
      out.Set("act", to_uint8_array(env, p.act));
      out.Set("settled", to_uint8_array(env, p.settled));
      out.Set("mask", to_uint8_array(env, p.mask));
      return out;
    }
    throw_type(env, "query kind 'info', 'step' or 'plan'");
  } catch (const EngineError& e) {
    throw make_error(env, e.code, e.what());
  }
  return env.Undefined();
}


class LoadTask : public PromiseTask {
 public:
  LoadTask(Napi::Env env, std::string path, std::string device, hdlm::Precision precision)
      : PromiseTask(env), path_(std::move(path)), device_(std::move(device)), precision_(precision) {}

 protected:
  void Run() override { model_ = hdlm::load_torchscript(path_, device_, precision_); }
  napi_value Result(Napi::Env env) override { return ModelWrap::New(env, std::move(model_)); }

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
  const auto file_size = get_int(o, "fileSize");
  if (file_size < 0) throw_type(env, "a non-negative fileSize");
  spec.file_size = static_cast<uint64_t>(file_size);
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
  if (spec.arch.family == "gamma_hybrid") {
    spec.arch.cond_dim = get_int(a, "condDim");
    spec.arch.gamma = get_number(a, "gamma");
    spec.arch.radd = get(a, "radd").ToBoolean();
    spec.arch.sigma_conditioning = get(a, "sigmaConditioning").ToBoolean();
    spec.arch.timestep_embedding = get(a, "timestepEmbedding").ToBoolean();
    spec.arch.scale_by_sigma = get(a, "scaleBySigma").ToBoolean();
    spec.arch.post_process_ar = get(a, "postProcessAR").ToBoolean();
  }
  spec.tensors = read_tensor_entries(env, o);
  auto* task = new BuildTask(env, std::move(spec), hdlm::build_model);
  napi_value promise = task->Promise();
  pool_of(env).Submit(task);
  return Napi::Value(env, promise);
}

Napi::Value LoadTorchScript(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString()) {
    throw_type(env, "loadTorchScript(path, device, precision)");
  }
  auto* task = new LoadTask(env, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(),
                            to_precision(env, info[2].As<Napi::String>().Utf8Value()));
  napi_value promise = task->Promise();
  pool_of(env).Submit(task);
  return Napi::Value(env, promise);
}

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto ri = hdlm::runtime_info();
  auto out = Napi::Object::New(env);
  out.Set("libtorchVersion", ri.libtorch_version);
  out.Set("cudaCompiled", Napi::Boolean::New(env, ri.cuda_compiled));
  out.Set("cudaDeviceCount", Napi::Number::New(env, static_cast<double>(ri.cuda_device_count)));
  out.Set("threads", Napi::Number::New(env, static_cast<double>(ri.threads)));
  out.Set("cudaDeviceName", ri.cuda_device_name);
  out.Set("workerThreads", Napi::Number::New(env, static_cast<double>(pool_of(env).size())));
  return out;
}

Napi::Value FusedKernelStatus(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto s = hdlm::fused_kernel_status(static_cast<int64_t>(info[0].As<Napi::Number>().Int64Value()));
  auto out = Napi::Object::New(env);
  out.Set("available", Napi::Boolean::New(env, s.available));
  out.Set("reason", s.reason);
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

Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean()) throw_type(env, "cudaMemory(deviceIndex, resetPeak)");
  const auto m = hdlm::cuda_memory(info[0].As<Napi::Number>().Int64Value(), info[1].As<Napi::Boolean>().Value());
  if (m.allocated < 0) return env.Null();
  auto out = Napi::Object::New(env);
  out.Set("allocated", Napi::Number::New(env, static_cast<double>(m.allocated)));
  out.Set("peakAllocated", Napi::Number::New(env, static_cast<double>(m.peak_allocated)));
  out.Set("reserved", Napi::Number::New(env, static_cast<double>(m.reserved)));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->model_constructor = Napi::Persistent(ModelWrap::Define(env));
  data->pool = std::make_unique<Pool>(env, pool_size_from_env());
  env.SetInstanceData(data);
  exports.Set("buildModel", Napi::Function::New(env, BuildModel));
  exports.Set("loadTorchScript", Napi::Function::New(env, LoadTorchScript));
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo));
  exports.Set("fusedKernelStatus", Napi::Function::New(env, FusedKernelStatus));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("cudaMemory", Napi::Function::New(env, CudaMemory));
  exports.Set("metascheduleQuery", Napi::Function::New(env, MetascheduleQuery));
  exports.Set("buildGpt2", Napi::Function::New(env, BuildGpt2));  // evaluation (issue 8)
  return exports;
}

}  // namespace

NODE_API_MODULE(hdlm, Init)
