// Fast mode for full_diff's `original` and `acs` without guidance, one request per call
// (EpsilonSampler::HostSelected): positions selected on the host against a lagging mirror of the
// mask state (fast_selection.h says how), so the loop never waits for the device.
#include "cuda/fused_kernels.h"
#include "engine/fast_forward.h"
#include "engine/samplers/common.h"
#include "engine/samplers/fast_selection.h"

namespace hdlm {

at::Tensor run_host_selected(FastForward& model, const SampleOptions& o, const at::Device& device,
                             const std::atomic<bool>& abort, const StepCallback& on_step) {
  const int64_t B = o.batch_size, L = o.context_length, N = B * L;
  const bool fused = device.is_cuda() && fused::available(device);
  FastSelection selection(o, device);
  at::Generator gen = make_sampling_generator(device, o.seed);
  uint64_t calls = 0;
  auto x = selection.initial_tokens();
  at::Tensor hidden;
  bool stale = true;
  std::vector<int64_t> idx;
  std::vector<uint8_t> flags;
  for (int64_t i = 0; i < o.steps; ++i) {
    if (abort.load(std::memory_order_relaxed)) throw EngineError("HDLM_ABORTED", "sampling was aborted");
    selection.select(i, idx, flags);
    const int64_t n = static_cast<int64_t>(idx.size());
    if (n > 0) {
      if (stale) {  // the epsilon model has no time input: x unchanged → same hidden states
        hidden = model.hidden(x.view({B, L})).reshape({N, -1});
        stale = false;
      }
      // padded to a multiple of 8 rows for the head GEMM's kernel choice (a few shapes)
      const int64_t rows = fused ? (n + 7) / 8 * 8 : n;
      auto t = selection_to_device(idx, idx, flags, rows, device);
      auto logits = fused ? model.head_rows(hidden, t.head_index) : model.head(hidden.index_select(0, t.head_index));
      auto written = sample_and_write(logits, t.sel, t.take_if_masked, t.take_if_unmasked, x, n, o, model.vocab_size(),
                                      fused, calls, gen);
      stale = true;
      selection.wrote(i, idx, written);
    }
    report_step(on_step, o.step_tokens, o.step_every, x, i + 1, o.steps);
  }
  return x.view({B, L}).cpu();
}

}  // namespace hdlm
