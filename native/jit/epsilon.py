# TorchScript source of the epsilon-hybrid model (upstream hdlm/model/diffusion_lm.py: HDLM),
# compiled after jit/shared.py by engine/models/epsilon.cc. Not importable Python: TorchScript
# source for torch::jit::Module::define.
#
# Shapes: tokens/positions [B, L] int64 -> logits [B, L, V]. fp32 residual stream, LayerNorm
# without affine terms followed by a separate weight product, rotary tables from positions[0]
# only (upstream's cache uses row 0), NeoX-style halves, q·kᵀ then division by sqrt(head_dim),
# softmax, tanh-GELU MLP. `attn_mask` is True where a query may NOT attend.
#
# `precision` picks the computation (set per loaded model, see Precision in engine/types.h):
#   0    fp32 everywhere (CPU; matches upstream's CPU fp32 forward);
#   1-3  upstream's CUDA forward op for op: the blocks and the head as under bf16 autocast (bf16
#        linear/einsum, fp32 LayerNorm, softmax and residual stream), the rotary table in fp16
#        (1, context A: accelerate's fp16 wrapper; logits returned as fp32), bf16 (2, context B:
#        inside a sampler's bf16 autocast) or fp32 (3, context C: no outer autocast). Same ATen
#        ops with the same operand layouts as upstream, so the same kernels run.
# dtype constants do not resolve in TorchScript source without Python, hence int attributes.


def forward_fp32(self, tokens, positions, attn_mask: Optional[Tensor]):
    h = torch.embedding(self.embedding, tokens)
    cos, sin = self.rotary_fp32(positions)
    for i in range(self.n_blocks):
        h = h + self.attention_fp32(self.norm(h, self.norm1[i]), i, cos, sin, attn_mask)
        h = h + self.mlp_fp32(self.norm(h, self.norm2[i]), i)
    u = self.norm(h, self.norm_final)
    return torch.matmul(u, self.out_w.t()) + self.out_b


def forward_autocast(self, tokens, positions, attn_mask: Optional[Tensor]):
    h = self.embedding[tokens]
    c, s = self.rotary_autocast(positions)
    for i in range(self.n_blocks):
        h = h + self.attention_autocast(self.norm(h, self.norm1[i]), i, c, s, attn_mask)
        h = h + self.mlp_autocast(self.norm(h, self.norm2[i]), i)
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
