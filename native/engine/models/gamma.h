// The gamma-hybrid HDLM (upstream hdlm/model/diffusion_lm.py, class HDLM_Gamma) as a TorchScript
// module defined from C++ (its code: jit/shared.py, jit/gamma.py): sigma-conditioned transformer
// (timestep embedder, adaLN in every block, mask-interpolated embedding, scale_by_sigma). No
// Python needed.
#pragma once

#include <torch/script.h>

#include <string>
#include <unordered_map>

#include "engine/types.h"

namespace hdlm {

constexpr int64_t kGammaFormatVersion = 1;

// `weights` are float32 tensors keyed by upstream state-dict names, already on the device.
torch::jit::Module build_gamma_module(const Architecture& arch, std::unordered_map<std::string, at::Tensor>& weights,
                                      const std::string& config_json);

}  // namespace hdlm
