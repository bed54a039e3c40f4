// The addon's own threads for model work. Model work runs on threads the addon owns, not on
// libuv's shared pool (4 threads by default, also used by fs, dns and zlib): long samples must
// not starve file reads. Results and progress events come back to the main thread through one
// thread-safe function per environment, in the order the worker posted them (so every onStep of
// a call is delivered before its promise settles). At exit the pool stops: running samples are
// aborted at their next step, queued work is dropped, and the threads are joined before
// libtorch's static destructors run. At process exit the wait is bounded (set_exit_wait_ms):
// work that cannot stop in time (a long forward) is left behind and the process ends at once
// with its exit status (_Exit), so exit never waits for native work longer than that.
#pragma once

#include <napi.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace hdlm {
namespace js {

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

class Pool {
 public:
  Pool(Napi::Env env, size_t threads);
  ~Pool();

  // Main thread. Takes ownership of the task.
  void Submit(Task* task);
  // Pool thread: sends a message to the main thread; it is dropped if the environment is gone.
  void Post(Message* message);
  // Stops the threads; idempotent. Running tasks are cancelled; waits for them until `deadline`,
  // then joins the threads and returns true, or returns false with the tasks still running. From
  // the env cleanup hook (no deadline) or the process exit handler.
  bool Shutdown(std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max());

  size_t size() const { return size_; }

 private:
  void Loop();
  static void CallJs(napi_env env, napi_value, void* context, void* data);
  static void OnEnvCleanup(void* arg);

  napi_env env_;
  size_t size_;
  napi_threadsafe_function done_ = nullptr;
  size_t outstanding_ = 0;  // main thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_;  // running_ became empty
  std::deque<Task*> queue_;
  std::set<Task*> running_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};

// HDLM_WORKER_THREADS (1..64), else 2.
size_t pool_size_from_env();

// How long process exit waits for running work to stop (lib/binding.ts sets it).
void set_exit_wait_ms(int64_t ms);

// A task whose result settles a promise. Engine errors reject it with their code, any other
// exception with HDLM_NATIVE.
class PromiseTask : public Task {
 public:
  explicit PromiseTask(Napi::Env env);
  napi_value Promise() const { return promise_; }

  void Execute() override;
  void Deliver(Napi::Env env) override;

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

}  // namespace js
}  // namespace hdlm
