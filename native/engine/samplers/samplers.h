// The samplers' face to the engine: which implementation runs a sampling call (decided in
// choose_epsilon_sampler, and nowhere else) and the entry points. Independent of N-API and of
// how the model runs: the engine hands in its forward.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <functional>

#include "engine/types.h"

namespace hdlm {

class FastForward;

// logits [B, L, V] for tokens [B, L] (int64), positions [B, L] (int64) and an optional attention
// mask [B, L, L] bool (True = may not attend; undefined = none).
using ForwardFn =
    std::function<at::Tensor(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& attn_mask)>;

// log-score [B, L, V] for tokens [B, L] int64, sigma [B, L] fp32, positions [B, L] int64 and an
// attention mask [B, L, L] bool (True = may not attend).
using GammaForwardFn = std::function<at::Tensor(const at::Tensor& tokens, const at::Tensor& sigma,
                                                const at::Tensor& positions, const at::Tensor& attn_mask)>;

// The implementations of upstream's epsilon samplers (hdlm/epsilon_hybrid/sample.py).
enum class EpsilonSampler {
  // full_diff / semi_diff in upstream's exact semantics: full logits every step, float64
  // Gumbel-max, every uniform drawn in upstream's order and shapes (full_semi_diff.cc).
  Reference,
  // The same step loop in fast mode: same algorithms, same distribution, another random stream;
  // the forward is skipped when no token changed since the last one (exact for the epsilon
  // family, which has no time input), the output head runs only on the rows sampled this step
  // (full_semi_diff.cc).
  Fast,
  // Fast full_diff for `original` and `acs` without guidance: the positions a step samples are
  // drawn on the host, so the loop never waits for the device (host_selected.cc).
  HostSelected,
  // full_diff_shifted / semi_diff_shifted, the next-token samplers, in upstream's exact semantics
  // whatever the mode; semi_diff_shifted needs attention masks (shifted.cc).
  FullShifted,
  SemiShifted,
};

EpsilonSampler choose_epsilon_sampler(const SampleOptions& options);

// What an epsilon sampler runs on: the model's forward, and the fast path's forward (built on
// first use; only the fast samplers ask for it).
struct EpsilonSamplerModel {
  ForwardFn forward;
  std::function<FastForward&()> fast;
};

// Runs `which` (= choose_epsilon_sampler(options)); returns int64 [B, L] on the CPU.
at::Tensor run_epsilon_sampler(EpsilonSampler which, const EpsilonSamplerModel& model, const SampleOptions& options,
                               const at::Device& device, const std::atomic<bool>& abort, const StepCallback& on_step);

// Upstream's gamma samplers (NAR and SAR, gamma.cc); returns int64 [B, context_length] on the CPU.
at::Tensor run_gamma_sampler(const GammaForwardFn& forward, const GammaSampleOptions& options, const at::Device& device,
                             const std::atomic<bool>& abort, const StepCallback& on_step);

}  // namespace hdlm
