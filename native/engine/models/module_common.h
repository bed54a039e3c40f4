// What the model builders (epsilon.cc, gamma.cc) share: weights taken by upstream state-dict
// name with a shape check, and the attributes every hdlm TorchScript module carries (the ones
// jit/shared.py reads among them).
#pragma once

#include <torch/script.h>

#include <cmath>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/types.h"

namespace hdlm {

using WeightMap = std::unordered_map<std::string, at::Tensor>;

inline at::Tensor take_weight(WeightMap& weights, const std::string& name, const std::vector<int64_t>& shape) {
  auto it = weights.find(name);
  if (it == weights.end()) throw EngineError("HDLM_BAD_FILE", "checkpoint is missing tensor '" + name + "'");
  auto t = it->second.contiguous();
  if (t.sizes().vec() != shape) {
    throw EngineError("HDLM_BAD_FILE", "tensor '" + name + "' has shape " + c10::str(t.sizes()) + ", expected " +
                                           c10::str(at::IntArrayRef(shape)));
  }
  return t;
}

// The interface attributes (README, "TorchScript interface"), the sizes the TorchScript source
// reads, and the precision switch with its dtype constants (which do not resolve in TorchScript
// source without Python, hence ints).
inline void register_common_attributes(torch::jit::Module& m, const std::string& family, int64_t format,
                                       const std::string& config_json, int64_t D, int64_t H, int64_t NB) {
  const int64_t d = D / H;
  m.register_attribute("hdlm_format", c10::IntType::get(), format);
  m.register_attribute("hdlm_family", c10::StringType::get(), family);
  m.register_attribute("hdlm_config", c10::StringType::get(), config_json);
  m.register_attribute("hidden_size", c10::IntType::get(), D);
  m.register_attribute("n_heads", c10::IntType::get(), H);
  m.register_attribute("head_dim", c10::IntType::get(), d);
  m.register_attribute("n_blocks", c10::IntType::get(), NB);
  m.register_attribute("sqrt_head_dim", c10::FloatType::get(), std::sqrt(static_cast<double>(d)));
  m.register_attribute("precision", c10::IntType::get(), static_cast<int64_t>(0));
  m.register_attribute("dtype_bf16", c10::IntType::get(), static_cast<int64_t>(at::kBFloat16));
  m.register_attribute("dtype_f16", c10::IntType::get(), static_cast<int64_t>(at::kHalf));
}

// rotary_emb.inv_freq from the checkpoint, or upstream's construction-time formula in fp32
// (hdlm/model/rotary.py: Rotary.__init__) when it is absent.
inline at::Tensor rotary_inv_freq(WeightMap& weights, int64_t head_dim, const at::Device& device) {
  if (weights.count("rotary_emb.inv_freq")) return take_weight(weights, "rotary_emb.inv_freq", {head_dim / 2});
  auto k2 = at::arange(0, head_dim, 2, at::kFloat) / static_cast<float>(head_dim);
  return (1.0 / at::pow(10000.0, k2)).to(device);
}

// The per-block weights both families have, as List[Tensor] attributes.
inline void register_block_weights(torch::jit::Module& m, WeightMap& weights, int64_t D, int64_t NB) {
  const std::vector<std::pair<std::string, std::vector<int64_t>>> per_block = {
      {"norm1.weight", {D}},        {"attn_qkv.weight", {3 * D, D}},
      {"attn_out.weight", {D, D}},  {"norm2.weight", {D}},
      {"mlp.0.weight", {4 * D, D}}, {"mlp.0.bias", {4 * D}},
      {"mlp.2.weight", {D, 4 * D}}, {"mlp.2.bias", {D}}};
  const char* attr_names[] = {"norm1", "attn_qkv", "attn_out", "norm2", "mlp0_w", "mlp0_b", "mlp2_w", "mlp2_b"};
  for (size_t j = 0; j < per_block.size(); ++j) {
    c10::List<at::Tensor> list;
    for (int64_t i = 0; i < NB; ++i) {
      list.push_back(
          take_weight(weights, "blocks." + std::to_string(i) + "." + per_block[j].first, per_block[j].second));
    }
    m.register_attribute(attr_names[j], c10::ListType::ofTensors(), list);
  }
}

// The output layer (DDitFinalLayer): final norm and the head.
inline void register_output_layer(torch::jit::Module& m, WeightMap& weights, int64_t V, int64_t D) {
  m.register_attribute("norm_final", c10::TensorType::get(),
                       take_weight(weights, "output_layer.norm_final.weight", {D}));
  m.register_attribute("out_w", c10::TensorType::get(), take_weight(weights, "output_layer.linear.weight", {V, D}));
  m.register_attribute("out_b", c10::TensorType::get(), take_weight(weights, "output_layer.linear.bias", {V}));
}

}  // namespace hdlm
