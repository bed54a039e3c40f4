// Builds the epsilon-hybrid module (upstream hdlm/model/diffusion_lm.py: HDLM): the checkpoint's
// weights as attributes, jit/shared.py and jit/epsilon.py as its methods.
#include "engine/models/epsilon.h"

#include "engine/models/module_common.h"
#include "hdlm_embedded_sources.h"

namespace hdlm {

torch::jit::Module build_epsilon_module(const Architecture& arch, std::unordered_map<std::string, at::Tensor>& weights,
                                        const std::string& config_json) {
  const int64_t V = arch.vocab_size, D = arch.hidden_size, H = arch.n_heads, NB = arch.n_blocks;
  if (V <= 0 || D <= 0 || H <= 0 || NB < 0 || D % H != 0 || (D / H) % 2 != 0) {
    throw EngineError("HDLM_BAD_FILE", "invalid architecture (vocab " + std::to_string(V) + ", hidden " +
                                           std::to_string(D) + ", heads " + std::to_string(H) + ")");
  }
  const int64_t d = D / H;
  auto device = weights.empty() ? at::Device(at::kCPU) : weights.begin()->second.device();

  torch::jit::Module m("__torch__.hdlm.EpsilonHDLM");
  register_common_attributes(m, "epsilon_hybrid", kEpsilonFormatVersion, config_json, D, H, NB);
  m.register_attribute("embedding", c10::TensorType::get(), take_weight(weights, "vocab_embed.embedding", {V, D}));
  m.register_attribute("inv_freq", c10::TensorType::get(), rotary_inv_freq(weights, d, device));
  register_block_weights(m, weights, D, NB);
  register_output_layer(m, weights, V, D);

  m.define(embedded::jit_shared_py);
  m.define(embedded::jit_epsilon_py);
  m.eval();
  return m;
}

}  // namespace hdlm
