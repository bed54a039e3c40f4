// What the two fast full_diff samplers share for `original` and `acs` without guidance: the lone
// one (host_selected.cc, one request per call) and the batched one (batched.cc, the requests of
// concurrent calls in one forward per step).
//
// Which positions a step samples is decided on the host, so the step loop never waits for the
// device. Both algorithms select positions with uniforms that do not depend on the logits, so the
// host can draw them (from its own generator) against a host mirror of the mask state. The mirror
// lags: a sampled value is read back asynchronously, and until it arrives the position counts as
// possibly masked and possibly unmasked; the device then applies the selection that matches its
// actual state (U1 < p for a masked position, U2 < η(1 − p) for an unmasked one). Prompt positions
// never change (upstream re-imposes them after every step), so they are never selected; nor are
// fixed tokens. Same distribution as reference mode (upstream hdlm/epsilon_hybrid/sample.py:
// full_diff); docs/fast-mode-fidelity.md has the checks.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <deque>
#include <random>
#include <vector>

#ifdef HDLM_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#endif

#include "engine/types.h"

namespace hdlm {

// The host's side of one request: its mirror of the mask state, its selection generator and
// its time grid.
class FastSelection {
 public:
  FastSelection(const SampleOptions& o, const at::Device& device);

  // The starting tokens (masks, prompt, fixed tokens), int64 [batch·length] on the device.
  at::Tensor initial_tokens() const;

  // Step i's selection: the flat positions `idx` and, per position, flag bit 1 (selected if it
  // is masked) and bit 2 (selected if it is not). Applies the read-backs that have arrived.
  void select(int64_t i, std::vector<int64_t>& idx, std::vector<uint8_t>& flags);

  // After step i wrote `written` (int64 [idx.size()], on the device) at `idx`: reads the values
  // back without waiting; keeps at most a few steps in flight (waits for the oldest beyond that).
  void wrote(int64_t i, const std::vector<int64_t>& idx, const at::Tensor& written);

 private:
  static constexpr uint8_t kMasked = 0, kUnmasked = 1, kUnknown = 2, kFixed = 3;
  static constexpr size_t kMaxInFlight = 3;

  struct Pending {
    int64_t step;
    std::vector<int64_t> idx;
    at::Tensor values;  // pinned host copy of the written values
#ifdef HDLM_WITH_CUDA
    at::cuda::CUDAEvent ready;
#endif
  };

  // Applies finished read-backs in order; with `wait_for` > 0, waits for that many first.
  void collect(size_t wait_for);

  const SampleOptions& o_;
  at::Device device_;
  std::mt19937_64 rng_;
  std::vector<float> tau_;
  std::vector<uint8_t> state_;
  std::vector<int64_t> last_touch_;
  std::deque<Pending> pending_;
};

// One step's sampling and write on the device, for the first n of `rows` rows of `logits`
// (fast forward's head; more rows are padding, never read): x[sel[j]] takes a sample from
// softmax(logits[j] / T) when its current value selects it (take_if_masked[j] for a mask token,
// take_if_unmasked[j] otherwise). Returns the values the n positions end with (int64 [n]).
// `calls` counts the draws of the request (the fused kernel's stream), `gen` its generator.
at::Tensor sample_and_write(const at::Tensor& logits, const at::Tensor& sel, const at::Tensor& take_if_masked,
                            const at::Tensor& take_if_unmasked, at::Tensor& x, int64_t n, const SampleOptions& o,
                            int64_t vocab, bool fused, uint64_t& calls, at::Generator& gen);

// A step's selection on the device, sent in one transfer: the rows of the forward's hidden states
// the head reads (`head_index`, padded to `rows` with index 0, never written), the positions in
// the request's x they write (`sel`, [n]) and the two flags of each ([n] bool).
struct SelectionTensors {
  at::Tensor head_index, sel, take_if_masked, take_if_unmasked;
};
SelectionTensors selection_to_device(const std::vector<int64_t>& head_index, const std::vector<int64_t>& sel,
                                     const std::vector<uint8_t>& flags, int64_t rows, const at::Device& device);

}  // namespace hdlm
