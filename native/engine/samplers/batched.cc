// Step-level batching of fast full_diff and semi_diff requests (every algorithm, no guidance):
// each step, the requests that sample something go through one forward per length the model sees
// (the context, or a semi_diff request's prefix up to its current block: rows of different
// lengths never share attention), then each request samples from its own rows with its own
// noise. Same distribution as reference mode (upstream hdlm/epsilon_hybrid/sample.py: full_diff,
// semi_diff).
//
// full_diff's `original` and `acs` select their positions on the host against a lagging mirror of
// the mask state, as the lone fast sampler does (fast_selection.h), the head runs on the selected
// rows of all of them at once, and a step never waits for the device except to hand a finished
// request's tokens (or tokens asked for) back. The others (full_diff's remask family, every
// semi_diff request) select on the device from the step's logits: each such request takes its
// rows of the forward and runs the lone fast sampler's step on them (full_semi_diff.h), with a
// lone fast-mode call's random stream (on the CPU, its tokens). Which requests join a batch is
// the TS layer's choice.
//
// A request's result depends only on its own options: its positions are selected with its own
// generator (seeded from its seed), its noise comes from its own generator (CPU; CUDA without
// fused kernels) or its own seed and counter (CUDA's fused kernel), and, on the CPU, where a
// row's forward does not depend on the other rows of the batch, it gets the same tokens alone
// and inside any batch.
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "cuda/fused_kernels.h"
#include "engine/fast_forward.h"
#include "engine/guarded.h"
#include "engine/samplers/common.h"
#include "engine/samplers/fast_selection.h"
#include "engine/samplers/full_semi_diff.h"

namespace hdlm {
namespace {

bool host_selected(const SampleOptions& o) {
  return o.mode == EpsilonMode::FullDiff && (o.alg == Algorithm::Original || o.alg == Algorithm::Acs);
}

struct Request {
  Request(int64_t id_, SampleOptions options, bool watch_, const at::Device& device)
      : id(id_), o(std::move(options)), watch(watch_), noise(make_sampling_generator(device, o.seed)) {
    if (host_selected(o)) {
      selection = std::make_unique<FastSelection>(o, device);
      x = selection->initial_tokens();
      total = o.steps;
    } else {
      stepper = std::make_unique<FastStepper>(o, device);
      x = stepper->tokens();  // the same storage: the stepper writes it in place
      total = stepper->total_steps();
    }
  }
  // The length of this step's forward: the context, or a semi_diff request's current prefix.
  int64_t forward_length() const { return stepper ? stepper->forward_length(done) : o.context_length; }
  int64_t id;
  SampleOptions o;
  bool watch;  // its caller sees its steps (every o.step_every-th and the last)
  // original / acs: the host's selection (holds a reference to o: a Request never moves)
  std::unique_ptr<FastSelection> selection;
  // the others: the lone fast sampler's step (also holds a reference to o)
  std::unique_ptr<FastStepper> stepper;
  at::Tensor x;              // int64 tokens on the device (batch_size · context_length)
  at::Generator noise;       // host-selected: the sampling noise (CPU; CUDA without fused kernels)
  uint64_t noise_calls = 0;  // host-selected: the fused kernel's stream counter (CUDA)
  int64_t done = 0;          // steps done
  int64_t total = 0;         // steps in all (semi_diff: steps × blocks)
  // host-selected: this step's selection, flat positions in x and their flags (fast_selection.h)
  std::vector<int64_t> idx;
  std::vector<uint8_t> flags;
};

// A stepped request's rows of the batch's forward ([batch_size · forward length, hidden]) and
// the head on the rows its step samples.
class BatchRows : public StepLogits {
 public:
  BatchRows(FastForward& model, at::Tensor hidden) : model_(model), hidden_(std::move(hidden)) {}
  void begin_step(const at::Tensor&) override {}
  at::Tensor rows(const at::Tensor& sel) override {
    // the forward ran on the tokens the step began with: a second look after a write would be stale
    if (written_) throw EngineError("HDLM_NATIVE", "batched sampling: a step asked for logits after writing");
    idx_ = sel.flatten().nonzero().squeeze(1);
    if (idx_.numel() == 0) {
      return at::empty({0, model_.vocab_size()}, at::TensorOptions().dtype(at::kFloat).device(hidden_.device()));
    }
    return model_.head(hidden_.index_select(0, idx_));
  }
  void changed() override { written_ = true; }
  at::Tensor last_index() const override { return idx_; }

 private:
  FastForward& model_;
  at::Tensor hidden_, idx_;
  bool written_ = false;
};

// The rows of a forward: CUDA replays one graph per shape, so the number of rows is rounded up
// to 1, 2, 4, 8, then a multiple of 8 (padding rows copy the first row and are never read).
int64_t forward_rows(int64_t rows, bool cuda) {
  if (!cuda) return rows;
  if (rows <= 8) {
    int64_t r = 1;
    while (r < rows) r *= 2;
    return r;
  }
  return (rows + 7) / 8 * 8;
}

class BatchedFastSampler : public BatchedSampler {
 public:
  BatchedFastSampler(std::function<FastForward&()> fast, at::Device device)
      : fast_(std::move(fast)), device_(device), fused_(device.is_cuda() && fused::available(device)) {}

  void add(int64_t id, const SampleOptions& o, bool watch) override {
    if ((o.mode != EpsilonMode::FullDiff && o.mode != EpsilonMode::SemiDiff) || o.cfg_scale > 0) {
      throw EngineError("HDLM_UNSUPPORTED", "the batched sampler runs fast full_diff or semi_diff without guidance");
    }
    if (!o.fixed_tokens.empty() && static_cast<int64_t>(o.fixed_tokens.size()) != o.batch_size * o.context_length) {
      throw EngineError("HDLM_INVALID_ARGUMENT", "fixed tokens must be batch_size × context_length");
    }
    std::lock_guard<std::mutex> lock(mu_);
    joining_.push_back(Joining{id, o, watch});
  }

  void remove(int64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    leaving_.push_back(id);
  }

  std::vector<BatchRowEvent> step(int64_t max_steps) override {
    return guarded("HDLM_NATIVE", "batched sampling", [&] {
      c10::InferenceMode guard;
      std::vector<BatchRowEvent> events;
      for (int64_t s = 0; s < max_steps; ++s) {
        admit();
        if (running_.empty()) break;
        select_all();
        sample_selected();
        // the call returns once a request has finished (its caller waits for it) or reached a step
        // its caller watches; every request then reports where it is, with its tokens if it
        // finished or asked for them at a step it reports
        bool stop = s == max_steps - 1;
        for (auto& [id, r] : running_) {
          ++r->done;
          stop = stop || r->done == r->total || (r->watch && reports(r->o.step_every, r->done, r->total));
        }
        for (auto it = running_.begin(); it != running_.end();) {
          Request& r = *it->second;
          const bool done = r.done == r.total;
          if (stop) {
            BatchRowEvent e;
            e.id = r.id;
            e.step = r.done;
            e.total = r.total;
            e.done = done;
            if (done || (r.o.step_tokens && r.watch && reports(r.o.step_every, r.done, r.total))) {
              auto host = r.x.cpu();
              e.tokens.assign(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + host.numel());
            }
            events.push_back(std::move(e));
          }
          it = done ? running_.erase(it) : std::next(it);
        }
        if (stop) break;
      }
      return events;
    });
  }

 private:
  // Applies the joins and leaves asked for since the last step.
  void admit() {
    std::vector<Joining> joining;
    std::vector<int64_t> leaving;
    {
      std::lock_guard<std::mutex> lock(mu_);
      joining.swap(joining_);
      leaving.swap(leaving_);
    }
    for (auto& j : joining) running_[j.id] = std::make_unique<Request>(j.id, std::move(j.options), j.watch, device_);
    for (const int64_t id : leaving) running_.erase(id);
  }

  void select_all() {
    for (auto& [id, r] : running_) {
      if (r->selection) r->selection->select(r->done, r->idx, r->flags);
    }
  }

  // One forward per length the model sees over the requests that sample this step (host-selected ones
  // with a selection, every stepped one), the head on the host-selected ones' selected rows,
  // then each request's own draw and write; each stepped request then runs its step on its rows.
  void sample_selected() {
    std::map<int64_t, std::vector<Request*>> by_length;
    for (auto& [id, r] : running_) {
      if (r->stepper || !r->idx.empty()) by_length[r->forward_length()].push_back(r.get());
    }
    FastForward& model = fast_();
    for (auto& [L, group] : by_length) {
      int64_t rows = 0;
      for (Request* r : group) rows += r->o.batch_size;
      const int64_t padded = forward_rows(rows, device_.is_cuda());
      std::vector<at::Tensor> parts;
      // each request's rows, cut to the group's length (a semi_diff prefix)
      auto rows_of = [&](Request* r) { return r->x.view({r->o.batch_size, -1}).narrow(1, 0, L); };
      for (Request* r : group) parts.push_back(rows_of(r));
      if (padded > rows) parts.push_back(rows_of(group.front()).narrow(0, 0, 1).expand({padded - rows, L}));
      auto x = parts.size() == 1 ? parts.front().contiguous() : at::cat(parts);
      auto hidden = model.hidden(x).reshape({padded * L, -1});
      // the selected rows of every host-selected request: their rows in `hidden` (head) and in
      // its own x (write); each request's first row in `hidden`
      std::vector<int64_t> head_index, sel, base;
      std::vector<uint8_t> flags;
      int64_t next = 0;
      for (Request* r : group) {
        base.push_back(next);
        if (r->selection) {
          for (const int64_t k : r->idx) head_index.push_back(next + k);
          sel.insert(sel.end(), r->idx.begin(), r->idx.end());
          flags.insert(flags.end(), r->flags.begin(), r->flags.end());
        }
        next += r->o.batch_size * L;
      }
      const int64_t n = static_cast<int64_t>(sel.size());
      if (n > 0) {
        const int64_t head_rows = fused_ ? (n + 7) / 8 * 8 : n;
        auto t = selection_to_device(head_index, sel, flags, head_rows, device_);
        auto logits = fused_ ? model.head_rows(hidden, t.head_index) : model.head(hidden.index_select(0, t.head_index));
        int64_t offset = 0;
        for (Request* r : group) {
          if (!r->selection) continue;
          const int64_t m = static_cast<int64_t>(r->idx.size());
          auto written =
              sample_and_write(logits.narrow(0, offset, m), t.sel.narrow(0, offset, m),
                               t.take_if_masked.narrow(0, offset, m), t.take_if_unmasked.narrow(0, offset, m), r->x, m,
                               r->o, model.vocab_size(), fused_, r->noise_calls, r->noise);
          r->selection->wrote(r->done, r->idx, written);
          offset += m;
        }
      }
      for (size_t k = 0; k < group.size(); ++k) {
        Request* r = group[k];
        if (!r->stepper) continue;
        BatchRows rows(model, hidden.narrow(0, base[k], r->o.batch_size * L));
        r->stepper->step(r->done, rows);
      }
    }
  }

  std::function<FastForward&()> fast_;
  at::Device device_;
  const bool fused_;
  struct Joining {
    int64_t id;
    SampleOptions options;
    bool watch;
  };
  std::mutex mu_;  // guards joining_ and leaving_
  std::vector<Joining> joining_;
  std::vector<int64_t> leaving_;
  std::map<int64_t, std::unique_ptr<Request>> running_;  // the stepping thread's only
};

}  // namespace

std::shared_ptr<BatchedSampler> make_batched_fast_sampler(std::function<FastForward&()> fast,
                                                          const at::Device& device) {
  return std::make_shared<BatchedFastSampler>(std::move(fast), device);
}

}  // namespace hdlm
