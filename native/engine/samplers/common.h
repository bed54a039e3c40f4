// What the sampler implementations share: the random generator, the time grid, guidance, the
// step report, the reference and fast Gumbel-max, and each implementation's entry point (called
// by samplers.cc only).
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/engine.h"
#include "engine/samplers/samplers.h"
#include "engine/types.h"

namespace hdlm {

// A generator seeded like torch.manual_seed(seed) for `device` (CUDA Philox or CPU MT19937).
at::Generator make_sampling_generator(const at::Device& device, uint64_t seed);

// Throws HDLM_NON_FINITE when the logits [N, V] about to be sampled from hold NaN or infinity
// (the sample call adds the step); both modes and every sampler refuse alike.
void check_sampled_rows(const at::Tensor& rows);

// Uniforms in [0, 1) as float64 on `device`, drawn from `gen` (upstream's torch.rand).
at::Tensor uniform_f64(at::IntArrayRef shape, at::Generator& gen, const at::Device& device);

// Upstream's Gumbel-max in float64 (hdlm/epsilon_hybrid/sample.py: add_gumbel_noise, then
// argmax): argmax exp(l) / (−ln u)^T with one draw of N×V uniforms; the first maximum wins.
// rows [N, V]; returns int64 [N] on `device`.
at::Tensor gumbel_argmax_f64(const at::Tensor& rows, double temperature, at::Generator& gen, const at::Device& device);

// Fast mode: one sample per row of float32 logits [N, V] from softmax(l / T) (argmax for T = 0) —
// in distribution, not in bits, what upstream's Gumbel-max draws. CUDA: one fused kernel (noise
// keyed by the seed and a per-call counter); CPU: libtorch's multinomial on softmax(l / T).
at::Tensor sample_fast(const at::Tensor& l, double temperature, uint64_t seed, uint64_t& calls, at::Generator& gen);

// τ = linspace(1, eps, steps + 1) in fp32 computed on `device` (upstream: on CUDA), on the host.
std::vector<float> time_grid(int64_t steps, double eps, const at::Device& device);

// The prompt as int64 [batch_size, prompt_length] on `device`.
at::Tensor prompt_tensor(const SampleOptions& o, const at::Device& device);

// The fixed tokens as int64 [batch_size, context_length] on `device` (−1 where free), or an
// undefined tensor when there are none.
at::Tensor fixed_tensor(const SampleOptions& o, const at::Device& device);

// Classifier-free guidance as upstream's shifted samplers do it (and as full_diff and
// semi_diff intend it): the unconditional copy has the prompt positions masked, both go through
// the model as one batch of 2B, and the logits combine as ℓ_u + (cfg_scale + 1)·(ℓ_c − ℓ_u).
// `fixed` (bool [B, ≥ n] or undefined): fixed tokens are conditioning too, masked in the
// unconditional copy as the prompt is.
at::Tensor with_guidance(const SampleOptions& o, const at::Tensor& x, const at::Tensor& fixed = at::Tensor());
at::Tensor guided(const SampleOptions& o, const at::Tensor& both);

// Calls on_step (if any) with the step count and, at a step the caller sees (reports()) when
// asked for, a copy of x.
void report_step(const StepCallback& on_step, bool with_tokens, int64_t every, const at::Tensor& x, int64_t done,
                 int64_t total);

// ---- the implementations (samplers.cc dispatches to them) ----------------------------------

at::Tensor run_full_semi_reference(const ForwardFn& forward, const SampleOptions& o, const at::Device& device,
                                   const std::atomic<bool>& abort, const StepCallback& on_step);
at::Tensor run_full_semi_fast(FastForward& model, const SampleOptions& o, const at::Device& device,
                              const std::atomic<bool>& abort, const StepCallback& on_step);
at::Tensor run_host_selected(FastForward& model, const SampleOptions& o, const at::Device& device,
                             const std::atomic<bool>& abort, const StepCallback& on_step);
// batched.cc: the engine's BatchedSampler on the fast forward.
std::shared_ptr<BatchedSampler> make_batched_fast_sampler(std::function<FastForward&()> fast, const at::Device& device);
at::Tensor run_full_diff_shifted(const ForwardFn& forward, const SampleOptions& o, const at::Device& device,
                                 const std::atomic<bool>& abort, const StepCallback& on_step);
at::Tensor run_semi_diff_shifted(const ForwardFn& forward, const SampleOptions& o, const at::Device& device,
                                 const std::atomic<bool>& abort, const StepCallback& on_step);

}  // namespace hdlm
