// Upstream's hdlm/metaschedule.py and hdlm/metaschedule_utils.py. The build's -ffp-contract=off
// matters here: the time of a level is f32(f32(level · f32(Δ)) + f32(εa)), two roundings, as
// PyTorch computes it.
#include "engine/metaschedule.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace hdlm {

namespace {
// Python's round() of a double: half to even.
int64_t round_half_even(double x) {
  const double r = std::nearbyint(x);  // default rounding mode: to nearest, ties to even
  return static_cast<int64_t>(r);
}
}  // namespace

MetaSchedule::MetaSchedule(const MetaScheduleSpec& spec) : spec_(spec) {
  if (spec.width < 1 || spec.tau < 1 || (spec.type == ScheduleType::Hybrid && spec.length < 1)) {
    throw EngineError("HDLM_INVALID_ARGUMENT", "metaschedule width, tau (and length) must be positive integers");
  }
  const int64_t w = spec.width, tau = spec.tau;
  switch (spec.type) {
    case ScheduleType::Simple: {
      // make_simple_annealing: main[i] = round(i·(tau−1)/(width−1)); width 1: (tau−1,)
      if (w == 1) {
        main_ = {tau - 1};
      } else {
        for (int64_t i = 0; i < w; ++i) {
          main_.push_back(round_half_even(static_cast<double>(i * (tau - 1)) / static_cast<double>(w - 1)));
        }
      }
      worthless_ = *std::max_element(main_.begin(), main_.end()) + 1;
      zeros_ = 0;
      while (zeros_ < static_cast<int64_t>(main_.size()) && main_[zeros_] == 0) ++zeros_;
      break;
    }
    case ScheduleType::Block:
      // make_block_annealing: levels tau−1 .. 0 present (tau = 1: only 0)
      worthless_ = tau;
      break;
    case ScheduleType::Hybrid: {
      const int64_t L = spec.length;
      const int64_t nb = (L + w - 1) / w;
      block_prefix_.push_back(0);
      for (int64_t b = 0; b < nb; ++b) {
        block_sizes_.push_back(std::min(w, L - b * w));
        block_prefix_.push_back(block_prefix_.back() + block_sizes_.back());
      }
      // Upstream stores (tau + width − 1) vectors per block (the argument width) but counts
      // (tau + first block size − 1) steps per block; the two differ only when width > length.
      hybrid_stored_per_block_ = tau + w - 1;
      hybrid_steps_per_block_ = tau + block_sizes_[0] - 1;
      hybrid_total_ = nb * hybrid_steps_per_block_;
      worthless_ = tau;
      break;
    }
  }
}

int64_t MetaSchedule::width() const { return spec_.type == ScheduleType::Hybrid ? block_sizes_[0] : spec_.width; }

int64_t MetaSchedule::num_settled(int64_t k) const {
  const int64_t w = spec_.width, tau = spec_.tau;
  switch (spec_.type) {
    case ScheduleType::Simple:
      // bootstrap (k ≤ w−1) and shifts all 0; then z per cycle of the one-step loop
      if (k <= w - 1) return 0;
      return zeros_ * (k - w);
    case ScheduleType::Block: {
      // bootstrap: k = 1 .. tau−1; loop q = k − tau: phase q mod tau, cycle q div tau;
      // shifts = (0, w, w, ..., w)
      if (k <= tau - 1) return 0;
      const int64_t q = k - tau, phase = q % tau, cycle = q / tau;
      return (phase == 0 ? 0 : w) + w * cycle;
    }
    case ScheduleType::Hybrid: {
      const int64_t kk = std::clamp<int64_t>(k, 1, hybrid_total_);
      // HybridMetaSchedule.__call__'s "just finished" branch can never trigger
      const int64_t settled_blocks = std::min<int64_t>((kk - 1) / hybrid_steps_per_block_, block_sizes_.size());
      return block_prefix_[settled_blocks];
    }
  }
  return 0;
}

int64_t MetaSchedule::relevant_length(int64_t k) const {
  switch (spec_.type) {
    case ScheduleType::Simple:
      if (k == 0) return 0;
      return std::min<int64_t>(k, static_cast<int64_t>(main_.size()));
    case ScheduleType::Block: return k == 0 ? 0 : spec_.width;
    case ScheduleType::Hybrid: return spec_.length;
  }
  return 0;
}

int64_t MetaSchedule::relevant_at(int64_t k, int64_t i) const {
  const int64_t w = spec_.width, tau = spec_.tau;
  switch (spec_.type) {
    case ScheduleType::Simple: {
      const int64_t len = relevant_length(k);
      return main_[main_.size() - len + i];  // bootstrap: the last k entries of main; then main
    }
    case ScheduleType::Block: {
      if (k <= tau - 1) return tau - k;  // bootstrap level
      const int64_t phase = (k - tau) % tau;
      return phase == 0 ? 0 : tau - phase;
    }
    case ScheduleType::Hybrid: {
      const int64_t kk = std::clamp<int64_t>(k, 1, hybrid_total_);
      const int64_t b = (kk - 1) / hybrid_stored_per_block_, s = (kk - 1) % hybrid_stored_per_block_;
      const int64_t pb = i / w, j = i % w;
      if (pb < b) return 0;
      if (pb > b) return tau;
      return std::max<int64_t>(0, tau - 1 - std::max<int64_t>(0, s - j));
    }
  }
  return 0;
}

std::vector<int64_t> MetaSchedule::levels(int64_t k, int64_t n) const {
  std::vector<int64_t> out;
  if (spec_.type == ScheduleType::Hybrid) {
    const int64_t m = std::min(n, spec_.length);
    out.reserve(m);
    for (int64_t i = 0; i < m; ++i) out.push_back(relevant_at(k, i));
    return out;
  }
  const int64_t ns = k == 0 ? 0 : num_settled(k), len = relevant_length(k);
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    if (i < ns)
      out.push_back(0);
    else if (i < ns + len)
      out.push_back(relevant_at(k, i - ns));
    else
      out.push_back(worthless_);
  }
  return out;
}

int64_t MetaSchedule::max_step(int64_t n) const {
  switch (spec_.type) {
    case ScheduleType::Simple: {
      const int64_t limit = n + worthless_ + spec_.width;
      for (int64_t k = 1; k <= limit; ++k) {
        // all of ms(k)(stop=n) zero: everything up to n settled or inside a zero prefix of relevant
        const int64_t ns = num_settled(k), len = relevant_length(k);
        bool all_zero = true;
        for (int64_t i = ns; i < n && all_zero; ++i) all_zero = i < ns + len && relevant_at(k, i - ns) == 0;
        if (all_zero) return k + 1;
      }
      return limit;
    }
    case ScheduleType::Block: return worthless_ * ((n + spec_.width - 1) / spec_.width) + 1;
    case ScheduleType::Hybrid: return hybrid_total_ + 1;
  }
  return 1;
}

std::vector<uint8_t> attention_mask(int64_t n, int64_t se, int64_t ae, ContextAttention ctx, BlockAttention blk,
                                    int64_t block_size, bool causal) {
  std::vector<uint8_t> m(static_cast<size_t>(n * n), 1);
  auto at = [&](int64_t i, int64_t j) -> uint8_t& { return m[static_cast<size_t>(i * n + j)]; };
  // Python slices clip to [0, n]
  auto clip = [&](int64_t v) { return std::clamp<int64_t>(v, 0, n); };
  const int64_t s_end = clip(se + 1);
  const int64_t a_begin = clip(causal && se >= 0 ? se : se + 1), a_end = clip(ae + 1);
  const int64_t num_settled = se >= 0 ? se + 1 : 0;
  int64_t num_active = std::max<int64_t>(0, (ae + 1) - (se + 1));
  if (causal && se >= 0) num_active += 1;

  if (num_settled > 0) {
    if (ctx == ContextAttention::Full) {
      for (int64_t i = 0; i < s_end; ++i)
        for (int64_t j = 0; j < s_end; ++j) at(i, j) = 0;
    } else if (ctx == ContextAttention::Causal) {
      for (int64_t i = 0; i < s_end; ++i)
        for (int64_t j = 0; j < s_end; ++j) at(i, j) = j > i;
    } else if (block_size > 0) {  // block_causal; with block 0 the settled square stays blocked
      const int64_t sub = std::min(num_settled, n);
      for (int64_t i = 0; i < sub; ++i)
        for (int64_t j = 0; j < sub; ++j)
          if (j / block_size <= i / block_size) at(i, j) = 0;
    }
  }
  if (num_active > 0) {
    if (blk == BlockAttention::Full) {
      for (int64_t i = a_begin; i < a_end; ++i)
        for (int64_t j = a_begin; j < a_end; ++j) at(i, j) = 0;
    } else {
      for (int64_t i = a_begin; i < a_end; ++i)
        for (int64_t j = a_begin; j < a_end; ++j) at(i, j) = j > i;
      if (causal) {
        for (int64_t r = 0; r + 1 < num_active; ++r) {
          const int64_t i = a_begin + r;
          if (i + 1 < n) at(i, i + 1) = 0;
        }
      }
    }
    for (int64_t i = a_begin; i < a_end; ++i)
      for (int64_t j = 0; j < s_end; ++j) at(i, j) = 0;
  }
  return m;
}

namespace {
StepPlan plan_times(const std::vector<int64_t>& lev, int64_t n, int64_t worthless, const std::vector<uint8_t>& lvl0,
                    double eps, std::vector<uint8_t>& act) {
  StepPlan p;
  p.n = n;
  p.t.assign(n, 0.0f);
  const float f_eps = static_cast<float>(eps), f_one_minus = static_cast<float>(1.0 - eps);
  const double active_eps = 10 * eps;
  const float f_aeps = static_cast<float>(active_eps);
  const float f_delta = static_cast<float>((1 - 2 * active_eps) / static_cast<double>(worthless - 1));
  act.assign(n, 0);
  for (int64_t l = 0; l < n; ++l) {
    const bool wl = lev[l] == worthless;
    act[l] = !lvl0[l] && !wl;
    if (lvl0[l]) p.t[l] = f_eps;
    if (wl) p.t[l] = f_one_minus;
    if (act[l]) {
      const float prod = static_cast<float>(lev[l]) * f_delta;
      p.t[l] = prod + f_aeps;
    }
    p.t[l] = std::min(std::max(p.t[l], f_eps), f_one_minus);
  }
  return p;
}
}  // namespace

StepPlan t_and_mask(const MetaSchedule& ms, int64_t k, int64_t n, double eps, ContextAttention ctx,
                    BlockAttention blk) {
  auto lev = ms.levels(k, n);
  if (static_cast<int64_t>(lev.size()) != n) {
    throw EngineError("HDLM_INVALID_ARGUMENT", "the metaschedule covers " + std::to_string(lev.size()) +
                                                   " positions, fewer than the " + std::to_string(n) + " asked for");
  }
  const int64_t ns = ms.num_settled(k);
  std::vector<uint8_t> settled(n, 0);
  for (int64_t l = 0; l < n; ++l) settled[l] = l < ns;
  std::vector<uint8_t> act;
  StepPlan p = plan_times(lev, n, ms.worthless(), settled, eps, act);
  const int64_t se = ns > 0 ? ns - 1 : -1;
  int64_t ae = se;
  for (int64_t l = 0; l < n; ++l)
    if (act[l]) ae = l;
  const float f_aeps = static_cast<float>(10 * eps);
  p.den.assign(n, 0);
  for (int64_t l = 0; l < n; ++l) p.den[l] = p.t[l] == f_aeps;
  p.act = std::move(act);
  p.settled = std::move(settled);
  p.mask = attention_mask(n, se, ae, ctx, blk, ctx == ContextAttention::BlockCausal ? ms.width() : 0, false);
  return p;
}

StepPlan t_and_mask_ar(const MetaSchedule& ms, int64_t k, int64_t n, double eps, ContextAttention ctx,
                       BlockAttention blk) {
  auto shifted = ms.levels(k, n - 1);
  if (static_cast<int64_t>(shifted.size()) != n - 1) {
    throw EngineError("HDLM_INVALID_ARGUMENT", "the metaschedule covers fewer positions than the context length");
  }
  std::vector<int64_t> lev;
  lev.reserve(n);
  lev.push_back(0);
  lev.insert(lev.end(), shifted.begin(), shifted.end());
  const int64_t ns = ms.num_settled(k);
  std::vector<uint8_t> lvl0(n, 0);
  for (int64_t l = 0; l < n; ++l) lvl0[l] = l < ns;
  std::vector<uint8_t> act;
  StepPlan p = plan_times(lev, n, ms.worthless(), lvl0, eps, act);
  int64_t first = -1, last = -1;
  for (int64_t l = 0; l < n; ++l)
    if (act[l]) {
      if (first < 0) first = l;
      last = l;
    }
  if (first >= 0) p.t[first] = static_cast<float>(eps);
  int64_t se = ns > 0 ? ns - 1 : -1;
  const int64_t ae = last >= 0 ? last : se;
  if (se >= 0) se += 1;
  const float f_aeps = static_cast<float>(10 * eps);
  p.den.assign(n, 0);
  for (int64_t l = 0; l < n; ++l) p.den[l] = p.t[l] == f_aeps;
  p.act = std::move(act);
  p.settled.assign(n, 0);
  for (int64_t l = 0; l < n; ++l) p.settled[l] = l <= ns;
  p.mask = attention_mask(n, se, ae, ctx, blk, ctx == ContextAttention::BlockCausal ? ms.width() + 1 : 0, true);
  return p;
}

}  // namespace hdlm
