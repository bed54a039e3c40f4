// Upstream's gamma samplers: the NAR loop (hdlm/gamma_hybrid/sampling.py: get_sa_sampling_fn)
// and the SAR loop (hdlm/gamma_hybrid/sampling_sar.py: get_sa_sampling_fn), both with the
// analytic predictor (AnalyticPredictor.update_fn), log-linear noise (noise_lib.py:
// LogLinearNoise) and the QGamma or absorbing graph (graph_lib.py), driven by a metaschedule
// whose per-step times and masks come from engine/metaschedule.cc.
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <vector>

#include "engine/metaschedule.h"
#include "engine/samplers/common.h"

namespace hdlm {
namespace {

using at::indexing::Slice;

// LogLinearNoise.total_noise with its fixed ε_n = 0.005 (config sigma_min/max are ignored):
// −log1p(f32(−(1 − ε_n)) · t).
at::Tensor total_noise(const at::Tensor& t) { return -at::log1p(t * (-(1.0 - 0.005))); }

struct GammaSampler {
  const GammaForwardFn& forward;
  const GammaSampleOptions& o;
  int64_t V;  // states including the mask
  at::Device device;
  at::Generator gen;

  // graph.sample_limit (graph_lib.py: QGamma.sample_limit, Absorbing.sample_limit) on a CPU
  // generator seeded with the sampling seed: rand [B,L] first, then randint [B,L].
  at::Tensor sample_limit(int64_t B, int64_t L) {
    auto cpu_gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    const int64_t N = V - 1;
    const auto long_opts = at::TensorOptions().dtype(at::kLong);
    if (o.graph == GammaGraph::Absorb) return at::full({B, L}, N, long_opts);
    if (o.gamma == 1.0) return at::randint(0, N, {B, L}, cpu_gen, long_opts);
    auto sigma_max = at::scalar_tensor(4.0, at::kFloat);
    auto absorbing = 1 - at::exp(-sigma_max * (1 - o.gamma));
    auto uniform = (1 - at::exp(-sigma_max * o.gamma)) * at::exp(-sigma_max * (1 - o.gamma));
    auto rate = absorbing / (absorbing + uniform);
    auto r = at::rand({B, L}, cpu_gen, at::TensorOptions().dtype(at::kFloat));
    auto z = at::randint(0, N, {B, L}, cpu_gen, long_opts);
    return at::where(r < rate, at::full({B, L}, N, long_opts), z);
  }

  // graph_lib.py: QGamma.staggered_score (Absorbing's without the uniform branch).
  // s: [B, L, V]; dsigma: [B, L].
  at::Tensor staggered(const at::Tensor& s, const at::Tensor& dsigma) {
    auto ds = dsigma.unsqueeze(-1);
    auto ep = ds.exp();
    auto score_abs = s * ep;
    auto extra = (1 - ep.squeeze(-1)) * s.sum(-1);
    score_abs.select(-1, V - 1).add_(extra);
    if (o.graph == GammaGraph::Absorb) return score_abs;
    const int64_t N = V - 1;
    auto en = (-ds).exp();
    auto head = s.narrow(-1, 0, N);
    auto uni = ((en - 1) / (static_cast<double>(N) * en)) * head.sum(-1, true) + head / en;
    auto score_uni = at::cat({uni, s.narrow(-1, N, 1)}, -1);
    return (1 - o.gamma) * score_abs + o.gamma * score_uni;
  }

  // graph_lib.py: QGamma.transp_transition (Absorbing's likewise): [B, L, V] fp32.
  at::Tensor transp_transition(const at::Tensor& x, const at::Tensor& dsigma) {
    const int64_t B = x.size(0), L = x.size(1), N = V - 1;
    auto ds = dsigma.unsqueeze(-1);
    auto is_mask = (x == N).unsqueeze(-1);
    if (o.graph == GammaGraph::Absorb) {
      auto edge = (-ds).exp() * at::one_hot(x, V).to(at::kFloat);
      return edge + at::where(is_mask, 1 - (-ds).exp(), at::zeros_like(ds));
    }
    auto A = at::exp(ds * (-(1 - o.gamma)));
    auto G = at::exp(ds * (-o.gamma));
    auto trans = at::zeros({B, L, V}, ds.options());
    // absorbing rows: 1 − A on every non-mask state, 1 on the mask
    auto absorb_rows = at::cat({(1 - A).expand({B, L, N}), at::ones({B, L, 1}, ds.options())}, -1);
    // other rows: A(1 − G)/N on every non-mask state (the stay mass is added at x below), 0 on the mask
    auto uni = (A * (1 - G)) / static_cast<double>(N);
    auto other_rows = at::cat({uni.expand({B, L, N}), at::zeros({B, L, 1}, ds.options())}, -1);
    trans = at::where(is_mask, absorb_rows, other_rows).contiguous();
    auto stay = (A * G).squeeze(-1);
    auto not_mask = is_mask.squeeze(-1).logical_not();
    auto idx = x.clamp_max(N - 1).unsqueeze(-1);
    auto add = at::where(not_mask, stay, at::zeros_like(stay)).unsqueeze(-1);
    trans.scatter_add_(-1, idx, add);
    return trans;
  }

  // catsample.py: sample_categorical: argmax P / (−ln(u + 1e−10)) with one float64 draw of [B, L, V].
  at::Tensor categorical(const at::Tensor& probs) {
    check_sampled_rows(probs);
    auto u = at::rand(probs.sizes(), gen, at::TensorOptions().dtype(at::kDouble).device(device)) + 1e-10;
    return (probs.to(at::kDouble) / (-u.log())).argmax(-1);
  }

  at::Tensor run(const std::atomic<bool>& abort, const StepCallback& on_step) {
    const int64_t B = o.batch_size, L = o.context_length;
    MetaSchedule ms(o.schedule);
    if (ms.worthless() < 2) {
      throw EngineError("HDLM_INVALID_ARGUMENT", "the metaschedule needs at least 2 noise levels (tau >= 2)");
    }
    const double active_eps = 10 * o.eps;
    const double step_size = (1 - 2 * active_eps) / static_cast<double>(ms.worthless() - 1);
    const double factor = o.sar ? 0.9 : 0.99;
    const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device);
    const auto f_opts = at::TensorOptions().dtype(at::kFloat).device(device);
    auto full = sample_limit(B, L).to(device);
    at::Tensor x = o.sar ? at::empty({B, 0}, long_opts) : full;
    int64_t window = o.sar ? 0 : L;
    const int64_t last = ms.max_step(L);
    const int64_t total = std::max<int64_t>(0, last - 1);
    for (int64_t k = 1; k < last; ++k) {
      if (abort.load(std::memory_order_relaxed)) throw EngineError("HDLM_ABORTED", "sampling was aborted");
      int64_t n = L;
      if (o.sar) {
        n = std::min(ms.relevant_length(k) + ms.num_settled(k), L);
        if (n > window) {
          x = at::cat({x, full.index({Slice(), Slice(window, n)})}, 1);
        }
        window = n;
      }
      if (n <= 0) continue;  // upstream would call the model on an empty window; nothing to do
      auto plan = t_and_mask(ms, k, n, o.eps, o.context_attention, o.block_attention);
      auto bool_opts = at::TensorOptions().dtype(at::kBool);
      auto t = at::from_blob(plan.t.data(), {n}, at::kFloat).clone().to(device);
      auto den = at::from_blob(plan.den.data(), {n}, at::kByte).to(at::kBool).to(device);
      auto act = at::from_blob(plan.act.data(), {n}, at::kByte).to(at::kBool).to(device);
      auto settled = at::from_blob(plan.settled.data(), {n}, at::kByte).to(at::kBool).to(device);
      auto mask = at::from_blob(plan.mask.data(), {n, n}, at::kByte).to(bool_opts).to(device);
      // step = Δ, (factor·εa) where den, (factor·eps) where settled, clamped to [factor·eps, Δ] (fp32)
      auto step = at::full({n}, step_size, f_opts);
      step.masked_fill_(den, factor * active_eps);
      step.masked_fill_(settled, factor * o.eps);
      auto tb = t.unsqueeze(0).expand({B, n});
      auto sb = step.unsqueeze(0).expand({B, n}).clamp(factor * o.eps, step_size);
      auto denb = den.unsqueeze(0).expand({B, n});
      auto actb = act.unsqueeze(0).expand({B, n});
      auto maskb = mask.unsqueeze(0).expand({B, n, n}).contiguous();
      auto positions = at::arange(n, long_opts).unsqueeze(0).expand({B, n}).contiguous();

      // the analytic predictor (AnalyticPredictor.update_fn)
      auto curr_sigma = total_noise(tb);
      auto next_sigma = total_noise(tb - sb);
      auto dsigma = curr_sigma - next_sigma;
      auto log_score = forward(x, curr_sigma.contiguous(), positions, maskb);
      auto probs = staggered(log_score.exp(), dsigma) * transp_transition(x, dsigma);
      auto last_col = probs.select(-1, V - 1);
      last_col.masked_fill_(denb, 0.0);
      auto x_new = categorical(probs);
      x = at::where(actb, x_new, x);

      // the full [B, L] picture: positions beyond the SAR window show their limit sample
      const bool window = o.step_tokens && n < L && reports(o.step_every, k, total);
      report_step(on_step, o.step_tokens, o.step_every,
                  window ? at::cat({x, full.index({Slice(), Slice(n, L)})}, 1) : x, k, total);
    }
    // Every shipped schedule ends with the window at L; a schedule that stops short leaves the
    // tail at its limit sample (upstream would return the shorter window).
    if (x.size(1) < L) x = at::cat({x, full.index({Slice(), Slice(x.size(1), L)})}, 1);
    return x.cpu();
  }
};

}  // namespace

at::Tensor run_gamma_sampler(const GammaForwardFn& forward, const GammaSampleOptions& options, const at::Device& device,
                             const std::atomic<bool>& abort, const StepCallback& on_step) {
  GammaSampler sampler{forward, options, options.vocab_size, device, make_sampling_generator(device, options.seed)};
  return sampler.run(abort, on_step);
}

}  // namespace hdlm
