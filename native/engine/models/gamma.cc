// Builds the gamma-hybrid module (upstream hdlm/model/diffusion_lm.py: HDLM_Gamma): the
// checkpoint's weights and the config's switches as attributes, jit/shared.py and jit/gamma.py
// as its methods.
#include "engine/models/gamma.h"

#include <cmath>

#include "engine/models/module_common.h"
#include "hdlm_embedded_sources.h"

namespace hdlm {

torch::jit::Module build_gamma_module(const Architecture& arch, std::unordered_map<std::string, at::Tensor>& weights,
                                      const std::string& config_json) {
  const int64_t V = arch.vocab_size, D = arch.hidden_size, H = arch.n_heads, NB = arch.n_blocks, C = arch.cond_dim;
  if (V <= 1 || D <= 0 || H <= 0 || NB < 0 || C <= 0 || D % H != 0 || (D / H) % 2 != 0) {
    throw EngineError("HDLM_BAD_FILE", "invalid gamma architecture (vocab " + std::to_string(V) + ", hidden " +
                                           std::to_string(D) + ", heads " + std::to_string(H) + ", cond " +
                                           std::to_string(C) + ")");
  }
  if (arch.sigma_conditioning && !arch.timestep_embedding) {
    // Upstream would call a missing sigma_map and fail; refuse up front.
    throw EngineError("HDLM_UNSUPPORTED",
                      "model.transformer_sigma_conditioning needs model.use_timestep_embedding (upstream has no "
                      "sigma_map otherwise)");
  }
  const int64_t d = D / H;
  auto device = weights.empty() ? at::Device(at::kCPU) : weights.begin()->second.device();

  torch::jit::Module m("__torch__.hdlm.GammaHDLM");
  register_common_attributes(m, "gamma_hybrid", kGammaFormatVersion, config_json, D, H, NB);
  m.register_attribute("radd", c10::BoolType::get(), arch.radd);
  m.register_attribute("use_sigma", c10::BoolType::get(), arch.sigma_conditioning);
  m.register_attribute("scale_sigma", c10::BoolType::get(), arch.scale_by_sigma);
  m.register_attribute("pp_ar", c10::BoolType::get(), arch.post_process_ar);
  m.register_attribute("gamma", c10::FloatType::get(), arch.gamma);
  m.register_attribute("mask_index", c10::IntType::get(), V - 1);
  m.register_attribute("log_max_period", c10::FloatType::get(), std::log(10000.0));
  // np.log(x.shape[-1] - 1): a float64 scalar, entering the bf16/fp32 subtraction as a scalar.
  m.register_attribute("log_v_minus_1", c10::FloatType::get(), std::log(static_cast<double>(V - 1)));

  m.register_attribute("embedding", c10::TensorType::get(), take_weight(weights, "vocab_embed.embedding", {V, D}));
  m.register_attribute("inv_freq", c10::TensorType::get(), rotary_inv_freq(weights, d, device));
  register_block_weights(m, weights, D, NB);
  // adaLN modulation per block; zeros (no modulation) when the config turns conditioning off
  // and the checkpoint has none.
  const std::vector<std::pair<std::string, std::vector<int64_t>>> ada = {{"adaLN_modulation.weight", {6 * D, C}},
                                                                         {"adaLN_modulation.bias", {6 * D}}};
  const char* ada_names[] = {"ada_w", "ada_b"};
  for (size_t j = 0; j < ada.size(); ++j) {
    c10::List<at::Tensor> list;
    for (int64_t i = 0; i < NB; ++i) {
      const auto name = "blocks." + std::to_string(i) + "." + ada[j].first;
      if (!arch.sigma_conditioning && !weights.count(name)) {
        list.push_back(at::zeros(ada[j].second, at::TensorOptions().device(device)));
      } else {
        list.push_back(take_weight(weights, name, ada[j].second));
      }
    }
    m.register_attribute(ada_names[j], c10::ListType::ofTensors(), list);
  }
  auto sm = [&](const std::string& name, std::vector<int64_t> shape) {
    if (!arch.timestep_embedding && !weights.count(name)) return at::zeros(shape, at::TensorOptions().device(device));
    return take_weight(weights, name, shape);
  };
  m.register_attribute("sm0_w", c10::TensorType::get(), sm("sigma_map.mlp.0.weight", {C, 256}));
  m.register_attribute("sm0_b", c10::TensorType::get(), sm("sigma_map.mlp.0.bias", {C}));
  m.register_attribute("sm2_w", c10::TensorType::get(), sm("sigma_map.mlp.2.weight", {C, C}));
  m.register_attribute("sm2_b", c10::TensorType::get(), sm("sigma_map.mlp.2.bias", {C}));
  register_output_layer(m, weights, V, D);

  m.define(embedded::jit_shared_py);
  m.define(embedded::jit_gamma_py);
  m.eval();
  return m;
}

}  // namespace hdlm
