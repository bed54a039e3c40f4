# TorchScript methods the epsilon and gamma modules share (compiled into each module before its own
# source, see engine/models/epsilon.cc). Not importable Python: TorchScript source for
# torch::jit::Module::define, where `self` is the module and its attributes are registered by
# the builder (engine/models/module_common.h). Upstream: hdlm/model/diffusion_lm.py (DDiTBlock,
# DDitFinalLayer) and hdlm/model/rotary.py.
#
# Two ways to compute, switched by the module's `precision` attribute (see jit/epsilon.py):
# the *_fp32 methods (CPU) and the *_autocast methods (upstream's CUDA bf16-autocast forward).


def rotate(self, x, cos, sin):
    # fp32 NeoX rotary: the halves of each head rotated against each other
    half = self.head_dim // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def norm(self, x, w):
    # upstream's LayerNorm: fp32, no affine terms, then the weight
    return torch.layer_norm(x.float(), [self.hidden_size], None, None, 1e-5) * w


def lin(self, x, w, b: Optional[Tensor]):
    # a Linear under bf16 autocast
    bf16 = self.dtype_bf16
    if b is None:
        return torch.linear(x.to(bf16), w.to(bf16), None)
    return torch.linear(x.to(bf16), w.to(bf16), b.to(bf16))


def rotate_half(self, x):
    half = x.size(-1) // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


def rotary_fp32(self, positions) -> Tuple[Tensor, Tensor]:
    # cos, sin [1, L, 1, d] from positions[0] only (upstream's Rotary cache uses row 0)
    L = positions.size(1)
    d = self.head_dim
    ang = torch.outer(positions[0].float(), self.inv_freq)
    emb = torch.cat([ang, ang], -1)
    return emb.cos().view(1, L, 1, d), emb.sin().view(1, L, 1, d)


def rotary_autocast(self, positions) -> Tuple[Tensor, Tensor]:
    # upstream's Rotary table [1, L, 3, 1, d] (identity on v) in the precision context's dtype
    # (1: fp16, 2: bf16, 3: fp32), then as bf16 for the blocks
    L = positions.size(1)
    d = self.head_dim
    bf16 = self.dtype_bf16
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
    return cos.to(bf16), sin.to(bf16)


def attention_fp32(self, a, i: int, cos, sin, attn_mask: Optional[Tensor]):
    # block i's attention on the normalized input a [B, L, D], through attn_out; fp32.
    # attn_mask is True where a query may NOT attend; a row with every key masked attends
    # uniformly (upstream's guard turns an all -inf row into zeros).
    B = a.size(0)
    L = a.size(1)
    H = self.n_heads
    d = self.head_dim
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
    o = torch.matmul(probs, v).transpose(1, 2).reshape(B, L, self.hidden_size)
    return torch.matmul(o, self.attn_out[i].t())


def attention_autocast(self, a, i: int, c, s, attn_mask: Optional[Tensor]):
    # the same under bf16 autocast: bf16 GEMMs and scores, fp32 softmax; returns fp32
    B = a.size(0)
    L = a.size(1)
    qkv = self.lin(a, self.attn_qkv[i], None).view(B, L, 3, self.n_heads, self.head_dim)
    qkv = (qkv * c) + (self.rotate_half(qkv) * s)
    qkv_parts = qkv.unbind(2)
    scores = torch.einsum('bihd,bjhd->bhij', [qkv_parts[0], qkv_parts[1]]) / self.sqrt_head_dim
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask.unsqueeze(1), float('-inf'))
    all_inf = torch.isinf(scores).all(-1, keepdim=True)
    scores = torch.where(all_inf, torch.zeros_like(scores), scores)
    probs = torch.softmax(scores.float(), -1)
    o = torch.einsum('bhij,bjhd->bihd', [probs.to(self.dtype_bf16), qkv_parts[2]]).reshape(B, L, self.hidden_size)
    return self.lin(o, self.attn_out[i], None).float()


def mlp_fp32(self, m, i: int):
    # block i's MLP (tanh GELU) on the normalized input m; fp32
    z = torch.gelu(torch.matmul(m, self.mlp0_w[i].t()) + self.mlp0_b[i], approximate='tanh')
    return torch.matmul(z, self.mlp2_w[i].t()) + self.mlp2_b[i]


def mlp_autocast(self, m, i: int):
    # the same under bf16 autocast; returns fp32
    z = torch.gelu(self.lin(m, self.mlp0_w[i], self.mlp0_b[i]), approximate='tanh')
    return self.lin(z, self.mlp2_w[i], self.mlp2_b[i]).float()
