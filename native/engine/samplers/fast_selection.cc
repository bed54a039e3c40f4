#include "engine/samplers/fast_selection.h"

#include <algorithm>

#include "cuda/fused_kernels.h"
#include "engine/samplers/common.h"

namespace hdlm {

FastSelection::FastSelection(const SampleOptions& o, const at::Device& device)
    : o_(o), device_(device), rng_(o.seed ^ 0x9E3779B97F4A7C15ull), tau_(time_grid(o.steps, o.eps, device)) {
  const int64_t B = o.batch_size, L = o.context_length, P = o.prompt_length;
  state_.assign(B * L, kMasked);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < P; ++j) state_[b * L + j] = kFixed;
  }
  for (size_t k = 0; k < o.fixed_tokens.size(); ++k) {  // infilling: held like the prompt
    if (o.fixed_tokens[k] >= 0) state_[k] = kFixed;
  }
  last_touch_.assign(B * L, -1);
}

at::Tensor FastSelection::initial_tokens() const {
  const int64_t B = o_.batch_size, L = o_.context_length, P = o_.prompt_length;
  std::vector<int64_t> x0(B * L, o_.mask_id);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < P; ++j) x0[b * L + j] = o_.prompt[b * P + j];
  }
  for (size_t k = 0; k < o_.fixed_tokens.size(); ++k) {
    if (o_.fixed_tokens[k] >= 0) x0[k] = o_.fixed_tokens[k];
  }
  return at::tensor(x0, at::TensorOptions().dtype(at::kLong)).to(device_);
}

void FastSelection::select(int64_t i, std::vector<int64_t>& idx, std::vector<uint8_t>& flags) {
  collect(0);
  const bool last = i == o_.steps - 1;
  const double p = last ? 1.0 : static_cast<double>(1.0f - tau_[i + 1] / tau_[i]);
  const double eta = last ? 0.0 : static_cast<double>(static_cast<float>(o_.eta) * (1.0f - static_cast<float>(p)));
  const bool acs = o_.alg == Algorithm::Acs;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  idx.clear();
  flags.clear();
  const int64_t N = static_cast<int64_t>(state_.size());
  for (int64_t k = 0; k < N; ++k) {
    const uint8_t st = state_[k];
    if (st == kFixed) continue;
    uint8_t f = 0;
    if (st != kUnmasked && uniform(rng_) < p) f |= 1;
    if (acs && st != kMasked && uniform(rng_) < eta) f |= 2;
    if (f) {
      idx.push_back(k);
      flags.push_back(f);
    }
  }
}

void FastSelection::wrote(int64_t i, const std::vector<int64_t>& idx, const at::Tensor& written) {
  const auto pinned = at::TensorOptions().dtype(at::kLong).pinned_memory(device_.is_cuda());
  Pending pending{i, idx, at::empty({static_cast<int64_t>(idx.size())}, pinned)};
  pending.values.copy_(written, /*non_blocking=*/true);
#ifdef HDLM_WITH_CUDA
  if (device_.is_cuda()) pending.ready.record();
#endif
  for (const int64_t k : idx) {
    state_[k] = kUnknown;
    last_touch_[k] = i;
  }
  pending_.push_back(std::move(pending));
  // progress and abort stay within a few steps of the device
  if (pending_.size() > kMaxInFlight) collect(pending_.size() - kMaxInFlight);
}

void FastSelection::collect(size_t wait_for) {
  while (!pending_.empty()) {
    auto& front = pending_.front();
#ifdef HDLM_WITH_CUDA
    if (device_.is_cuda()) {
      if (wait_for > 0) {
        front.ready.synchronize();
      } else if (!front.ready.query()) {
        return;
      }
    }
#endif
    const int64_t* v = front.values.data_ptr<int64_t>();
    for (size_t j = 0; j < front.idx.size(); ++j) {
      const int64_t k = front.idx[j];
      // a position touched again since keeps its unknown state until that write is read back
      if (last_touch_[k] == front.step) state_[k] = v[j] == o_.mask_id ? kMasked : kUnmasked;
    }
    pending_.pop_front();
    if (wait_for > 0) --wait_for;
  }
}

SelectionTensors selection_to_device(const std::vector<int64_t>& head_index, const std::vector<int64_t>& sel,
                                     const std::vector<uint8_t>& flags, int64_t rows, const at::Device& device) {
  const int64_t n = static_cast<int64_t>(sel.size());
  const int64_t flag_words = (2 * n + 7) / 8;
  const auto pinned = at::TensorOptions().dtype(at::kLong).pinned_memory(device.is_cuda());
  // [head_index padded to rows | sel | 2n flag bytes]; bytes past the flags are never read
  auto host = at::empty({rows + n + flag_words}, pinned);
  int64_t* h = host.data_ptr<int64_t>();
  std::fill(std::copy(head_index.begin(), head_index.end(), h), h + rows, 0);
  std::copy(sel.begin(), sel.end(), h + rows);
  auto* flag_bytes = reinterpret_cast<uint8_t*>(h + rows + n);
  for (int64_t j = 0; j < n; ++j) {
    flag_bytes[j] = flags[j] & 1;
    flag_bytes[n + j] = (flags[j] >> 1) & 1;
  }
  auto dev = host.to(device, /*non_blocking=*/true);
  auto f = dev.narrow(0, rows + n, flag_words).view(at::kByte).narrow(0, 0, 2 * n).view(at::kBool);
  return {dev.narrow(0, 0, rows), dev.narrow(0, rows, n), f.narrow(0, 0, n), f.narrow(0, n, n)};
}

at::Tensor sample_and_write(const at::Tensor& logits, const at::Tensor& sel, const at::Tensor& take_if_masked,
                            const at::Tensor& take_if_unmasked, at::Tensor& x, int64_t n, const SampleOptions& o,
                            int64_t vocab, bool fused, uint64_t& calls, at::Generator& gen) {
  if (fused) {                                                       // Gumbel-max and the write: two kernels
    check_sampled_rows(logits.narrow(0, 0, n).narrow(1, 0, vocab));  // rows and columns past these are padding
    auto keys = fused::gumbel_keys(logits, vocab, o.temperature, o.seed, calls++);
    auto written = at::empty({n}, x.options());
    fused::write_selected(keys, sel, take_if_masked, take_if_unmasked, x, written, n, o.mask_id);
    return written;
  }
  auto values = sample_fast(logits.narrow(0, 0, n), o.temperature, o.seed, calls, gen);
  auto current = x.index_select(0, sel);
  auto take = at::where(current == o.mask_id, take_if_masked, take_if_unmasked);
  auto written = at::where(take, values, current);
  x.index_copy_(0, sel, written);
  return written;
}

}  // namespace hdlm
