// Upstream's epsilon samplers (hdlm/epsilon_hybrid/sample.py: full_diff, semi_diff; the shifted
// full_diff_shifted / semi_diff_shifted are in sampler_shifted.cc), natively, in two modes:
//   reference — upstream's exact semantics: full logits every step, float64 Gumbel-max
//               exp(l) / (-ln u)^T, every uniform drawn in upstream's order and shapes;
//   fast      — the same algorithms and the same distribution from another random stream:
//               the forward is skipped when no token changed since the last one (exact for the
//               epsilon family, which has no time input), the output head runs only on the rows
//               sampled this step, and Gumbel-max runs in float32 as argmax(l/T + G).
// Independent of N-API.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <functional>

#include "engine.h"

namespace hdlm {

class FastForward;

// logits [B, L, V] for tokens [B, L] (int64), positions [B, L] (int64) and an optional attention
// mask [B, L, L] bool (True = may not attend; undefined = none).
using ForwardFn = std::function<at::Tensor(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& attn_mask)>;

// A generator seeded like torch.manual_seed(seed) for `device` (CUDA Philox or CPU MT19937).
at::Generator make_sampling_generator(const at::Device& device, uint64_t seed);

// Reference mode (options.shifted: full_diff_shifted / semi_diff_shifted); returns int64 [B, L] on the CPU.
at::Tensor run_sampler(const ForwardFn& forward, const SampleOptions& options, const at::Device& device,
                       const std::atomic<bool>& abort, const StepCallback& on_step);
// The shifted samplers (sampler_shifted.cc); run_sampler dispatches to them.
at::Tensor run_shifted_sampler(const ForwardFn& forward, const SampleOptions& options, const at::Device& device,
                               const std::atomic<bool>& abort, const StepCallback& on_step);

// Fast mode; returns int64 [B, L] on the CPU.
at::Tensor run_fast_sampler(FastForward& model, const SampleOptions& options, const at::Device& device,
                            const std::atomic<bool>& abort, const StepCallback& on_step);

}  // namespace hdlm
