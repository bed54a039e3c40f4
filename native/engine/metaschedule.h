// Upstream's metaschedules (hdlm/metaschedule.py: MetaSchedule, HybridMetaSchedule,
// make_simple_annealing, make_block_annealing, make_hybrid_annealing) and their per-step times and
// attention masks (hdlm/metaschedule_utils.py). Plain C++ (no libtorch), so the N-API glue can
// expose the very code the samplers use.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/types.h"

namespace hdlm {

class MetaSchedule {
 public:
  // Throws EngineError(HDLM_INVALID_ARGUMENT) for width/tau/length < 1.
  explicit MetaSchedule(const MetaScheduleSpec& spec);

  const MetaScheduleSpec& spec() const { return spec_; }
  // The "full noise" level (max level + 1).
  int64_t worthless() const { return worthless_; }
  // Upstream's `width` attribute (hybrid: the first block's size).
  int64_t width() const;
  // ms(k).num_settled and len(ms(k).relevant).
  int64_t num_settled(int64_t k) const;
  int64_t relevant_length(int64_t k) const;
  // ms(k)(stop = n): the level of each of the first n positions (hybrid: at most `length` of them).
  std::vector<int64_t> levels(int64_t k, int64_t n) const;
  // ms.max_step(n): the samplers run steps 1 .. max_step(n) - 1.
  int64_t max_step(int64_t n) const;

 private:
  int64_t relevant_at(int64_t k, int64_t i) const;  // relevant[i] of ms(k)
  MetaScheduleSpec spec_;
  int64_t worthless_ = 0;
  std::vector<int64_t> main_;                        // simple: the main diagonal
  int64_t zeros_ = 0;                                // simple: leading zeros of main_ (positions settled per cycle)
  std::vector<int64_t> block_sizes_, block_prefix_;  // hybrid
  int64_t hybrid_stored_per_block_ = 0, hybrid_steps_per_block_ = 0, hybrid_total_ = 0;
};

// One sampler step's times and masks (compute_t_and_attn / compute_t_and_attn_autoregressive).
// Vectors have n entries (mask: n × n, row-major, 1 = may NOT attend).
struct StepPlan {
  int64_t n = 0;
  std::vector<float> t;
  std::vector<uint8_t> den, act, settled, mask;
};

// compute_t_and_attn (gamma samplers).
StepPlan t_and_mask(const MetaSchedule& ms, int64_t k, int64_t n, double eps, ContextAttention ctx, BlockAttention blk);
// compute_t_and_attn_autoregressive (semi_diff_shifted).
StepPlan t_and_mask_ar(const MetaSchedule& ms, int64_t k, int64_t n, double eps, ContextAttention ctx,
                       BlockAttention blk);
// generate_attention_mask without the post-active option (inference never sets it): n × n, 1 = blocked.
std::vector<uint8_t> attention_mask(int64_t n, int64_t settled_end, int64_t active_end, ContextAttention ctx,
                                    BlockAttention blk, int64_t block_size, bool causal);

}  // namespace hdlm
