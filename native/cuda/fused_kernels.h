// Fused CUDA kernels for the fast path (their code: fused_kernels.cu), compiled at run time with
// NVRTC (nvrtc.h: loaded with dlopen, the library libtorch itself uses, so building the addon
// needs no CUDA compiler). They replace chains of small ATen kernels whose launch latency
// dominates a batch-1 step: rotary embedding of q and k, bias + residual + LayerNorm (also of
// gathered rows), Gumbel-max sampling and a step's write. Every entry point reports false / an
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

// In place on qkv [B·L, 3D] bf16 (contiguous): its q and k thirds become rotary(q), rotary(k), NeoX
// halves per head, angles from cos/sin [L, d/2] fp32; fp32 math, one rounding.
void rotary_qk(at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, int64_t length, int64_t heads,
               int64_t head_dim);

// out[r] = LayerNorm(h[gather[r]])·weight (no LayerNorm bias, eps as given), bf16 [R, D]; without
// gather, row r of h, and with bias (only then) h = bf16(h + bias) is written back first.
void layer_norm_rows(at::Tensor& h, const at::Tensor& gather, const at::Tensor& bias, const at::Tensor& weight,
                     at::Tensor& out, double eps);

// Per row of logits [N, ≥vocab] (fp32 or bf16, unit column stride), over the first `vocab`
// columns: an int64 key whose low half encodes argmax(l / T + Gumbel noise) (argmax(l) for T = 0),
// the noise from a counter-based generator keyed by (seed, stream) — deterministic for a seed.
at::Tensor gumbel_keys(const at::Tensor& logits, int64_t vocab, double temperature, uint64_t seed, uint64_t stream);

// The indices gumbel_keys encodes, int64 [N]; an undefined tensor when the kernels are unavailable.
at::Tensor gumbel_argmax(const at::Tensor& logits, double temperature, uint64_t seed, uint64_t stream);

// One fast step's write, for j < n: x[sel[j]] takes the token of keys[j] when its current value
// selects it (take_if_masked[j] for a mask token, take_if_unmasked[j] otherwise); written[j]
// receives the value x[sel[j]] ends with.
void write_selected(const at::Tensor& keys, const at::Tensor& sel, const at::Tensor& take_if_masked,
                    const at::Tensor& take_if_unmasked, at::Tensor& x, at::Tensor& written, int64_t n, int64_t mask_id);

}  // namespace fused
}  // namespace hdlm
