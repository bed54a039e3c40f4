// GPT-2 (Hugging Face layout) as a TorchScript module defined from C++ (its code: jit/gpt2.py),
// for the evaluation metrics (GPT-2 perplexity of generated samples). The Model on top of it is
// build_gpt2 in engine.h.
#pragma once

#include <torch/script.h>

#include <string>
#include <unordered_map>

#include "engine/types.h"

namespace hdlm {

constexpr int64_t kGpt2FormatVersion = 1;

// `weights` are float32 tensors keyed by HF names without the `transformer.` prefix.
torch::jit::Module build_gpt2_module(int64_t n_layer, int64_t n_head, double layer_norm_eps,
                                     std::unordered_map<std::string, at::Tensor>& weights,
                                     const std::string& config_json);

}  // namespace hdlm
