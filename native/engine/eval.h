// Evaluation kernels: the Monte-Carlo masked-likelihood estimator of upstream's
// hdlm/zeroshot_ppl.py (_forward_process, _eval_target_nll_mc) and the causal (GPT-2) negative
// log-likelihood. Torch-side; engine.cc and models/gpt2.cc call these with their own forward.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <functional>

#include "engine/types.h"

namespace hdlm {

// forward(tokens [B, L] int64, positions [B, L] int64) → logits [B, L, V] (any float dtype).
using EvalForward = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;

// op "mc_loglik" (see EvalRequest in types.h).
EvalResult eval_mc_loglik(const EvalForward& forward, const at::Device& device, const EvalRequest& request,
                          const std::atomic<bool>& abort);

// op "causal_nll": Σ_{l≥1} CE(logits[l−1], x_l) per row; `forward` here ignores positions.
EvalResult eval_causal_nll(const EvalForward& forward, const at::Device& device, const EvalRequest& request,
                           const std::atomic<bool>& abort);

// Default Model::evaluate dispatch helper: throws HDLM_UNSUPPORTED naming the op.
[[noreturn]] void eval_unsupported(const std::string& op, const std::string& family);

}  // namespace hdlm
