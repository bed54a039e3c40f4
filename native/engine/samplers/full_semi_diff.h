// Upstream's full_diff and semi_diff steps (hdlm/epsilon_hybrid/sample.py) as full_semi_diff.cc
// runs them, open to a caller that owns the forward: the batched sampler (batched.cc) steps
// fast-mode semi_diff requests, and full_diff ones of `remask`, `remask_adhoc_shuffle` and
// `remdm`, with their rows of its batched forward, with the same code and random stream as a
// lone fast-mode call.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

#include "engine/types.h"

namespace hdlm {

// Where a step gets its logits from. Reference: the full [B, n, V] logits of this step's forward.
// Fast: hidden states, recomputed only when x changed, and the head on demand. Batched: the
// request's rows of the batch's forward, and the head on demand.
class StepLogits {
 public:
  virtual ~StepLogits() = default;
  // Called at the start of every step with the current prefix x [B, n].
  virtual void begin_step(const at::Tensor& x) = 0;
  // Logits [N, V] of the positions where `sel` [B, n] is true (row-major order).
  virtual at::Tensor rows(const at::Tensor& sel) = 0;
  // Tells the source that x was modified (the fast source then recomputes on next use).
  virtual void changed() = 0;
  // Flat indices of the rows of the last rows() call (fast sources), or undefined.
  virtual at::Tensor last_index() const { return {}; }
};

class FullSemiDiff;

// One fast-mode full_diff or semi_diff request (no guidance) stepped from outside. Each step
// calls `logits.rows()` at most once, before it writes, on the tokens of its forward as they were
// when the step began.
class FastStepper {
 public:
  // `o` must outlive the stepper.
  FastStepper(const SampleOptions& o, const at::Device& device);
  ~FastStepper();
  FastStepper(const FastStepper&) = delete;
  FastStepper& operator=(const FastStepper&) = delete;

  // The tokens, int64 [batch_size, context_length] on the device (written in place by step).
  const at::Tensor& tokens() const { return x_; }
  // Steps in all (semi_diff: steps × blocks).
  int64_t total_steps() const;
  // The prefix of the tokens step i's forward sees, [batch_size, forward_length(i)]: the whole
  // context for full_diff, up to the end of the step's block for semi_diff.
  int64_t forward_length(int64_t i) const;
  // Step i (0-based) of total_steps(), with the logits of that prefix's rows.
  void step(int64_t i, StepLogits& logits);

 private:
  std::unique_ptr<FullSemiDiff> impl_;
  at::Tensor x_;
};

}  // namespace hdlm
