// A model's output must be finite: NaN or infinity in logits that are sampled from or scored is
// an error (HDLM_NON_FINITE) naming where it appeared, never a silently wrong token or estimate.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>

namespace hdlm {

// rows: [N, V] (or any shape whose last dimension is the vocabulary). Throws
// EngineError("HDLM_NON_FINITE", "the model's output holds NaN … " + where(r)), r the first row
// holding NaN or +infinity or that is −infinity everywhere; a −infinity logit alone (probability
// zero) passes. Costs one sum when all is finite.
void check_finite_rows(const at::Tensor& rows, const std::function<std::string(int64_t)>& where);

}  // namespace hdlm
