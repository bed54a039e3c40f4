// Fused CUDA kernels for the fast path, compiled at run time with NVRTC (loaded with dlopen, the
// library libtorch itself uses, so building the addon needs no CUDA compiler). They replace chains
// of small ATen kernels whose launch latency dominates a batch-1 step: rotary embedding of q and k,
// bias + residual + LayerNorm, and Gumbel-max sampling. Every entry point reports false / an
// undefined tensor when the kernels are unavailable (CPU build, NVRTC missing, unknown GPU, or
// HDLM_FUSED_KERNELS=0); the caller then takes its ATen path.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace hdlm {
namespace fused {

// Whether the kernels compiled for `device` (compiles them on first use). `why` receives the
// reason when they did not.
bool available(const at::Device& device, std::string* why = nullptr);

// q, k [B·L, D] bf16 (contiguous) = rotary(qkv[:, 0:D]), rotary(qkv[:, D:2D]) for qkv [B·L, 3D]
// bf16, NeoX halves per head, angles from cos/sin [L, d/2] fp32; fp32 math, one rounding.
void rotary_qk(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& q, at::Tensor& k,
               int64_t length, int64_t heads, int64_t head_dim);

// h [R, D] bf16 in place: h = bf16(h + bias) when bias is defined; out = LayerNorm(h)·weight
// (no LayerNorm bias, eps as given), bf16.
void add_bias_layer_norm(at::Tensor& h, const at::Tensor& bias, const at::Tensor& weight, at::Tensor& out, double eps);

// Per row of logits [N, V] fp32: argmax(l / T + Gumbel noise) (argmax(l) for T = 0), the noise
// from a counter-based generator keyed by (seed, stream) — deterministic for a given seed.
at::Tensor gumbel_argmax(const at::Tensor& logits, double temperature, uint64_t seed, uint64_t stream);

}  // namespace fused
}  // namespace hdlm
