#include "napi/pool.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "engine/types.h"
#include "napi/convert.h"

namespace hdlm {
namespace js {
namespace {

std::mutex g_pools_mutex;
std::set<Pool*>* g_pools = nullptr;  // never freed: read from the atexit handler
bool g_atexit_registered = false;
std::atomic<int64_t> g_exit_wait_ms{2000};

// Returns whether every pool's threads ended before the deadline.
bool shutdown_all_pools(std::chrono::steady_clock::time_point deadline) {
  std::vector<Pool*> pools;
  {
    std::lock_guard<std::mutex> lock(g_pools_mutex);
    if (g_pools) pools.assign(g_pools->begin(), g_pools->end());
  }
  bool all = true;
  for (auto* p : pools) all = p->Shutdown(deadline) && all;
  return all;
}

#ifdef __GLIBC__
// exit(status): running work is cancelled; what has not stopped by the deadline (a forward
// cannot be interrupted) is left running and the process ends now with the same status. The
// threads must not be running when libtorch's static destructors do, so no return then.
void on_process_exit(int status, void*) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(g_exit_wait_ms.load());
  if (shutdown_all_pools(deadline)) return;
  std::fflush(nullptr);
  std::_Exit(status);
}
#else
void on_process_exit() { shutdown_all_pools(std::chrono::steady_clock::time_point::max()); }
#endif

// Settles a promise. napi_deferred needs no cleanup when abandoned at exit.
void settle(Napi::Env env, napi_deferred deferred, bool ok, napi_value value) {
  if (ok)
    napi_resolve_deferred(env, deferred, value);
  else
    napi_reject_deferred(env, deferred, value);
}

}  // namespace

Pool::Pool(Napi::Env env, size_t threads) : env_(env), size_(threads) {
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
#ifdef __GLIBC__
    on_exit(on_process_exit, nullptr);
#else
    std::atexit(on_process_exit);
#endif
    g_atexit_registered = true;
  }
}

Pool::~Pool() {
  Shutdown();
  napi_remove_env_cleanup_hook(env_, &Pool::OnEnvCleanup, this);
  std::lock_guard<std::mutex> lock(g_pools_mutex);
  if (g_pools) g_pools->erase(this);
}

void Pool::Submit(Task* task) {
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

void Pool::Post(Message* message) {
  if (napi_call_threadsafe_function(done_, message, napi_tsfn_nonblocking) != napi_ok) delete message;
}

bool Pool::Shutdown(std::chrono::steady_clock::time_point deadline) {
  std::vector<std::thread> threads;
  std::deque<Task*> dropped;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      for (auto* t : running_) t->Cancel();
      dropped.swap(queue_);
      cv_.notify_all();
    }
    const auto idle = [this] { return running_.empty(); };
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      idle_.wait(lock, idle);
    } else if (!idle_.wait_until(lock, deadline, idle)) {
      lock.unlock();
      for (auto* t : dropped) delete t;
      return false;
    }
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  // Never started; their promises are abandoned with the environment. Deleting them here
  // only drops C++ state (tasks hold no JS handles that need the main thread).
  for (auto* t : dropped) delete t;
  return true;
}

void Pool::Loop() {
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
      if (running_.empty()) idle_.notify_all();
    }
    Post(task);
  }
}

void Pool::CallJs(napi_env env, napi_value, void* context, void* data) {
  std::unique_ptr<Message> message(static_cast<Message*>(data));
  if (env == nullptr) return;  // the environment is being torn down
  auto* pool = static_cast<Pool*>(context);
  if (dynamic_cast<Task*>(message.get()) && --pool->outstanding_ == 0) napi_unref_threadsafe_function(env, pool->done_);
  try {
    message->Deliver(Napi::Env(env));
  } catch (const Napi::Error&) {
    // Only while the environment shuts down (a worker terminated with work in flight): no JS can
    // run to receive the result, and an exception must not leave this C callback.
  }
}

void Pool::OnEnvCleanup(void* arg) {
  auto* pool = static_cast<Pool*>(arg);
  pool->Shutdown();
  // The Pool object itself is freed with the addon's instance data (after this hook).
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

void set_exit_wait_ms(int64_t ms) { g_exit_wait_ms.store(ms < 0 ? 0 : ms); }

PromiseTask::PromiseTask(Napi::Env env) {
  napi_value promise;
  NAPI_THROW_IF_FAILED_VOID(env, napi_create_promise(env, &deferred_, &promise));
  promise_ = promise;
}

void PromiseTask::Execute() {
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

void PromiseTask::Deliver(Napi::Env env) {
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

}  // namespace js
}  // namespace hdlm
