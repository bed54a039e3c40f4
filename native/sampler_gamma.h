// Upstream's gamma samplers (NAR and SAR), natively; independent of N-API and of how the model runs.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <functional>

#include "engine.h"

namespace hdlm {

// log-score [B, L, V] for tokens [B, L] int64, sigma [B, L] fp32, positions [B, L] int64 and an
// attention mask [B, L, L] bool (True = may not attend).
using GammaForwardFn = std::function<at::Tensor(const at::Tensor& tokens, const at::Tensor& sigma,
                                                const at::Tensor& positions, const at::Tensor& attn_mask)>;

// Returns int64 [B, context_length] on the CPU.
at::Tensor run_gamma_sampler(const GammaForwardFn& forward, const GammaSampleOptions& options, const at::Device& device, const std::atomic<bool>& abort, const StepCallback& on_step);

}  // namespace hdlm
