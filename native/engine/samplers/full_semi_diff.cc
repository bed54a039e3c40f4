// Upstream's full_diff and semi_diff (hdlm/epsilon_hybrid/sample.py), natively, in two modes:
//   reference — upstream's exact semantics: full logits every step, float64 Gumbel-max
//               exp(l) / (-ln u)^T, every uniform drawn in upstream's order and shapes (float64
//               from one generator seeded like torch.manual_seed), and the fp32 arithmetic of
//               the thresholds (the build's -ffp-contract=off makes each host-side fp32
//               expression round once per operation, as PyTorch's kernels do);
//   fast      — the same algorithms and the same distribution from another random stream:
//               hidden states reused while no token changed, the output head only on the rows
//               sampled this step, Gumbel-max in float32 as argmax(l/T + G) (README, "Fast and
//               reference modes").
// Classifier-free guidance follows what upstream intends (its full_diff and semi_diff fail on
// cfg_scale > 0): see with_guidance in common.h.
#include "engine/samplers/full_semi_diff.h"

#include <algorithm>
#include <vector>

#include "engine/fast_forward.h"
#include "engine/samplers/common.h"

namespace hdlm {

using at::indexing::Slice;

namespace {

struct Thresholds {
  float p, one_minus_p, eta;  // p = 1 - s/t in fp32 (exactly 1 on the last step)
};

}  // namespace

// The step loop of full_diff and semi_diff (semi_diff: blocks of block_size positions, each
// given `steps` steps on the prefix that ends with it), in reference or fast mode.
class FullSemiDiff {
 public:
  FullSemiDiff(const SampleOptions& o, const at::Device& device, bool fast)
      : o_(o),
        device_(device),
        fast_(fast),
        semi_(o.mode == EpsilonMode::SemiDiff),
        gen_(make_sampling_generator(device, o.seed)) {}

  // The starting tokens [B, L]: masks, the prompt, the fixed tokens.
  at::Tensor start() {
    const int64_t B = o_.batch_size, L = o_.context_length;
    auto x = at::full({B, L}, o_.mask_id, at::TensorOptions().dtype(at::kLong).device(device_));
    if (o_.prompt_length > 0) {
      prompt_ = prompt_tensor(o_, device_);
      prompt_has_mask_ = std::find(o_.prompt.begin(), o_.prompt.end(), o_.mask_id) != o_.prompt.end();
      impose_prompt(x);
    }
    if (!o_.fixed_tokens.empty()) {
      auto values = fixed_tensor(o_, device_);
      auto fixed = values >= 0;
      free_ = fixed.logical_not();
      x = at::where(fixed, values, x);
    }
    tau_ = time_grid(o_.steps, o_.eps, device_);
    return x;
  }

  int64_t total_steps() const {
    const int64_t blocks = semi_ ? (o_.context_length + o_.block_size - 1) / o_.block_size : 1;
    return blocks * o_.steps;
  }

  // The prefix step i's forward sees: up to the end of its block (semi_diff), else everything.
  int64_t forward_length(int64_t i) const {
    if (!semi_) return o_.context_length;
    return std::min((i / o_.steps + 1) * o_.block_size, o_.context_length);
  }

  // Step i of total_steps() on x [B, L] (written in place): semi_diff's block i / steps, step
  // i % steps of it, on the prefix that ends with the block.
  void step_at(at::Tensor& x, int64_t i, StepLogits& logits) {
    const int64_t blk = i / o_.steps, si = i % o_.steps, end = forward_length(i);
    if (semi_ && blk != in_block_of_) {
      in_block_ = at::zeros({o_.batch_size, end}, x.options().dtype(at::kBool));
      in_block_.index_put_({Slice(), Slice(blk * o_.block_size, end)}, true);
      in_block_of_ = blk;
    }
    auto xs = semi_ ? x.index({Slice(), Slice(0, end)}).contiguous() : x;
    logits.begin_step(xs);
    step(xs, logits, in_block_, thresholds(si), tau_[si], tau_[si + 1]);
    if (semi_) x.index_put_({Slice(), Slice(0, end)}, xs);
    impose_prompt(x);
  }

  at::Tensor run(StepLogits& logits, const std::atomic<bool>& abort, const StepCallback& on_step) {
    auto x = start();
    const int64_t total = total_steps();
    for (int64_t i = 0; i < total; ++i) {
      if (abort.load(std::memory_order_relaxed)) throw EngineError("HDLM_ABORTED", "sampling was aborted");
      step_at(x, i, logits);
      report_step(on_step, o_.step_tokens, o_.step_every, x, i + 1, total);
    }
    return x.cpu();
  }

 private:
  // Upstream: p = 1 - s/t on fp32 tensors, exactly 1 on the last step; eta·(1 - p) in fp32.
  Thresholds thresholds(int64_t i) const {
    const bool last = i == o_.steps - 1;
    Thresholds th;
    th.p = last ? 1.0f : 1.0f - tau_[i + 1] / tau_[i];
    th.one_minus_p = last ? 0.0f : 1.0f - th.p;
    th.eta = last ? 0.0f : static_cast<float>(o_.eta) * th.one_minus_p;
    return th;
  }

  at::Tensor uniform(at::IntArrayRef shape) {
    return at::rand(shape, gen_, at::TensorOptions().dtype(fast_ ? at::kFloat : at::kDouble).device(device_));
  }

  // A sample from softmax(l / T) per row (argmax for T = 0). Reference: upstream's float64
  // exp(l) / (-ln u)^T with one uniform per logit. Fast: argmax(l / T - ln(-ln u)) in float32.
  at::Tensor gumbel_argmax(const at::Tensor& rows) {
    if (rows.size(0) == 0) return at::empty({0}, at::TensorOptions().dtype(at::kLong).device(device_));
    if (!fast_) return gumbel_argmax_f64(rows, o_.temperature, gen_, device_);
    return sample_fast(rows.to(at::kFloat), o_.temperature, o_.seed, fused_calls_, gen_);
  }

  // Writes the tokens sampled for the rows of the last logits.rows(sel) call.
  void write(at::Tensor& x, const at::Tensor& sel, const at::Tensor& values, StepLogits& logits) {
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
  void remask(at::Tensor& x, const at::Tensor& sel, double one_minus_p, StepLogits& logits) {
    if (one_minus_p <= 0) return;
    x.index_put_({sel}, o_.mask_id);
    logits.changed();
  }

  void step(at::Tensor& x, StepLogits& logits, const at::Tensor& in_block, const Thresholds& th, float t, float s) {
    const int64_t B = x.size(0), n = x.size(1);
    auto masked = x == o_.mask_id;
    at::Tensor unmasked;
    if (o_.alg == Algorithm::Acs || o_.alg == Algorithm::RemaskAdhocShuffle) unmasked = masked.logical_not();
    auto restrict = [&](at::Tensor sel) { return in_block.defined() ? sel & in_block : sel; };
    // Fixed tokens are never masked (the TS layer refuses the mask id there), so only the
    // selections of unmasked positions and the re-masking need to leave them out.
    const at::Tensor free_n = free_.defined() ? free_.narrow(1, 0, n) : at::Tensor();
    auto unfixed = [&](at::Tensor sel) { return free_n.defined() ? sel & free_n : sel; };
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
        auto sel_u = unfixed(restrict((u2 < eta) & unmasked));
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
        remask(x, unfixed(uniform({B, n}) < one_minus_p), one_minus_p, logits);
        break;
      }
      case Algorithm::RemaskAdhocShuffle: {
        auto sel_u = unfixed(restrict((uniform({B, n}) < eta) & unmasked));
        if (fast_) {  // disjoint sets, one pass
          auto sel = masked | sel_u;
          write(x, sel, gumbel_argmax(logits.rows(sel)), logits);
        } else {
          auto a = gumbel_argmax(logits.rows(masked));
          auto b = gumbel_argmax(logits.rows(sel_u));
          write(x, masked, a, logits);
          write(x, sel_u, b, logits);
        }
        remask(x, unfixed(uniform({B, n}) < one_minus_p), one_minus_p, logits);
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
    const bool touches_unmasked =
        o_.alg == Algorithm::Acs || o_.alg == Algorithm::Remask || o_.alg == Algorithm::RemaskAdhocShuffle;
    if (touches_unmasked || prompt_has_mask_ || !prompt_imposed_) {
      x.index_put_({Slice(), Slice(0, o_.prompt_length)}, prompt_);
      prompt_imposed_ = true;
    }
  }

  const SampleOptions& o_;
  at::Device device_;
  bool fast_, semi_;
  at::Generator gen_;
  std::vector<float> tau_;
  uint64_t fused_calls_ = 0;
  at::Tensor prompt_;    // [B, P] int64 on the device, or undefined
  at::Tensor free_;      // [B, L] bool, false at fixed tokens; undefined when none are fixed
  at::Tensor in_block_;  // semi_diff: [B, end] bool, true in block in_block_of_
  int64_t in_block_of_ = -1;
  bool prompt_has_mask_ = false, prompt_imposed_ = false;
};

namespace {

class ReferenceLogits : public StepLogits {
 public:
  ReferenceLogits(const ForwardFn& forward, const SampleOptions& o, const at::Device& device)
      : forward_(forward), o_(o), device_(device) {
    auto values = fixed_tensor(o, device);
    if (values.defined()) fixed_ = values >= 0;
  }
  void begin_step(const at::Tensor& x) override {
    const int64_t B = x.size(0), n = x.size(1);
    auto pos =
        at::arange(n, at::TensorOptions().dtype(at::kLong).device(device_)).unsqueeze(0).expand({B, n}).contiguous();
    if (o_.cfg_scale > 0) {
      logits_ = guided(o_, forward_(with_guidance(o_, x, fixed_), at::cat({pos, pos}), at::Tensor()));
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
  at::Tensor logits_, fixed_;
};

class FastLogits : public StepLogits {
 public:
  FastLogits(FastForward& model, const SampleOptions& o, const at::Device& device) : model_(model), o_(o) {
    auto values = fixed_tensor(o, device);
    if (values.defined()) fixed_ = values >= 0;
  }
  void begin_step(const at::Tensor& x) override {
    if (!x_.defined() || x_.sizes() != x.sizes()) stale_ = true;  // semi_diff: the prefix grew
    x_ = x;
  }
  at::Tensor last_index() const override { return idx_; }
  at::Tensor rows(const at::Tensor& sel) override {
    auto idx = idx_ = sel.flatten().nonzero().squeeze(1);
    if (idx.numel() == 0)
      return at::empty({0, model_.vocab_size()}, at::TensorOptions().dtype(at::kFloat).device(x_.device()));
    if (stale_) {
      hidden_ = model_.hidden(o_.cfg_scale > 0 ? with_guidance(o_, x_, fixed_) : x_);
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
  at::Tensor x_, hidden_, idx_, fixed_;
  bool stale_ = true;
};

}  // namespace

FastStepper::FastStepper(const SampleOptions& o, const at::Device& device)
    : impl_(std::make_unique<FullSemiDiff>(o, device, true)) {
  if ((o.mode != EpsilonMode::FullDiff && o.mode != EpsilonMode::SemiDiff) || o.cfg_scale > 0) {
    throw EngineError("HDLM_UNSUPPORTED", "a stepped request runs fast full_diff or semi_diff without guidance");
  }
  x_ = impl_->start();
}

FastStepper::~FastStepper() = default;

int64_t FastStepper::total_steps() const { return impl_->total_steps(); }

int64_t FastStepper::forward_length(int64_t i) const { return impl_->forward_length(i); }

void FastStepper::step(int64_t i, StepLogits& logits) { impl_->step_at(x_, i, logits); }

at::Tensor run_full_semi_reference(const ForwardFn& forward, const SampleOptions& o, const at::Device& device,
                                   const std::atomic<bool>& abort, const StepCallback& on_step) {
  ReferenceLogits logits(forward, o, device);
  return FullSemiDiff(o, device, false).run(logits, abort, on_step);
}

at::Tensor run_full_semi_fast(FastForward& model, const SampleOptions& o, const at::Device& device,
                              const std::atomic<bool>& abort, const StepCallback& on_step) {
  FastLogits logits(model, o, device);
  return FullSemiDiff(o, device, true).run(logits, abort, on_step);
}

}  // namespace hdlm
