// Upstream's epsilon samplers (hdlm/epsilon_hybrid/sample.py: full_diff, semi_diff,
// full_diff_shifted, semi_diff_shifted), natively.
// Independent of N-API and of how the model is run: it only needs a forward function.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <functional>

#include "engine.h"

namespace hdlm {

// logits [B, L, V] for tokens [B, L] (int64), positions [B, L] (int64) and an optional attention
// mask [B, L, L] bool (True = may not attend; undefined = none).
using ForwardFn = std::function<at::Tensor(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& attn_mask)>;

// Runs full_diff / semi_diff, or with options.shifted full_diff_shifted / semi_diff_shifted, on
// `device`; returns int64 [B, L] on the CPU.
at::Tensor run_sampler(const ForwardFn& forward, const SampleOptions& options, const at::Device& device,
                       const std::atomic<bool>& abort, const StepCallback& on_step);

}  // namespace hdlm
