#include "model_epsilon.h"

#include <cmath>

namespace hdlm {
namespace {

// TorchScript source of the model. Shapes: tokens/positions [B, L] int64 → logits [B, L, V].
// Follows hdlm-reference §2: fp32 residual stream, LayerNorm without affine terms followed by a
// separate weight product, rotary tables from positions[0] only (upstream's cache uses row 0),
// NeoX-style halves, q·kᵀ then division by sqrt(head_dim), softmax, tanh-GELU MLP.
// `attn_mask` is True where a query may NOT attend; a row with every key masked attends
// uniformly (upstream's guard turns an all -inf row into zeros).
const char* kEpsilonSource = R"JIT(
def rotate(self, x, cos, sin):
    half = self.head_dim // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return x * cos + torch.cat([-x2, x1], -1) * sin

def forward_with_mask(self, tokens, positions, attn_mask: Optional[Tensor]):
    B = tokens.size(0)
    L = tokens.size(1)
    D = self.hidden_size
    H = self.n_heads
    d = self.head_dim
    h = torch.embedding(self.embedding, tokens)
    ang = torch.outer(positions[0].float(), self.inv_freq)
    emb = torch.cat([ang, ang], -1)
    cos = emb.cos().view(1, L, 1, d)
    sin = emb.sin().view(1, L, 1, d)
    for i in range(self.n_blocks):
        a = torch.layer_norm(h, [D], None, None, 1e-5) * self.norm1[i]
        qkv = torch.matmul(a, self.attn_qkv[i].t()).view(B, L, 3, H, d)
        q = self.rotate(qkv[:, :, 0], cos, sin).transpose(1, 2)
        k = self.rotate(qkv[:, :, 1], cos, sin).transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.sqrt_head_dim
        if attn_mask is not None:
            blocked = attn_mask.view(B, 1, L, L)
            scores = scores.masked_fill(blocked, float('-inf'))
            scores = scores.masked_fill(blocked.all(-1, keepdim=True), 0.0)
        probs = torch.softmax(scores, -1)
        o = torch.matmul(probs, v).transpose(1, 2).reshape(B, L, D)
        h = h + torch.matmul(o, self.attn_out[i].t())
        m = torch.layer_norm(h, [D], None, None, 1e-5) * self.norm2[i]
        z = torch.gelu(torch.matmul(m, self.mlp0_w[i].t()) + self.mlp0_b[i], approximate='tanh')
        h = h + (torch.matmul(z, self.mlp2_w[i].t()) + self.mlp2_b[i])
    u = torch.layer_norm(h, [D], None, None, 1e-5) * self.norm_final
    return torch.matmul(u, self.out_w.t()) + self.out_b

def forward(self, tokens, positions):
    return self.forward_with_mask(tokens, positions, None)
)JIT";

at::Tensor take(std::unordered_map<std::string, at::Tensor>& weights, const std::string& name) {
  auto it = weights.find(name);
  if (it == weights.end()) throw EngineError("HDLM_BAD_FILE", "checkpoint is missing tensor '" + name + "'");
  return it->second.contiguous();
}

void expect_shape(const at::Tensor& t, const std::string& name, std::vector<int64_t> shape) {
  if (t.sizes().vec() != shape) {
    throw EngineError("HDLM_BAD_FILE", "tensor '" + name + "' has shape " + c10::str(t.sizes()) + ", expected " +
                                           c10::str(at::IntArrayRef(shape)));
  }
}

}  // namespace

torch::jit::Module build_epsilon_module(const Architecture& arch, std::unordered_map<std::string, at::Tensor>& weights,
                                        const std::string& config_json) {
  const int64_t V = arch.vocab_size, D = arch.hidden_size, H = arch.n_heads, NB = arch.n_blocks;
  if (V <= 0 || D <= 0 || H <= 0 || NB < 0 || D % H != 0 || (D / H) % 2 != 0) {
    throw EngineError("HDLM_BAD_FILE", "invalid architecture (vocab " + std::to_string(V) + ", hidden " +
                                           std::to_string(D) + ", heads " + std::to_string(H) + ")");
  }
  const int64_t d = D / H;
  auto named = [&](const std::string& name, std::vector<int64_t> shape) {
    auto t = take(weights, name);
    expect_shape(t, name, std::move(shape));
    return t;
  };
  auto device = weights.empty() ? at::Device(at::kCPU) : weights.begin()->second.device();

  torch::jit::Module m("__torch__.hdlm.EpsilonHDLM");
  m.register_attribute("hdlm_format", c10::IntType::get(), kEpsilonFormatVersion);
  m.register_attribute("hdlm_family", c10::StringType::get(), std::string("epsilon_hybrid"));
  m.register_attribute("hdlm_config", c10::StringType::get(), config_json);
  m.register_attribute("hidden_size", c10::IntType::get(), D);
  m.register_attribute("n_heads", c10::IntType::get(), H);
  m.register_attribute("head_dim", c10::IntType::get(), d);
  m.register_attribute("n_blocks", c10::IntType::get(), NB);
  m.register_attribute("sqrt_head_dim", c10::FloatType::get(), std::sqrt(static_cast<double>(d)));

  m.register_attribute("embedding", c10::TensorType::get(), named("vocab_embed.embedding", {V, D}));
  at::Tensor inv_freq;
  if (weights.count("rotary_emb.inv_freq")) {
    inv_freq = named("rotary_emb.inv_freq", {d / 2});
  } else {
    // Upstream's construction-time formula, in fp32 on the CPU (hdlm-reference §2.2).
    auto k2 = at::arange(0, d, 2, at::kFloat) / static_cast<float>(d);
    inv_freq = (1.0 / at::pow(10000.0, k2)).to(device);
  }
  m.register_attribute("inv_freq", c10::TensorType::get(), inv_freq);

  const std::vector<std::pair<std::string, std::vector<int64_t>>> per_block = {
      {"norm1.weight", {D}},        {"attn_qkv.weight", {3 * D, D}}, {"attn_out.weight", {D, D}},
      {"norm2.weight", {D}},        {"mlp.0.weight", {4 * D, D}},    {"mlp.0.bias", {4 * D}},
      {"mlp.2.weight", {D, 4 * D}}, {"mlp.2.bias", {D}}};
  const char* attr_names[] = {"norm1", "attn_qkv", "attn_out", "norm2", "mlp0_w", "mlp0_b", "mlp2_w", "mlp2_b"};
  for (size_t j = 0; j < per_block.size(); ++j) {
    c10::List<at::Tensor> list;
    for (int64_t i = 0; i < NB; ++i) {
      list.push_back(named("blocks." + std::to_string(i) + "." + per_block[j].first, per_block[j].second));
    }
    m.register_attribute(attr_names[j], c10::ListType::ofTensors(), list);
  }
  m.register_attribute("norm_final", c10::TensorType::get(), named("output_layer.norm_final.weight", {D}));
  m.register_attribute("out_w", c10::TensorType::get(), named("output_layer.linear.weight", {V, D}));
  m.register_attribute("out_b", c10::TensorType::get(), named("output_layer.linear.bias", {V}));

  m.define(kEpsilonSource);
  m.eval();
  return m;
}

}  // namespace hdlm
