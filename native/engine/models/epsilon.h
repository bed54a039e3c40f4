// The epsilon-hybrid HDLM (upstream hdlm/model/diffusion_lm.py, class HDLM) as a TorchScript
// module defined from C++ (its code: jit/shared.py, jit/epsilon.py): no Python needed to build,
// run or save it.
#pragma once

#include <torch/script.h>

#include <string>
#include <unordered_map>

#include "engine/types.h"

namespace hdlm {

// Version of the module layout below; stored in the module as `hdlm_format` and part of the
// cache key, so a change here never loads a stale cached module.
constexpr int64_t kEpsilonFormatVersion = 1;

// `weights` are float32 tensors keyed by upstream state-dict names, already on `device`.
torch::jit::Module build_epsilon_module(const Architecture& arch, std::unordered_map<std::string, at::Tensor>& weights,
                                        const std::string& config_json);

}  // namespace hdlm
