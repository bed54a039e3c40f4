// buildModel, loadTorchScript and buildGpt2: each builds or loads an engine model on the pool and
// settles its promise with a NativeModel (model_wrap.h).
#include <string>

#include "engine/engine.h"
#include "napi/addon.h"
#include "napi/convert.h"
#include "napi/model_wrap.h"
#include "napi/options.h"

namespace hdlm {
namespace js {
namespace {

// Makes a model with one of the engine's entry points (build_model, build_gpt2,
// load_torchscript) on a pool thread.
class MakeModelTask : public PromiseTask {
 public:
  MakeModelTask(Napi::Env env, std::function<std::shared_ptr<Model>()> make)
      : PromiseTask(env), make_(std::move(make)) {}

 protected:
  void Run() override { model_ = make_(); }
  napi_value Result(Napi::Env env) override { return ModelWrap::New(env, std::move(model_)); }

 private:
  std::function<std::shared_ptr<Model>()> make_;
  std::shared_ptr<Model> model_;
};

Napi::Value submit(Napi::Env env, std::function<std::shared_ptr<Model>()> make) {
  auto* task = new MakeModelTask(env, std::move(make));
  napi_value promise = task->Promise();
  pool_of(env).Submit(task);
  return Napi::Value(env, promise);
}

}  // namespace

Napi::Value BuildModel(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "buildModel(spec)");
  auto spec = read_build_spec(env, info[0].As<Napi::Object>());
  return submit(env, [spec = std::move(spec)] { return build_model(spec); });
}

Napi::Value LoadTorchScript(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString()) {
    throw_type(env, "loadTorchScript(path, device, precision)");
  }
  auto path = info[0].As<Napi::String>().Utf8Value();
  auto device = info[1].As<Napi::String>().Utf8Value();
  const auto precision = read_precision(env, info[2].As<Napi::String>().Utf8Value());
  return submit(env, [path = std::move(path), device = std::move(device), precision] {
    return load_torchscript(path, device, precision);
  });
}

Napi::Value BuildGpt2(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "buildGpt2(spec)");
  auto spec = read_gpt2_spec(env, info[0].As<Napi::Object>());
  return submit(env, [spec = std::move(spec)] { return build_gpt2(spec); });
}

}  // namespace js
}  // namespace hdlm
