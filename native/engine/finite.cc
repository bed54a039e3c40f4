#include "engine/finite.h"

#include <cmath>

#include "engine/types.h"

namespace hdlm {

void check_finite_rows(const at::Tensor& rows, const std::function<std::string(int64_t)>& where) {
  if (rows.numel() == 0) return;
  if (std::isfinite(rows.sum(at::kDouble).item<double>())) return;
  // Only now look closer: NaN and +inf are errors, and so is a row that is −inf everywhere
  // (nothing to sample); a −inf logit alone means probability zero.
  auto flat = rows.reshape({-1, rows.size(-1)});
  auto nan = at::isnan(flat).any(-1);
  auto pos_inf = at::isposinf(flat).any(-1);
  auto none = at::isneginf(flat).all(-1);
  auto bad = (nan | pos_inf | none).nonzero();
  if (bad.size(0) == 0) return;
  const int64_t r = bad[0][0].item<int64_t>();
  const char* what = nan[r].item<bool>()       ? "holds NaN"
                     : pos_inf[r].item<bool>() ? "holds +infinity"
                                               : "is -infinity for every token";
  throw EngineError("HDLM_NON_FINITE", std::string("the model's output ") + what + " " + where(r));
}

}  // namespace hdlm
