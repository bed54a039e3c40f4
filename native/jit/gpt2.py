# TorchScript source of GPT-2 (Hugging Face layout) for the evaluation metrics (GPT-2 perplexity
# of generated samples), compiled by engine/models/gpt2.cc. Not importable Python: TorchScript
# source for torch::jit::Module::define.
#
# hidden: tokens [B, L] int64 -> final hidden states [B, L, D] (after ln_f; what HF returns as
# hidden_states[-1], the MAUVE features). forward: -> logits [B, L, V] = hidden · wteᵀ.
# Pre-LN blocks, causal attention, Conv1D weights ([in, out]: y = x·W + b), tanh GELU
# ("gelu_new"), logits tied to wte.


def hidden(self, tokens):
    B = tokens.size(0)
    L = tokens.size(1)
    D = self.n_embd
    H = self.n_head
    d = D // H
    pos = torch.arange(L, device=tokens.device)
    h = torch.embedding(self.wte, tokens) + torch.embedding(self.wpe, pos).unsqueeze(0)
    causal = torch.ones([L, L], device=tokens.device).triu(1) > 0.5
    for i in range(self.n_layer):
        a = torch.layer_norm(h, [D], self.ln1_w[i], self.ln1_b[i], self.eps)
        qkv = (torch.matmul(a, self.attn_w[i]) + self.attn_b[i]).view(B, L, 3, H, d)
        q = qkv[:, :, 0].transpose(1, 2)
        k = qkv[:, :, 1].transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.sqrt_head_dim
        scores = scores.masked_fill(causal, float('-inf'))
        probs = torch.softmax(scores, -1)
        o = torch.matmul(probs, v).transpose(1, 2).reshape(B, L, D)
        h = h + (torch.matmul(o, self.proj_w[i]) + self.proj_b[i])
        m = torch.layer_norm(h, [D], self.ln2_w[i], self.ln2_b[i], self.eps)
        z = torch.gelu(torch.matmul(m, self.fc_w[i]) + self.fc_b[i], approximate='tanh')
        h = h + (torch.matmul(z, self.mproj_w[i]) + self.mproj_b[i])
    return torch.layer_norm(h, [D], self.lnf_w, self.lnf_b, self.eps)


def forward(self, tokens):
    return torch.matmul(self.hidden(tokens), self.wte.t())
