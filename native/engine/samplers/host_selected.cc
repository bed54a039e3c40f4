// Fast mode for full_diff's `original` and `acs` without guidance (EpsilonSampler::HostSelected):
// which positions a step samples is decided on the host, so the loop never waits for the device.
// Both algorithms select positions with uniforms that do not depend on the logits, so the host
// can draw them (from its own generator) against a host mirror of the mask state. The mirror
// lags: a sampled value is read back asynchronously, and until it arrives the position counts as
// possibly masked and possibly unmasked; the device then applies the selection that matches its
// actual state (U1 for a masked position, U2 for an unmasked one). Prompt positions never change
// (upstream re-imposes them after every step), so they are never selected; nor are fixed tokens. Same distribution as
// reference mode (upstream hdlm/epsilon_hybrid/sample.py: full_diff).
#include <algorithm>
#include <deque>
#include <random>
#include <vector>

#ifdef HDLM_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#endif

#include "cuda/fused_kernels.h"
#include "engine/fast_forward.h"
#include "engine/samplers/common.h"

namespace hdlm {
namespace {

class HostSelectedSampler {
 public:
  HostSelectedSampler(FastForward& model, const SampleOptions& o, const at::Device& device)
      : model_(model),
        o_(o),
        device_(device),
        rng_(o.seed ^ 0x9E3779B97F4A7C15ull),
        gen_(make_sampling_generator(device, o.seed)),
        fused_(device.is_cuda() && fused::available(device)) {}

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
    for (size_t k = 0; k < o_.fixed_tokens.size(); ++k) {  // infilling: held like the prompt
      if (o_.fixed_tokens[k] < 0) continue;
      x0[k] = o_.fixed_tokens[k];
      state_[k] = kFixed;
    }
    last_touch_.assign(N, -1);
    auto x = at::tensor(x0, at::TensorOptions().dtype(at::kLong)).to(device_);
    const std::vector<float> tau = time_grid(o_.steps, o_.eps, device_);
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
          check_sampled_rows(logits.narrow(1, 0, model_.vocab_size()));
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
      report_step(on_step, o_.step_tokens, x, i + 1, o_.steps);
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

  at::Tensor sample(const at::Tensor& logits) {
    return sample_fast(logits, o_.temperature, o_.seed, fused_calls_, gen_);
  }

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

at::Tensor run_host_selected(FastForward& model, const SampleOptions& o, const at::Device& device,
                             const std::atomic<bool>& abort, const StepCallback& on_step) {
  return HostSelectedSampler(model, o, device).run(abort, on_step);
}

}  // namespace hdlm
