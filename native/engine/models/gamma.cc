#include "model_gamma.h"

#include "module_common.h"

#include <cmath>

namespace hdlm {
namespace {

// TorchScript source of the gamma model (hdlm-reference §3). Shapes: tokens/positions [B, L]
// int64, sigma [B, L] float32 (per-token total noise) → logits [B, L, V].
//
// Switches, from the checkpoint config (set by the builder):
//   radd        §3.2 embedding interpolation toward the mask row, weight exp(-γσ)
//   use_sigma   §3.4 adaLN modulation in every block (transformer_sigma_conditioning)
//   use_temb    sigma_map exists (use_timestep_embedding); without it c is unused
//   scale_sigma §3.6 output shift by log(expm1 σ) and ln(V-1)
//   pp_ar       §3.7 rule 1 (annealing.sampling_method ∈ AR modes): logit of the next input
//               token set to 0. Rule 2 needs settled_tokens, which no sampler passes.
// `precision` as in model_epsilon.cc: 0 fp32 (CPU), 1/3 upstream's CUDA forward in precision
// context A / C (sigma_map in fp16 / fp32, rotary table likewise), 2 context B (bf16).
const char* kGammaSource = R"JIT(
def embed(self, tokens, sigma):
    h = torch.embedding(self.embedding, tokens)
    if self.radd:
        w = torch.exp((-self.gamma) * sigma).unsqueeze(-1)
        mask_emb = self.embedding[self.mask_index].view(1, 1, -1)
        h = w * h + (1 - w) * mask_emb
    return h

def timestep_features(self, sigma):
    half = 128
    k = torch.arange(0, half, device=sigma.device).float()
    freqs = torch.exp(-self.log_max_period * k / half)
    args = sigma.float().unsqueeze(-1) * freqs.view(1, 1, half)
    return torch.cat([torch.cos(args), torch.sin(args)], -1)

def cond(self, sigma, dtype: int):
    B = sigma.size(0)
    L = sigma.size(1)
    tf = self.timestep_features(sigma).view(B * L, 256)
    if dtype != 6:
        tf = tf.to(dtype)
    y = torch.silu(torch.linear(tf, self.sm0_w.to(tf.dtype), self.sm0_b.to(tf.dtype)))
    y = torch.linear(y, self.sm2_w.to(tf.dtype), self.sm2_b.to(tf.dtype))
    return torch.silu(y).view(B, L, -1)

def finish(self, x, tokens, sigma):
    if self.scale_sigma:
        esm1 = torch.where(sigma < 0.5, torch.expm1(sigma), sigma.exp() - 1).log().to(x.dtype)
        x = x - esm1.unsqueeze(-1) - self.log_v_minus_1
    if self.pp_ar:
        L = tokens.size(1)
        if L > 1:
            rows = x[:, :L - 1]
            rows.scatter_(-1, tokens[:, 1:].unsqueeze(-1), 0.0)
    return x

def forward_fp32(self, tokens, positions, sigma, attn_mask: Optional[Tensor]):
    B = tokens.size(0)
    L = tokens.size(1)
    D = self.hidden_size
    H = self.n_heads
    d = self.head_dim
    h = self.embed(tokens, sigma)
    c = self.cond(sigma, 6)
    ang = torch.outer(positions[0].float(), self.inv_freq)
    emb = torch.cat([ang, ang], -1)
    cos = emb.cos().view(1, L, 1, d)
    sin = emb.sin().view(1, L, 1, d)
    for i in range(self.n_blocks):
        a = torch.layer_norm(h, [D], None, None, 1e-5) * self.norm1[i]
        mods: List[Tensor] = []
        if self.use_sigma:
            mods = (torch.matmul(c, self.ada_w[i].t()) + self.ada_b[i]).chunk(6, 2)
            a = a * (1 + mods[1]) + mods[0]
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
        y = torch.matmul(o, self.attn_out[i].t())
        if self.use_sigma:
            h = h + mods[2] * y
            m = torch.layer_norm(h, [D], None, None, 1e-5) * self.norm2[i]
            m = m * (1 + mods[4]) + mods[3]
            z = torch.gelu(torch.matmul(m, self.mlp0_w[i].t()) + self.mlp0_b[i], approximate='tanh')
            h = h + mods[5] * (torch.matmul(z, self.mlp2_w[i].t()) + self.mlp2_b[i])
        else:
            h = h + y
            m = torch.layer_norm(h, [D], None, None, 1e-5) * self.norm2[i]
            z = torch.gelu(torch.matmul(m, self.mlp0_w[i].t()) + self.mlp0_b[i], approximate='tanh')
            h = h + (torch.matmul(z, self.mlp2_w[i].t()) + self.mlp2_b[i])
    u = torch.layer_norm(h, [D], None, None, 1e-5) * self.norm_final
    x = torch.matmul(u, self.out_w.t()) + self.out_b
    return self.finish(x, tokens, sigma)

def forward_autocast(self, tokens, positions, sigma, attn_mask: Optional[Tensor]):
    B = tokens.size(0)
    L = tokens.size(1)
    D = self.hidden_size
    H = self.n_heads
    d = self.head_dim
    bf16 = self.dtype_bf16
    h = self.embed(tokens, sigma)
    t = positions[0].float()
    if self.precision == 1:
        c = self.cond(sigma, self.dtype_f16)
        freqs = torch.einsum('i,j->ij', [t.to(self.dtype_f16), self.inv_freq.to(self.dtype_f16)])
    elif self.precision == 2:
        c = self.cond(sigma, bf16)
        freqs = torch.einsum('i,j->ij', [t.to(bf16), self.inv_freq.to(bf16)])
    else:
        c = self.cond(sigma, 6)
        freqs = torch.einsum('i,j->ij', [t, self.inv_freq])
    emb = torch.cat([freqs, freqs], -1)
    cos = emb.cos().view(1, L, 1, 1, d).repeat(1, 1, 3, 1, 1)
    sin = emb.sin().view(1, L, 1, 1, d).repeat(1, 1, 3, 1, 1)
    cos[:, :, 2].fill_(1.0)
    sin[:, :, 2].fill_(0.0)
    cb = cos.to(bf16)
    sb = sin.to(bf16)
    for i in range(self.n_blocks):
        a = self.norm(h, self.norm1[i])
        mods: List[Tensor] = []
        if self.use_sigma:
            mods = self.lin(c, self.ada_w[i], self.ada_b[i]).chunk(6, 2)
            a = (a * (1 + mods[1].float())) + mods[0].float()
        qkv = self.lin(a, self.attn_qkv[i], None).view(B, L, 3, H, d)
        qkv = (qkv * cb) + (self.rotate_half(qkv) * sb)
        qkv_parts = qkv.unbind(2)
        scores = torch.einsum('bihd,bjhd->bhij', [qkv_parts[0], qkv_parts[1]]) / self.sqrt_head_dim
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask.unsqueeze(1), float('-inf'))
        all_inf = torch.isinf(scores).all(-1, keepdim=True)
        scores = torch.where(all_inf, torch.zeros_like(scores), scores)
        probs = torch.softmax(scores.float(), -1)
        o = torch.einsum('bhij,bjhd->bihd', [probs.to(bf16), qkv_parts[2]]).reshape(B, L, D)
        y = self.lin(o, self.attn_out[i], None).float()
        if self.use_sigma:
            h = h + (mods[2].float() * y)
            m = self.norm(h, self.norm2[i])
            m = (m * (1 + mods[4].float())) + mods[3].float()
            z = torch.gelu(self.lin(m, self.mlp0_w[i], self.mlp0_b[i]), approximate='tanh')
            h = h + (mods[5].float() * self.lin(z, self.mlp2_w[i], self.mlp2_b[i]).float())
        else:
            h = h + y
            z = torch.gelu(self.lin(self.norm(h, self.norm2[i]), self.mlp0_w[i], self.mlp0_b[i]), approximate='tanh')
            h = h + self.lin(z, self.mlp2_w[i], self.mlp2_b[i]).float()
    x = self.lin(self.norm(h, self.norm_final), self.out_w, self.out_b)
    x = self.finish(x, tokens, sigma)
    if self.precision == 1:
        return x.float()
    return x

def forward_with_mask(self, tokens, positions, sigma, attn_mask: Optional[Tensor]):
    if self.precision == 0:
        return self.forward_fp32(tokens, positions, sigma.float(), attn_mask)
    return self.forward_autocast(tokens, positions, sigma.float(), attn_mask)

def forward(self, tokens, positions, sigma):
    return self.forward_with_mask(tokens, positions, sigma, None)
)JIT";

}  // namespace

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
                      "model.transformer_sigma_conditioning needs model.use_timestep_embedding (upstream has no sigma_map otherwise)");
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
  const std::vector<std::pair<std::string, std::vector<int64_t>>> ada = {
      {"adaLN_modulation.weight", {6 * D, C}}, {"adaLN_modulation.bias", {6 * D}}};
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

  m.define(kSharedMethodsSource);
  m.define(kGammaSource);
  m.eval();
  return m;
}

}  // namespace hdlm
