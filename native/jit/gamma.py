# TorchScript source of the gamma-hybrid model (upstream hdlm/model/diffusion_lm.py: HDLM_Gamma),
# compiled after jit/shared.py by engine/models/gamma.cc. Not importable Python: TorchScript
# source for torch::jit::Module::define.
#
# Shapes: tokens/positions [B, L] int64, sigma [B, L] float32 (per-token total noise) ->
# logits [B, L, V]. The epsilon network (jit/epsilon.py) with a sigma-conditioned embedding,
# adaLN modulation and an output shift. Switches, from the checkpoint config (set by the
# builder):
#   radd         EmbeddingLayer's interpolation toward the mask row, weight exp(-γσ)
#   use_sigma    DDiTBlock's adaLN modulation (transformer_sigma_conditioning), conditioned on
#                c = SiLU(sigma_map(timestep features of sigma)) (TimestepEmbedder; its weights
#                are zeros when the config has no use_timestep_embedding, and c is then unused)
#   scale_sigma  scale_by_sigma: output shift by log(expm1 σ) and ln(V-1)
#   pp_ar        HDLM_Gamma.post_process_logits with an AR annealing.sampling_method: the logit
#                of the next input token set to 0 (its settled_tokens rule needs settled_tokens,
#                which no sampler passes)
# `precision` as in jit/epsilon.py: 0 fp32 (CPU), 1/3 upstream's CUDA forward in precision
# context A / C (sigma_map in fp16 / fp32, rotary table likewise), 2 context B (bf16).
# The adaLN products and gated residuals are fp32 under autocast too (upstream's scripted
# helpers get their bf16 operands up-cast).


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
    h = self.embed(tokens, sigma)
    c = self.cond(sigma, 6)
    cos, sin = self.rotary_fp32(positions)
    for i in range(self.n_blocks):
        a = self.norm(h, self.norm1[i])
        mods: List[Tensor] = []
        if self.use_sigma:
            mods = (torch.matmul(c, self.ada_w[i].t()) + self.ada_b[i]).chunk(6, 2)
            a = a * (1 + mods[1]) + mods[0]
        y = self.attention_fp32(a, i, cos, sin, attn_mask)
        if self.use_sigma:
            h = h + mods[2] * y
            m = self.norm(h, self.norm2[i])
            m = m * (1 + mods[4]) + mods[3]
            h = h + mods[5] * self.mlp_fp32(m, i)
        else:
            h = h + y
            h = h + self.mlp_fp32(self.norm(h, self.norm2[i]), i)
    u = self.norm(h, self.norm_final)
    x = torch.matmul(u, self.out_w.t()) + self.out_b
    return self.finish(x, tokens, sigma)


def forward_autocast(self, tokens, positions, sigma, attn_mask: Optional[Tensor]):
    h = self.embed(tokens, sigma)
    if self.precision == 1:
        c = self.cond(sigma, self.dtype_f16)
    elif self.precision == 2:
        c = self.cond(sigma, self.dtype_bf16)
    else:
        c = self.cond(sigma, 6)
    cb, sb = self.rotary_autocast(positions)
    for i in range(self.n_blocks):
        a = self.norm(h, self.norm1[i])
        mods: List[Tensor] = []
        if self.use_sigma:
            mods = self.lin(c, self.ada_w[i], self.ada_b[i]).chunk(6, 2)
            a = (a * (1 + mods[1].float())) + mods[0].float()
        y = self.attention_autocast(a, i, cb, sb, attn_mask)
        if self.use_sigma:
            h = h + (mods[2].float() * y)
            m = self.norm(h, self.norm2[i])
            m = (m * (1 + mods[4].float())) + mods[3].float()
            h = h + (mods[5].float() * self.mlp_autocast(m, i))
        else:
            h = h + y
            h = h + self.mlp_autocast(self.norm(h, self.norm2[i]), i)
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
