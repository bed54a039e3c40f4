// The fast path's epsilon forward: the same network as jit/epsilon.py, written with ATen
// calls so that it can run in the compute dtype of the device (bf16 on CUDA, fp32 on the CPU),
// use fused attention, be replayed from a CUDA graph, and leave the output head to the sampler
// (which applies it only to the rows it samples). Not bit-identical to upstream: the fast
// samplers are equivalent in distribution, not in bits (README, "Fast and reference modes").
#pragma once

#include <torch/script.h>

#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace hdlm {

class FastForward {
 public:
  // Reads the weights of an hdlm epsilon module (models/epsilon.cc layout); returns null for a
  // module without that layout (a foreign TorchScript file).
  static std::unique_ptr<FastForward> from_module(const torch::jit::Module& module, const at::Device& device);
  ~FastForward();

  // Hidden states before the final norm, [B, L, D] in the compute dtype, for tokens [B, L]
  // (int64, positions 0..L-1). Thread-safe.
  at::Tensor hidden(const at::Tensor& tokens);
  // Float32 logits [N, V] for hidden rows [N, D].
  at::Tensor head(const at::Tensor& rows) const;
  // Logits in the compute dtype, [N, padded vocab] (padding columns −inf), of the rows `index`
  // [N] (int64, on the device) of hidden [R, D] (contiguous).
  at::Tensor head_rows(const at::Tensor& hidden, const at::Tensor& index) const;

  int64_t vocab_size() const { return out_w_.size(0); }

 private:
  FastForward() = default;
  at::Tensor run(const at::Tensor& tokens);
  at::Tensor run_fused(const at::Tensor& tokens);
  std::pair<at::Tensor, at::Tensor> rotary(int64_t length);
  // cos, sin [L, d/2] fp32 for the fused rotary kernel.
  std::pair<at::Tensor, at::Tensor> rotary_table(int64_t length);

  at::Device device_{at::kCPU};
  at::ScalarType dtype_ = at::kFloat;
  int64_t hidden_size_ = 0, n_heads_ = 0, head_dim_ = 0;
  at::Tensor embedding_, inv_freq_, norm_final_, out_w_, out_b_, out_w_pad_, out_b_pad_;
  std::vector<at::Tensor> norm1_, qkv_, attn_out_, norm2_, mlp0_w_, mlp0_b_, mlp2_w_, mlp2_b_;
  std::map<int64_t, std::pair<at::Tensor, at::Tensor>> rotary_cache_, rotary_table_cache_;
  bool fused_ = false;  // CUDA with the NVRTC-compiled kernels of cuda/fused_kernels.h

  // CUDA graphs, one per (batch, length), captured after a few eager warm-up calls.
  struct Graph;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Graph>> graphs_;
  std::mutex mutex_;
};

}  // namespace hdlm
