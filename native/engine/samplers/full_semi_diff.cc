// Semantics follow hdlm-reference §4.0–§4.3 exactly in reference mode, including the order of
// random draws (float64 uniforms from one generator seeded like torch.manual_seed) and the fp32
// arithmetic of the thresholds. This file is compiled with -ffp-contract=off so that the
// host-side fp32 expressions round once per operation, as PyTorch's kernels do.
#include "sampler.h"

#include <algorithm>
#include <deque>
#include <random>
#include <vector>

#ifdef HDLM_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif
#include <ATen/CPUGeneratorImpl.h>

#include "fast_forward.h"
#include "fused_kernels.h"

namespace hdlm {
namespace {

using at::indexing::Slice;

}  // namespace

at::Generator make_sampling_generator(const at::Device& device, uint64_t seed) {
#ifdef HDLM_WITH_CUDA
  if (device.is_cuda()) {
    auto gen = at::cuda::detail::createCUDAGenerator(device.index());
    gen.set_current_seed(seed);
    return gen;
  }
#endif
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

namespace {

// Fast mode: one sample per row of float32 logits [N, V] from softmax(l / T) (argmax for T = 0) —
// in distribution, not in bits, what upstream's Gumbel-max draws. CUDA: one fused kernel (noise
// keyed by the seed and a per-call counter); CPU: inverse-CDF sampling (one uniform per row)
// rather than one exponential draw per logit.
at::Tensor sample_fast(const at::Tensor& l, double temperature, uint64_t seed, uint64_t& calls, at::Generator& gen) {
  if (l.size(0) == 0) return at::empty({0}, l.options().dtype(at::kLong));
  auto fused = fused::gumbel_argmax(l, temperature, seed, calls++);
  if (fused.defined()) return fused;
  if (temperature == 0) return l.argmax(-1);
  if (l.is_cuda()) {  // no fused kernels: argmax(l/T + Gumbel) = argmax(l − T·ln E), E ~ Exp(1)
    auto log_e = at::empty(l.sizes(), l.options()).exponential_(1.0, gen).log_();
    return at::sub(l, log_e, temperature).argmax(-1);
  }
  return at::multinomial(at::softmax(l / temperature, -1), 1, /*replacement=*/false, gen).squeeze(1);
}

// Where a step gets its logits from. Reference: the full [B, n, V] logits of this step's
// forward. Fast: hidden states, recomputed only when x changed, and the head on demand.
class Logits {
 public:
  virtual ~Logits() = default;
  // Called at the start of every step with the current prefix x [B, n].
  virtual void begin_step(const at::Tensor& x) = 0;
  // Logits [N, V] of the positions where `sel` [B, n] is true (row-major order).
  virtual at::Tensor rows(const at::Tensor& sel) = 0;
  // Tells the source that x was modified (the fast source then recomputes on next use).
  virtual void changed() = 0;
  // Flat indices of the rows of the last rows() call (fast source), or undefined.
  virtual at::Tensor last_index() const { return {}; }
};

struct Thresholds {
  float p, one_minus_p, eta;  // p = 1 - s/t in fp32 (exactly 1 on the last step)
};

class Sampler {
 public:
  Sampler(const SampleOptions& o, const at::Device& device, bool fast)
      : o_(o), device_(device), fast_(fast), gen_(make_sampling_generator(device, o.seed)) {}

  at::Tensor run(Logits& logits, const std::atomic<bool>& abort, const StepCallback& on_step) {
    const int64_t B = o_.batch_size, L = o_.context_length;
    const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device_);
    auto x = at::full({B, L}, o_.mask_id, long_opts);
    if (o_.prompt_length > 0) {
      prompt_ = at::tensor(o_.prompt, at::TensorOptions().dtype(at::kInt)).view({B, o_.prompt_length}).to(long_opts);
      prompt_has_mask_ = std::find(o_.prompt.begin(), o_.prompt.end(), o_.mask_id) != o_.prompt.end();
      impose_prompt(x);
    }
    // τ = linspace(1, eps, steps + 1) in fp32 on the sampling device (upstream: on CUDA).
    auto tau_t = at::linspace(1.0, o_.eps, o_.steps + 1, at::TensorOptions().dtype(at::kFloat).device(device_)).cpu();
    const std::vector<float> tau(tau_t.data_ptr<float>(), tau_t.data_ptr<float>() + tau_t.numel());

    const int64_t n_blocks = o_.semi ? (L + o_.block_size - 1) / o_.block_size : 1;
    const int64_t total = n_blocks * o_.steps;
    int64_t done = 0;
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t start = o_.semi ? blk * o_.block_size : 0;
      const int64_t end = o_.semi ? std::min(start + o_.block_size, L) : L;
      at::Tensor in_block;
      if (o_.semi) {
        in_block = at::zeros({B, end}, long_opts.dtype(at::kBool));
        in_block.index_put_({Slice(), Slice(start, end)}, true);
      }
      for (int64_t i = 0; i < o_.steps; ++i) {
        if (abort.load(std::memory_order_relaxed)) throw EngineError("HDLM_ABORTED", "sampling was aborted");
        auto xs = o_.semi ? x.index({Slice(), Slice(0, end)}).contiguous() : x;
        logits.begin_step(xs);
        const bool last = i == o_.steps - 1;
        // Upstream: p = 1 - s/t on fp32 tensors, exactly 1 on the last step; eta·(1 - p) in fp32.
        Thresholds th;
        th.p = last ? 1.0f : 1.0f - tau[i + 1] / tau[i];
        th.one_minus_p = last ? 0.0f : 1.0f - th.p;
        th.eta = last ? 0.0f : static_cast<float>(o_.eta) * th.one_minus_p;
        step(xs, logits, in_block, th, tau[i], tau[i + 1]);
        if (o_.semi) x.index_put_({Slice(), Slice(0, end)}, xs);
        impose_prompt(x);
        ++done;
        if (on_step) {
          std::vector<int32_t> tokens;
          if (o_.step_tokens) {
            auto cpu = x.to(at::kInt).cpu().contiguous();
            tokens.assign(cpu.data_ptr<int32_t>(), cpu.data_ptr<int32_t>() + cpu.numel());
          }
          on_step(done, total, std::move(tokens));
        }
      }
    }
    return x.cpu();
  }

 private:
  at::Tensor uniform(at::IntArrayRef shape) {
    return at::rand(shape, gen_, at::TensorOptions().dtype(fast_ ? at::kFloat : at::kDouble).device(device_));
  }

  // A sample from softmax(l / T) per row (argmax for T = 0). Reference: upstream's float64
  // exp(l) / (-ln u)^T with one uniform per logit. Fast: argmax(l / T - ln(-ln u)) in float32.
  at::Tensor gumbel_argmax(const at::Tensor& rows) {
    if (rows.size(0) == 0) return at::empty({0}, at::TensorOptions().dtype(at::kLong).device(device_));
    if (!fast_) {
      auto l = rows.to(at::kDouble);
      auto g = (-uniform(l.sizes()).log()).pow(o_.temperature);
      return (l.exp() / g).argmax(-1);
    }
    return sample_fast(rows.to(at::kFloat), o_.temperature, o_.seed, fused_calls_, gen_);
  }

  // Writes the tokens sampled for the rows of the last logits.rows(sel) call.
  void write(at::Tensor& x, const at::Tensor& sel, const at::Tensor& values, Logits& logits) {
    if (values.numel() == 0) return;
    auto idx = logits.last_index();
    if (idx.defined()) {
      x.view(-1).index_put_({idx}, values);  // no second nonzero (and host sync) for the mask
    } else {
      x.index_put_({sel}, values);
    }
    logits.changed();
  }

  // Re-masks the selected positions (none on the last step, where 1 - p = 0).
  void remask(at::Tensor& x, const at::Tensor& sel, double one_minus_p, Logits& logits) {
    if (one_minus_p <= 0) return;
    x.index_put_({sel}, o_.mask_id);
    logits.changed();
  }

  void step(at::Tensor& x, Logits& logits, const at::Tensor& in_block, const Thresholds& th, float t, float s) {
    const int64_t B = x.size(0), n = x.size(1);
    auto masked = x == o_.mask_id;
    at::Tensor unmasked;
    if (o_.alg == Algorithm::Acs || o_.alg == Algorithm::RemaskAdhocShuffle) unmasked = masked.logical_not();
    auto restrict = [&](at::Tensor sel) { return in_block.defined() ? sel & in_block : sel; };
    const double p = th.p, one_minus_p = th.one_minus_p, eta = th.eta;

    switch (o_.alg) {
      case Algorithm::Original: {
        auto sel_m = restrict((uniform({B, n}) < p) & masked);
        write(x, sel_m, gumbel_argmax(logits.rows(sel_m)), logits);
        break;
      }
      case Algorithm::Acs: {
        auto u1 = uniform({B, n});
        auto u2 = uniform({B, n});
        auto sel_m = restrict((u1 < p) & masked);
        auto sel_u = restrict((u2 < eta) & unmasked);
        if (fast_) {  // disjoint sets, one pass
          auto sel = sel_m | sel_u;
          write(x, sel, gumbel_argmax(logits.rows(sel)), logits);
          break;
        }
        auto a = gumbel_argmax(logits.rows(sel_m));
        auto b = gumbel_argmax(logits.rows(sel_u));
        write(x, sel_m, a, logits);
        write(x, sel_u, b, logits);
        break;
      }
      case Algorithm::Remask: {
        write(x, masked, gumbel_argmax(logits.rows(masked)), logits);
        remask(x, uniform({B, n}) < one_minus_p, one_minus_p, logits);
        break;
      }
      case Algorithm::RemaskAdhocShuffle: {
        auto sel_u = restrict((uniform({B, n}) < eta) & unmasked);
        if (fast_) {  // disjoint sets, one pass
          auto sel = masked | sel_u;
          write(x, sel, gumbel_argmax(logits.rows(sel)), logits);
        } else {
          auto a = gumbel_argmax(logits.rows(masked));
          auto b = gumbel_argmax(logits.rows(sel_u));
          write(x, masked, a, logits);
          write(x, sel_u, b, logits);
        }
        remask(x, uniform({B, n}) < one_minus_p, one_minus_p, logits);
        break;
      }
      case Algorithm::Remdm: {
        const double alpha_t = 1.0 - static_cast<double>(t), alpha_s = 1.0 - static_cast<double>(s);
        const double sigma = alpha_t > 0 ? std::min(o_.eta, (1.0 - alpha_s) / alpha_t) : o_.eta;
        // Reference: Gumbel over every row (one B·n·V draw), kept on masked rows only, as
        // upstream does. Fast: the masked rows only.
        auto sel = fast_ ? masked : at::ones_like(masked);
        auto q = at::softmax(logits.rows(sel), -1) * (1.0 - sigma);
        q.index_put_({"...", o_.mask_id}, sigma);
        auto chosen = gumbel_argmax((q + 1e-8).log());
        if (!fast_) chosen = chosen.view({B, n}).index({masked});
        write(x, masked, chosen, logits);
        break;
      }
    }
  }

  // Restores the prompt. Only acs, remask and remask_adhoc_shuffle can write to unmasked (and
  // so prompt) positions; otherwise the write would change nothing and is skipped.
  void impose_prompt(at::Tensor& x) {
    if (!prompt_.defined()) return;
    const bool touches_unmasked = o_.alg == Algorithm::Acs || o_.alg == Algorithm::Remask ||
                                  o_.alg == Algorithm::RemaskAdhocShuffle;
    if (touches_unmasked || prompt_has_mask_ || !prompt_imposed_) {
      x.index_put_({Slice(), Slice(0, o_.prompt_length)}, prompt_);
      prompt_imposed_ = true;
    }
  }

  const SampleOptions& o_;
  at::Device device_;
  bool fast_;
  at::Generator gen_;
  uint64_t fused_calls_ = 0;
  at::Tensor prompt_;  // [B, P] int64 on the device, or undefined
  bool prompt_has_mask_ = false, prompt_imposed_ = false;
};

// Classifier-free guidance as upstream intends it (§4.2): the unconditional copy has the prompt
// positions masked; both go through the model as one batch of 2B.
at::Tensor with_guidance(const SampleOptions& o, const at::Tensor& x) {
  auto un_x = x.clone();
  un_x.index_put_({Slice(), Slice(0, o.prompt_length)}, o.mask_id);
  return at::cat({x, un_x});
}

at::Tensor guided(const SampleOptions& o, const at::Tensor& both) {
  auto parts = both.chunk(2, 0);
  return parts[1] + (o.cfg_scale + 1.0) * (parts[0] - parts[1]);
}

class ReferenceLogits : public Logits {
 public:
  ReferenceLogits(const ForwardFn& forward, const SampleOptions& o, const at::Device& device)
      : forward_(forward), o_(o), device_(device) {}
  void begin_step(const at::Tensor& x) override {
    const int64_t B = x.size(0), n = x.size(1);
    auto pos = at::arange(n, at::TensorOptions().dtype(at::kLong).device(device_)).unsqueeze(0).expand({B, n}).contiguous();
    if (o_.cfg_scale > 0) {
      logits_ = guided(o_, forward_(with_guidance(o_, x), at::cat({pos, pos}), at::Tensor()));
    } else {
      logits_ = forward_(x, pos, at::Tensor());
    }
  }
  at::Tensor rows(const at::Tensor& sel) override { return logits_.index({sel}); }
  void changed() override {}

 private:
  const ForwardFn& forward_;
  const SampleOptions& o_;
  at::Device device_;
  at::Tensor logits_;
};

class FastLogits : public Logits {
 public:
  FastLogits(FastForward& model, const SampleOptions& o) : model_(model), o_(o) {}
  void begin_step(const at::Tensor& x) override {
    if (!x_.defined() || x_.sizes() != x.sizes()) stale_ = true;  // semi_diff: the prefix grew
    x_ = x;
  }
  at::Tensor last_index() const override { return idx_; }
  at::Tensor rows(const at::Tensor& sel) override {
    auto idx = idx_ = sel.flatten().nonzero().squeeze(1);
    if (idx.numel() == 0) return at::empty({0, model_.vocab_size()}, at::TensorOptions().dtype(at::kFloat).device(x_.device()));
    if (stale_) {
      hidden_ = model_.hidden(o_.cfg_scale > 0 ? with_guidance(o_, x_) : x_);
      hidden_ = hidden_.reshape({-1, hidden_.size(-1)});
      stale_ = false;
    }
    if (o_.cfg_scale <= 0) return model_.head(hidden_.index_select(0, idx));
    const int64_t half = hidden_.size(0) / 2;
    auto cond = model_.head(hidden_.index_select(0, idx));
    auto uncond = model_.head(hidden_.index_select(0, idx + half));
    return uncond + (o_.cfg_scale + 1.0) * (cond - uncond);
  }
  void changed() override { stale_ = true; }

 private:
  FastForward& model_;
  const SampleOptions& o_;
  at::Tensor x_, hidden_, idx_;
  bool stale_ = true;
};

// Fast mode for full_diff's `original` and `acs` (no guidance): which positions a step samples is
// decided on the host, so the loop never waits for the device. Both algorithms select positions
// with uniforms that do not depend on the logits, so the host can draw them (from its own
// generator) against a host mirror of the mask state. The mirror lags: a sampled value is read
// back asynchronously, and until it arrives the position counts as possibly masked and possibly
// unmasked; the device then applies the selection that matches its actual state (U1 for a masked
// position, U2 for an unmasked one). Prompt positions never change (upstream re-imposes them after
// every step), so they are never selected. Same distribution as reference mode.
class HostSelectedSampler {
 public:
  HostSelectedSampler(FastForward& model, const SampleOptions& o, const at::Device& device)
      : model_(model), o_(o), device_(device), rng_(o.seed ^ 0x9E3779B97F4A7C15ull),
        gen_(make_sampling_generator(device, o.seed)), fused_(device.is_cuda() && fused::available(device)) {}

  static bool applies(const SampleOptions& o) {
    return !o.semi && o.cfg_scale <= 0 && (o.alg == Algorithm::Original || o.alg == Algorithm::Acs);
  }

  at::Tensor run(const std::atomic<bool>& abort, const StepCallback& on_step) {
    const int64_t B = o_.batch_size, L = o_.context_length, N = B * L, P = o_.prompt_length;
    const int64_t M = o_.mask_id;
    const bool acs = o_.alg == Algorithm::Acs;
    std::vector<int64_t> x0(N, M);
    state_.assign(N, kMasked);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t j = 0; j < P; ++j) {
        x0[b * L + j] = o_.prompt[b * P + j];
        state_[b * L + j] = kFixed;
      }
    }
    last_touch_.assign(N, -1);
    auto x = at::tensor(x0, at::TensorOptions().dtype(at::kLong)).to(device_);
    auto tau_t = at::linspace(1.0, o_.eps, o_.steps + 1, at::TensorOptions().dtype(at::kFloat).device(device_)).cpu();
    const std::vector<float> tau(tau_t.data_ptr<float>(), tau_t.data_ptr<float>() + tau_t.numel());
    const auto pinned = at::TensorOptions().dtype(at::kLong).pinned_memory(device_.is_cuda());
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    at::Tensor hidden;
    bool stale = true;
    std::vector<int64_t> idx, flags;
    for (int64_t i = 0; i < o_.steps; ++i) {
      if (abort.load(std::memory_order_relaxed)) throw EngineError("HDLM_ABORTED", "sampling was aborted");
      collect(false);
      const bool last = i == o_.steps - 1;
      const double p = last ? 1.0 : static_cast<double>(1.0f - tau[i + 1] / tau[i]);
      const double eta = last ? 0.0 : static_cast<double>(static_cast<float>(o_.eta) * (1.0f - static_cast<float>(p)));
      idx.clear();
      flags.clear();
      for (int64_t k = 0; k < N; ++k) {
        const uint8_t st = state_[k];
        if (st == kFixed) continue;
        // flag 1: selected if the position is masked (U1 < p); flag 2: selected if unmasked (U2 < eta)
        int64_t f = 0;
        if (st != kUnmasked && uniform(rng_) < p) f |= 1;
        if (acs && st != kMasked && uniform(rng_) < eta) f |= 2;
        if (f) {
          idx.push_back(k);
          flags.push_back(f);
        }
      }
      const int64_t n = static_cast<int64_t>(idx.size());
      if (n > 0) {
        if (stale) {  // the epsilon model has no time input: x unchanged → same hidden states
          hidden = model_.hidden(x.view({B, L})).reshape({N, -1});
          stale = false;
        }
        // One transfer: the indices padded to a multiple of 8 (padding rows index 0 and are never
        // written: a few shapes for the head GEMM's kernel choice), then 2n bool flags
        // (selected-if-masked, selected-if-unmasked).
        const int64_t rows = fused_ ? (n + 7) / 8 * 8 : n;
        const int64_t flag_words = (2 * n + 7) / 8;
        auto host = at::empty({rows + flag_words}, pinned);  // bytes past the 2n flags are never read
        std::fill(std::copy(idx.begin(), idx.end(), host.data_ptr<int64_t>()), host.data_ptr<int64_t>() + rows, 0);
        auto* flag_bytes = reinterpret_cast<uint8_t*>(host.data_ptr<int64_t>() + rows);
        for (int64_t j = 0; j < n; ++j) {
          flag_bytes[j] = flags[j] & 1;
          flag_bytes[n + j] = (flags[j] >> 1) & 1;
        }
        auto dev = host.to(device_, /*non_blocking=*/true);
        auto sel = dev.narrow(0, 0, rows);
        auto f = dev.narrow(0, rows, flag_words).view(at::kByte).narrow(0, 0, 2 * n).view(at::kBool);
        at::Tensor written;
        if (fused_) {  // head on the selected rows, Gumbel-max and the write: four kernels
          auto logits = model_.head_rows(hidden, sel);
          auto keys = fused::gumbel_keys(logits, model_.vocab_size(), o_.temperature, o_.seed, fused_calls_++);
          written = at::empty({n}, x.options());
          fused::write_selected(keys, sel, f.narrow(0, 0, n), f.narrow(0, n, n), x, written, n, M);
        } else {
          auto values = sample(model_.head(hidden.index_select(0, sel)));
          auto current = x.index_select(0, sel);
          auto is_masked = current == M;
          auto take = acs ? at::where(is_masked, f.narrow(0, 0, n), f.narrow(0, n, n)) : is_masked;
          written = at::where(take, values, current);
          x.index_copy_(0, sel, written);
        }
        stale = true;
        // read the written values back without waiting; the mirror catches up when they arrive
        Pending pending{i, idx, at::empty({n}, pinned), {}};
        pending.values.copy_(written, /*non_blocking=*/true);
        if (device_.is_cuda()) pending.ready.record();
        for (const int64_t k : idx) {
          state_[k] = kUnknown;
          last_touch_[k] = i;
        }
        pending_.push_back(std::move(pending));
        // keep at most a few steps in flight: progress and abort stay within a few steps of the GPU
        while (static_cast<int64_t>(pending_.size()) > kMaxInFlight) collect(true, 1);
      }
      if (on_step) {
        std::vector<int32_t> tokens;
        if (o_.step_tokens) {
          auto cpu = x.to(at::kInt).cpu().contiguous();
          tokens.assign(cpu.data_ptr<int32_t>(), cpu.data_ptr<int32_t>() + cpu.numel());
        }
        on_step(i + 1, o_.steps, std::move(tokens));
      }
    }
    return x.view({B, L}).cpu();
  }

 private:
  static constexpr uint8_t kMasked = 0, kUnmasked = 1, kUnknown = 2, kFixed = 3;
  static constexpr int64_t kMaxInFlight = 3;

  struct Pending {
    int64_t step;
    std::vector<int64_t> idx;
    at::Tensor values;  // pinned host copy of the written values
#ifdef HDLM_WITH_CUDA
    at::cuda::CUDAEvent ready;
#else
    struct NoEvent {
      bool query() const { return true; }
      void synchronize() const {}
      void record() {}
    } ready;
#endif
  };

  // Applies finished read-backs in order (waiting for at least `wait_for` of them if `wait`).
  void collect(bool wait, int64_t wait_for = 0) {
    while (!pending_.empty()) {
      auto& front = pending_.front();
      if (device_.is_cuda()) {
        if (wait && wait_for > 0) {
          front.ready.synchronize();
        } else if (!front.ready.query()) {
          return;
        }
      }
      const int64_t* v = front.values.data_ptr<int64_t>();
      for (size_t j = 0; j < front.idx.size(); ++j) {
        const int64_t k = front.idx[j];
        if (last_touch_[k] == front.step) state_[k] = v[j] == o_.mask_id ? kMasked : kUnmasked;
      }
      pending_.pop_front();
      if (wait_for > 0) --wait_for;
    }
  }

  at::Tensor sample(const at::Tensor& logits) { return sample_fast(logits, o_.temperature, o_.seed, fused_calls_, gen_); }

  FastForward& model_;
  const SampleOptions& o_;
  at::Device device_;
  std::mt19937_64 rng_;
  at::Generator gen_;
  const bool fused_;
  uint64_t fused_calls_ = 0;
  std::vector<uint8_t> state_;
  std::vector<int64_t> last_touch_;
  std::deque<Pending> pending_;
};

}  // namespace

at::Tensor run_sampler(const ForwardFn& forward, const SampleOptions& options, const at::Device& device,
                       const std::atomic<bool>& abort, const StepCallback& on_step) {
  if (options.shifted) return run_shifted_sampler(forward, options, device, abort, on_step);
  ReferenceLogits logits(forward, options, device);
  return Sampler(options, device, false).run(logits, abort, on_step);
}

at::Tensor run_fast_sampler(FastForward& model, const SampleOptions& options, const at::Device& device,
                            const std::atomic<bool>& abort, const StepCallback& on_step) {
  if (HostSelectedSampler::applies(options)) return HostSelectedSampler(model, options, device).run(abort, on_step);
  FastLogits logits(model, options);
  return Sampler(options, device, true).run(logits, abort, on_step);
}

}  // namespace hdlm
