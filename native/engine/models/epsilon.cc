#include "model_epsilon.h"

#include "module_common.h"

#include <cmath>

namespace hdlm {
namespace {

// TorchScript source of the model. Shapes: tokens/positions [B, L] int64 → logits [B, L, V].
// Follows hdlm-reference §2: fp32 residual stream, LayerNorm without affine terms followed by a
// separate weight product, rotary tables from positions[0] only (upstream's cache uses row 0),
// NeoX-style halves, q·kᵀ then division by sqrt(head_dim), softmax, tanh-GELU MLP.
// `attn_mask` is True where a query may NOT attend; a row with every key masked attends
// uniformly (upstream's guard turns an all -inf row into zeros).
//
// `precision` picks the computation (set per loaded model, see Precision in engine.h):
//   0  fp32 everywhere (CPU; matches upstream's CPU fp32 forward);
//   1–3 upstream's CUDA forward op for op — the blocks and the head as under bf16 autocast
//      (bf16 linear/einsum, fp32 LayerNorm, softmax and residual stream), the rotary table in
//      fp16 (1, context A: accelerate's fp16 wrapper; logits returned as fp32), bf16 (2,
//      context B: inside a sampler's bf16 autocast) or fp32 (3, context C: no outer autocast).
//      Same ATen ops with the same operand layouts as upstream, so the same kernels run.
// dtype constants do not resolve in TorchScript source without Python, hence the int attributes.
const char* kEpsilonSource = R"JIT(
def forward_fp32(self, tokens, positions, attn_mask: Optional[Tensor]):
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

def forward_autocast(self, tokens, positions, attn_mask: Optional[Tensor]):
    B = tokens.size(0)
    L = tokens.size(1)
    D = self.hidden_size
    H = self.n_heads
    d = self.head_dim
    bf16 = self.dtype_bf16
    h = self.embedding[tokens]
    t = positions[0].float()
    if self.precision == 1:
        freqs = torch.einsum('i,j->ij', [t.to(self.dtype_f16), self.inv_freq.to(self.dtype_f16)])
    elif self.precision == 2:
        freqs = torch.einsum('i,j->ij', [t.to(bf16), self.inv_freq.to(bf16)])
    else:
        freqs = torch.einsum('i,j->ij', [t, self.inv_freq])
    emb = torch.cat([freqs, freqs], -1)
    cos = emb.cos().view(1, L, 1, 1, d).repeat(1, 1, 3, 1, 1)
    sin = emb.sin().view(1, L, 1, 1, d).repeat(1, 1, 3, 1, 1)
    cos[:, :, 2].fill_(1.0)
    sin[:, :, 2].fill_(0.0)
    c = cos.to(bf16)
    s = sin.to(bf16)
    for i in range(self.n_blocks):
        qkv = self.lin(self.norm(h, self.norm1[i]), self.attn_qkv[i], None).view(B, L, 3, H, d)
        qkv = (qkv * c) + (self.rotate_half(qkv) * s)
        qkv_parts = qkv.unbind(2)
        scores = torch.einsum('bihd,bjhd->bhij', [qkv_parts[0], qkv_parts[1]]) / self.sqrt_head_dim
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask.unsqueeze(1), float('-inf'))
        all_inf = torch.isinf(scores).all(-1, keepdim=True)
        scores = torch.where(all_inf, torch.zeros_like(scores), scores)
        probs = torch.softmax(scores.float(), -1)
        o = torch.einsum('bhij,bjhd->bihd', [probs.to(bf16), qkv_parts[2]]).reshape(B, L, D)
        h = h + self.lin(o, self.attn_out[i], None).float()
        z = torch.gelu(self.lin(self.norm(h, self.norm2[i]), self.mlp0_w[i], self.mlp0_b[i]), approximate='tanh')
        h = h + self.lin(z, self.mlp2_w[i], self.mlp2_b[i]).float()
    logits = self.lin(self.norm(h, self.norm_final), self.out_w, self.out_b)
    if self.precision == 1:
        return logits.float()
    return logits

def forward_with_mask(self, tokens, positions, attn_mask: Optional[Tensor]):
    if self.precision == 0:
        return self.forward_fp32(tokens, positions, attn_mask)
    return self.forward_autocast(tokens, positions, attn_mask)

def forward(self, tokens, positions):
    return self.forward_with_mask(tokens, positions, None)
)JIT";

}  // namespace

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

  m.define(kSharedMethodsSource);
  m.define(kEpsilonSource);
  m.eval();
  return m;
}

}  // namespace hdlm
