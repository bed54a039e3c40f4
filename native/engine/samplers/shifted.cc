// Upstream's next-token ("shifted") samplers (hdlm/epsilon_hybrid/sample.py: full_diff_shifted,
// semi_diff_shifted), natively, in upstream's exact semantics (float64 uniforms in upstream's
// order, float64 Gumbel-max) in either mode.
#include <algorithm>
#include <vector>

#include "engine/metaschedule.h"
#include "engine/samplers/common.h"

namespace hdlm {
namespace {

using at::indexing::Slice;

struct ShiftedSampler {
  const ForwardFn& forward;
  const SampleOptions& o;
  at::Device device;
  at::Generator gen;
  at::Tensor prompt;  // [B, P] int64 on the device, or undefined

  at::Tensor uniform(at::IntArrayRef shape) { return uniform_f64(shape, gen, device); }

  at::Tensor gumbel_argmax(const at::Tensor& rows) { return gumbel_argmax_f64(rows, o.temperature, gen, device); }

  // Model call with an optional attention mask, with guidance (common.h) when cfg_scale > 0.
  at::Tensor logits_masked(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& mask) {
    if (o.cfg_scale <= 0) return forward(x, positions, mask);
    return guided(o, forward(with_guidance(o, x), at::cat({positions, positions}),
                             mask.defined() ? at::cat({mask, mask}) : mask));
  }

  // Repetition penalty of the shifted samplers: counts of every non-mask token now in x
  // (all rows) are ADDED to the running frequencies, then rows are divided by
  // 1 + (rp − 1)·freq/max(freq). The frequency vector has the logits' width (upstream sizes it
  // dim + 1, the same thing for the released models).
  at::Tensor freq;
  void count_tokens(const at::Tensor& tokens) {
    auto present = tokens.masked_select(tokens != o.mask_id);
    if (present.numel() > 0) freq.index_add_(0, present, at::ones({present.numel()}, freq.options()));
  }
  at::Tensor penalize(const at::Tensor& rows, const at::Tensor& x) {
    auto present = x.masked_select(x != o.mask_id);
    if (present.numel() == 0) return rows;
    count_tokens(present);
    auto mx = freq.max();
    if (!(mx.item<float>() > 0)) return rows;
    auto penalty = 1 + (o.repetition_penalty - 1.0) * (freq / mx);
    return rows / penalty;
  }

  // full_diff_shifted: position l predicts the token at l + 1.
  at::Tensor run_full_shifted(const std::atomic<bool>& abort, const StepCallback& on_step) {
    const int64_t B = o.batch_size, L = o.context_length;
    const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device);
    auto x = at::full({B, L}, o.mask_id, long_opts);
    x.index_put_({Slice(), 0}, o.bos_id);
    if (o.prompt_length > 0) {
      prompt = prompt_tensor(o, device);
      impose_prompt(x);  // once: the prompt overwrites BOS and is not re-imposed
    }
    auto positions = at::arange(L, long_opts).unsqueeze(0).expand({B, L}).contiguous();
    const std::vector<float> tau = time_grid(o.steps, o.eps, device);
    for (int64_t i = 0; i < o.steps && L > 1; ++i) {
      if (abort.load(std::memory_order_relaxed)) throw EngineError("HDLM_ABORTED", "sampling was aborted");
      auto nxt = x.narrow(1, 1, L - 1);  // a view: writes go into x
      auto need = nxt == o.mask_id;
      if (!need.any().item<bool>()) break;
      auto all = logits_masked(x, positions, at::Tensor());
      if (!freq.defined()) freq = at::zeros({all.size(-1)}, at::TensorOptions().dtype(at::kFloat).device(device));
      auto rows = all.narrow(1, 0, L - 1).index({need});
      if (i > 0) rows = penalize(rows, x);
      const bool last = i == o.steps - 1;
      const float t = tau[i], s = tau[i + 1];
      const float p = last ? 1.0f : 1.0f - s / t;
      const float one_minus_p = last ? 0.0f : 1.0f - p;
      const int64_t N = rows.size(0);
      at::Tensor y;
      switch (o.alg) {
        case Algorithm::Original:
        case Algorithm::Acs: {  // upstream's acs here is identical to original (its eta is unused)
          y = at::full({N}, o.mask_id, long_opts);
          auto take = uniform({N}) < static_cast<double>(p);
          if (take.any().item<bool>()) y.index_put_({take}, gumbel_argmax(rows.index({take})));
          break;
        }
        case Algorithm::Remask: {
          y = gumbel_argmax(rows);
          y.index_put_({uniform({N}) < static_cast<double>(one_minus_p)}, o.mask_id);
          break;
        }
        case Algorithm::RemaskAdhocShuffle: {
          y = gumbel_argmax(rows);
          auto existing = nxt != o.mask_id;
          if (existing.any().item<bool>()) {
            const float shuffle = 0.015f * one_minus_p;
            auto sh = existing & (uniform({B, L - 1}) < static_cast<double>(shuffle));
            const int64_t count = sh.sum().item<int64_t>();
            if (count > 0) {
              // Upstream re-draws them from the FIRST `count` rows of the masked positions' logits
              // (unrelated rows); with more shuffles than rows it fails.
              if (count > N) {
                throw EngineError("HDLM_UNSUPPORTED",
                                  "full_diff_shifted remask_adhoc_shuffle: " + std::to_string(count) +
                                      " tokens to shuffle but only " + std::to_string(N) +
                                      " logit rows (upstream fails the same way here)");
              }
              nxt.index_put_({sh}, gumbel_argmax(rows.narrow(0, 0, count)));
            }
          }
          y.index_put_({uniform({N}) < static_cast<double>(one_minus_p)}, o.mask_id);
          break;
        }
        case Algorithm::Remdm: {  // eta fixed at 0.015 upstream
          const double alpha_t = 1.0 - static_cast<double>(t), alpha_s = 1.0 - static_cast<double>(s);
          const double sigma = alpha_t > 0 ? std::min(0.015, (1.0 - alpha_s) / alpha_t) : 0.015;
          auto q = at::softmax(rows, -1) * (1.0 - sigma);
          q.index_put_({"...", o.mask_id}, sigma);
          y = gumbel_argmax((q + 1e-8).log());
          break;
        }
      }
      nxt.index_put_({need}, y);
      report_step(on_step, o.step_tokens, o.step_every, x, i + 1, o.steps);
    }
    return x.cpu();
  }

  // semi_diff_shifted: metaschedule-driven, attention masks from t_and_mask_ar (upstream
  // hdlm/metaschedule_utils.py: compute_t_and_attn_autoregressive).
  at::Tensor run_semi_shifted(const std::atomic<bool>& abort, const StepCallback& on_step) {
    const int64_t B = o.batch_size, L = o.context_length;
    const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device);
    const auto f_opts = at::TensorOptions().dtype(at::kFloat).device(device);
    if (o.alg == Algorithm::RemaskAdhocShuffle) {
      throw EngineError("HDLM_UNSUPPORTED",
                        "semi_diff_shifted cannot run remask_adhoc_shuffle (upstream raises a shape error as soon as a "
                        "token is unmasked)");
    }
    MetaSchedule ms(o.schedule);
    if (ms.worthless() < 2)
      throw EngineError("HDLM_INVALID_ARGUMENT", "the metaschedule needs at least 2 noise levels (tau >= 2)");
    auto x = at::full({B, L}, o.mask_id, long_opts);
    x.index_put_({Slice(), 0}, o.bos_id);
    if (o.prompt_length > 0) {
      prompt = prompt_tensor(o, device);
      impose_prompt(x);
    }
    auto positions = at::arange(L, long_opts).unsqueeze(0).expand({B, L}).contiguous();
    const int64_t K = ms.max_step(L);
    const int64_t total = std::max<int64_t>(0, K - 1);
    auto to_bool = [&](std::vector<uint8_t>& v, at::IntArrayRef shape) {
      return at::from_blob(v.data(), shape, at::kByte).to(at::kBool).to(device);
    };
    for (int64_t i = 1; i < K && L > 1; ++i) {
      if (abort.load(std::memory_order_relaxed)) throw EngineError("HDLM_ABORTED", "sampling was aborted");
      auto plan = t_and_mask_ar(ms, i, L, o.eps, o.context_attention, o.block_attention);
      auto act = to_bool(plan.act, {L});
      auto nxt = x.narrow(1, 1, L - 1);
      auto need = (nxt == o.mask_id) & act.narrow(0, 1, L - 1).unsqueeze(0);
      if (!need.any().item<bool>()) {
        report_step(on_step, o.step_tokens, o.step_every, x, i, total);
        continue;
      }
      auto t = at::from_blob(plan.t.data(), {L}, at::kFloat).clone().to(device);
      at::Tensor s = t;
      if (i < K - 1) {
        auto next = t_and_mask_ar(ms, i + 1, L, o.eps, o.context_attention, o.block_attention);
        s = at::from_blob(next.t.data(), {L}, at::kFloat).clone().to(device);
      }
      auto den = to_bool(plan.den, {L});
      auto p = at::where(den, at::ones({L}, f_opts), (1 - s / t).clamp(0.0, 1.0));
      auto mask = to_bool(plan.mask, {L, L}).unsqueeze(0).expand({B, L, L}).contiguous();
      auto all = logits_masked(x, positions, mask);
      if (!freq.defined()) freq = at::zeros({all.size(-1)}, f_opts);
      auto rows = all.narrow(1, 0, L - 1).index({need});
      if (i > 1) rows = penalize(rows, x);
      auto p_next = p.narrow(0, 1, L - 1);
      auto q = p_next.unsqueeze(0).expand({B, L - 1}).index({need});  // fp32 [N]
      const int64_t N = rows.size(0);
      at::Tensor y;
      switch (o.alg) {
        case Algorithm::Original:
        case Algorithm::Acs: {
          // the temperature divides the logits AND enters the Gumbel power (upstream applies it twice)
          auto scaled = rows / std::max(o.temperature, 1e-5);
          y = at::full({N}, o.mask_id, long_opts);
          auto take = uniform({N}) < q;
          at::Tensor fix;
          if (o.alg == Algorithm::Acs) fix = uniform({N}) < 0.015 * (1 - q);
          if (take.any().item<bool>()) y.index_put_({take}, gumbel_argmax(scaled.index({take})));
          if (fix.defined() && fix.any().item<bool>()) y.index_put_({fix}, gumbel_argmax(scaled.index({fix})));
          break;
        }
        case Algorithm::Remask: {
          y = gumbel_argmax(rows);
          y.index_put_({uniform({N}) < (1 - q)}, o.mask_id);
          break;
        }
        case Algorithm::Remdm: {
          // σ = min(0.015, mean(p)/(1 − mean(p))) from the fp32 mean of p[1:] (upstream's
          // "alpha_s = alpha_t" simplification), 0.015 when 1 − mean(p) ≤ 0
          auto alpha_t = 1 - p_next.mean();
          at::Tensor q_xs;
          if (alpha_t.item<float>() > 0) {
            auto ratio = (1 - alpha_t) / alpha_t;
            if (ratio.item<float>() < 0.015f) {
              q_xs = at::softmax(rows, -1) * (1 - ratio);
              q_xs.index_put_({"...", o.mask_id}, ratio);
            }
          }
          if (!q_xs.defined()) {
            q_xs = at::softmax(rows, -1) * (1 - 0.015);
            q_xs.index_put_({"...", o.mask_id}, 0.015);
          }
          y = gumbel_argmax((q_xs + 1e-8).log());
          break;
        }
        case Algorithm::RemaskAdhocShuffle: break;  // refused above
      }
      nxt.index_put_({need}, y);
      count_tokens(y);
      report_step(on_step, o.step_tokens, o.step_every, x, i, total);
    }
    return x.cpu();
  }

  void impose_prompt(at::Tensor& x) {
    if (prompt.defined()) x.index_put_({Slice(), Slice(0, o.prompt_length)}, prompt);
  }
};

}  // namespace

at::Tensor run_full_diff_shifted(const ForwardFn& forward, const SampleOptions& o, const at::Device& device,
                                 const std::atomic<bool>& abort, const StepCallback& on_step) {
  return ShiftedSampler{forward, o, device, make_sampling_generator(device, o.seed), {}}.run_full_shifted(abort,
                                                                                                          on_step);
}

at::Tensor run_semi_diff_shifted(const ForwardFn& forward, const SampleOptions& o, const at::Device& device,
                                 const std::atomic<bool>& abort, const StepCallback& on_step) {
  return ShiftedSampler{forward, o, device, make_sampling_generator(device, o.seed), {}}.run_semi_shifted(abort,
                                                                                                          on_step);
}

}  // namespace hdlm
