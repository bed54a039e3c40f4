// Upstream's epsilon samplers (hdlm/epsilon_hybrid/sample.py: full_diff, semi_diff), natively.
// Independent of N-API and of how the model is run: it only needs a forward function.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <functional>

#include "engine.h"

namespace hdlm {

// logits [B, L, V] for tokens [B, L] (int64) and positions [B, L] (int64).
using ForwardFn = std::function<at::Tensor(const at::Tensor& tokens, const at::Tensor& positions)>;

// Runs full_diff or semi_diff (options.semi) on `device`; returns int64 [B, L] on the CPU.
at::Tensor run_sampler(const ForwardFn& forward, const SampleOptions& options, const at::Device& device,
                       const std::atomic<bool>& abort, const StepCallback& on_step);

}  // namespace hdlm
