// Readers that copy the options lib/ validated into the engine's plain structs (engine/types.h).
// No policy here: TypeScript decides defaults and checks ranges; these only reject what would
// crash the engine (HDLM_INVALID_ARGUMENT "native: expected ...").
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/types.h"

namespace hdlm {
namespace js {

Precision read_precision(Napi::Env env, const std::string& name);  // fp32, A, B, C
MetaScheduleSpec read_schedule(Napi::Env env, const Napi::Object& o);
ContextAttention read_context(Napi::Env env, const std::string& name);
BlockAttention read_block(Napi::Env env, const std::string& name);

// buildModel(spec): lib/binding.ts NativeBuildSpec.
BuildSpec read_build_spec(Napi::Env env, const Napi::Object& o);
// buildGpt2(spec): lib/binding.ts NativeGpt2Spec.
BuildSpec read_gpt2_spec(Napi::Env env, const Napi::Object& o);

// model.forward(tokens, batch, length, positions, sigma, fast).
struct ForwardRequest {
  std::vector<int32_t> tokens, positions;
  std::vector<float> sigma;
  int64_t batch = 0, length = 0;
  bool fast = false;
};
ForwardRequest read_forward_request(const Napi::CallbackInfo& info);

// model.sample(options): lib/binding.ts NativeSampleOptions.
SampleOptions read_sample_options(Napi::Env env, const Napi::Object& o);
// model.sampleGamma(options): lib/binding.ts NativeGammaSampleOptions.
GammaSampleOptions read_gamma_options(Napi::Env env, const Napi::Object& o);
// model.evaluate(request): lib/binding.ts NativeEvalRequest.
EvalRequest read_eval_request(Napi::Env env, const Napi::Object& o);

}  // namespace js
}  // namespace hdlm
