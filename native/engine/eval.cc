#include "engine/eval.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/finite.h"

namespace hdlm {

void eval_unsupported(const std::string& op, const std::string& family) {
  throw EngineError("HDLM_UNSUPPORTED", "evaluation '" + op + "' is not supported by a " + family + " model");
}

namespace {

void check_request(const EvalRequest& r) {
  if (r.rows < 1 || r.length < 1 || static_cast<int64_t>(r.tokens.size()) != r.rows * r.length) {
    throw EngineError("HDLM_INVALID_ARGUMENT", "evaluate: tokens must hold rows × length ids");
  }
}

at::Tensor rows_tensor(const EvalRequest& r) {
  return at::tensor(r.tokens, at::kInt).view({r.rows, r.length}).to(at::kLong);
}

// Σ over the selected rows of CE(logits_row, target): logsumexp − the target's logit, in fp32.
at::Tensor cross_entropy_rows(const at::Tensor& logits2d, const at::Tensor& target) {
  auto l = logits2d.to(at::kFloat);
  return at::logsumexp(l, {-1}) - l.gather(1, target.unsqueeze(1)).squeeze(1);
}

}  // namespace

EvalResult eval_mc_loglik(const EvalForward& forward, const at::Device& device, const EvalRequest& r,
                          const std::atomic<bool>& abort) {
  check_request(r);
  if (r.batch_size < 1 || r.repetitions < 1 || r.draws_per_forward < 1 ||
      !(r.sampling_eps >= 0.0 && r.sampling_eps <= 1.0)) {
    throw EngineError("HDLM_INVALID_ARGUMENT",
                      "evaluate: batch_size, repetitions and draws_per_forward ≥ 1, sampling_eps in [0, 1]");
  }
  if (!r.row_seeds.empty() && static_cast<int64_t>(r.row_seeds.size()) != r.rows) {
    throw EngineError("HDLM_INVALID_ARGUMENT", "evaluate: row_seeds must hold one seed per row");
  }
  const int64_t B = r.batch_size, L = r.length, D = r.draws_per_forward;
  // one generator per row (row_seeds), else one for all rows (seed)
  std::vector<at::Generator> gens;
  if (r.row_seeds.empty()) {
    gens.push_back(at::make_generator<at::CPUGeneratorImpl>(r.seed));
  } else {
    for (const auto s : r.row_seeds) gens.push_back(at::make_generator<at::CPUGeneratorImpl>(s));
  }
  auto all = rows_tensor(r);
  auto positions =
      at::arange(L, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(0).expand({D * B, L}).contiguous();
  auto offsets = at::arange(B, at::kFloat) / static_cast<float>(B);
  const auto mask_token = at::full({}, r.mask_id, at::kLong);
  EvalResult out;
  out.rows = r.rows;
  out.cols = r.repetitions;
  out.values.assign(static_cast<size_t>(r.rows * r.repetitions), 0.0);

  // The draws waiting for the next forward: their inputs on the host, where their values go.
  struct Draw {
    int64_t row, rep;
    at::Tensor noisy, target, masked, p_mask;  // [B, L] ×3 (CPU), [B]
  };
  std::vector<Draw> pending;
  // One forward of every pending draw (its B rows each, in order); each draw's value is the sum
  // of its rows' Σ_masked CE / p, over B; one copy to the host per forward.
  const auto run_pending = [&]() {
    if (pending.empty()) return;
    if (abort.load()) throw EngineError("HDLM_ABORTED", "evaluation aborted");
    const int64_t n = static_cast<int64_t>(pending.size());
    std::vector<at::Tensor> noisy, target, masked, p_mask;
    for (const auto& d : pending) {
      noisy.push_back(d.noisy);
      target.push_back(d.target);
      masked.push_back(d.masked);
      p_mask.push_back(d.p_mask);
    }
    auto masked_host = at::cat(masked);  // [n·B, L]
    auto logits = forward(at::cat(noisy).to(device), positions.narrow(0, 0, n * B));
    auto m = masked_host.to(device);
    auto scored = logits.index({m});
    check_finite_rows(scored, [&](int64_t k) {
      auto at = masked_host.nonzero()[k];
      const int64_t row_of_batch = at[0].item<int64_t>();
      const auto& d = pending[static_cast<size_t>(row_of_batch / B)];
      return "at row " + std::to_string(d.row) + ", draw " + std::to_string(d.rep) + " (sample " +
             std::to_string(row_of_batch % B) + " of the batch, position " + std::to_string(at[1].item<int64_t>()) +
             ")";
    });
    auto ce = cross_entropy_rows(scored, at::cat(target).to(device).index({m}));
    auto w = at::cat(p_mask).unsqueeze(1).expand({n * B, L}).to(device).index({m});
    // back in place, zero where unmasked, so that each draw's B·L terms sum apart
    auto terms = at::zeros({n * B, L}, ce.options()).index_put_({m}, ce / w);
    auto sums = terms.view({n, B * L}).to(at::kDouble).sum(1).cpu().contiguous();
    const double* s = sums.data_ptr<double>();
    for (int64_t g = 0; g < n; ++g) {
      const auto& d = pending[static_cast<size_t>(g)];
      out.values[static_cast<size_t>(d.row * r.repetitions + d.rep)] = s[g] / static_cast<double>(B);
    }
    pending.clear();
  };

  for (int64_t i = 0; i < r.rows; ++i) {
    auto& gen = gens[r.row_seeds.empty() ? 0 : static_cast<size_t>(i)];
    auto seq = all[i].unsqueeze(0).expand({B, L});
    for (int64_t rep = 0; rep < r.repetitions; ++rep) {
      if (abort.load()) throw EngineError("HDLM_ABORTED", "evaluation aborted");
      // Draw order as upstream's _forward_process: u0 (1 value), then the [B, L] mask uniforms.
      auto u0 = at::rand({1}, gen, at::kFloat);
      auto t = at::fmod(u0 + offsets, 1.0);
      auto p_mask = (1.0 - r.sampling_eps) * t + r.sampling_eps;  // [B]
      auto u = at::rand({B, L}, gen, at::kFloat);
      auto masked = u < p_mask.unsqueeze(1);  // [B, L]
      if (!masked.any().item<bool>()) {
        // upstream divides by zero here; the draw is left out, and said so apart from the values
        out.empty_draws.push_back(static_cast<int32_t>(i * r.repetitions + rep));
        continue;
      }
      pending.push_back({i, rep, at::where(masked, mask_token, seq), seq, masked, p_mask});
      if (static_cast<int64_t>(pending.size()) == D) run_pending();
    }
  }
  run_pending();
  return out;
}

EvalResult eval_causal_nll(const EvalForward& forward, const at::Device& device, const EvalRequest& r,
                           const std::atomic<bool>& abort) {
  check_request(r);
  if (r.length < 2) throw EngineError("HDLM_INVALID_ARGUMENT", "evaluate: causal_nll needs at least 2 tokens per row");
  const int64_t B = std::max<int64_t>(1, r.batch_size);
  auto all = rows_tensor(r).to(device);
  EvalResult out;
  out.rows = r.rows;
  out.cols = 1;
  for (int64_t start = 0; start < r.rows; start += B) {
    if (abort.load()) throw EngineError("HDLM_ABORTED", "evaluation aborted");
    const int64_t n = std::min(B, r.rows - start);
    auto x = all.narrow(0, start, n);
    auto logits = forward(x, at::Tensor());  // [n, L, V]
    const int64_t V = logits.size(-1);
    auto pred = logits.narrow(1, 0, r.length - 1).reshape({-1, V});
    check_finite_rows(pred, [&](int64_t k) {
      return "at row " + std::to_string(start + k / (r.length - 1)) + ", position " +
             std::to_string(k % (r.length - 1));
    });
    auto target = x.narrow(1, 1, r.length - 1).reshape({-1});
    auto ce = cross_entropy_rows(pred, target).view({n, r.length - 1}).sum(1).to(at::kDouble).cpu().contiguous();
    for (int64_t k = 0; k < n; ++k) out.values.push_back(ce.data_ptr<double>()[k]);
  }
  return out;
}

}  // namespace hdlm
