// Step-level batching of fast full_diff requests (`original` and `acs`, no guidance): each step,
// the requests that sample something go through one forward per context length (rows of
// different lengths never share attention), the output head runs on their selected rows only,
// and each request draws its tokens from its own logits with its own noise. Each request keeps
// its tokens on the device and selects its positions on the host against a lagging mirror of its
// mask state, as the lone fast sampler does (fast_selection.h), so a step never waits for the
// device except to hand a finished request's tokens (or tokens asked for) back. Same
// distribution as reference mode (upstream hdlm/epsilon_hybrid/sample.py: full_diff).
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

namespace hdlm {
namespace {

struct Request {
  Request(int64_t id_, SampleOptions options, bool watch_, const at::Device& device)
      : id(id_),
        o(std::move(options)),
        watch(watch_),
        selection(o, device),
        noise(make_sampling_generator(device, o.seed)) {
    x = selection.initial_tokens();
  }
  int64_t id;
  SampleOptions o;
  bool watch;                // its caller sees its steps (every o.step_every-th and the last)
  FastSelection selection;   // holds a reference to o: a Request never moves (unique_ptr)
  at::Tensor x;              // int64 [batch_size · context_length] on the device
  at::Generator noise;       // the sampling noise (CPU; CUDA without fused kernels)
  uint64_t noise_calls = 0;  // the fused kernel's stream counter (CUDA)
  int64_t done = 0;          // steps done
  // this step's selection: flat positions in x and their flags (fast_selection.h)
  std::vector<int64_t> idx;
  std::vector<uint8_t> flags;
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
    if (o.mode != EpsilonMode::FullDiff || (o.alg != Algorithm::Original && o.alg != Algorithm::Acs) ||
        o.cfg_scale > 0) {
      throw EngineError("HDLM_UNSUPPORTED",
                        "the batched sampler runs fast full_diff with 'original' or 'acs' and no guidance");
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
          stop = stop || r->done == r->o.steps || (r->watch && reports(r->o.step_every, r->done, r->o.steps));
        }
        for (auto it = running_.begin(); it != running_.end();) {
          Request& r = *it->second;
          const bool done = r.done == r.o.steps;
          if (stop) {
            BatchRowEvent e;
            e.id = r.id;
            e.step = r.done;
            e.total = r.o.steps;
            e.done = done;
            if (done || (r.o.step_tokens && r.watch && reports(r.o.step_every, r.done, r.o.steps))) {
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
    for (auto& [id, r] : running_) r->selection.select(r->done, r->idx, r->flags);
  }

  // One forward per context length over the requests with a selection, the head on their
  // selected rows, then each request's own draw and write.
  void sample_selected() {
    std::map<int64_t, std::vector<Request*>> by_length;
    for (auto& [id, r] : running_) {
      if (!r->idx.empty()) by_length[r->o.context_length].push_back(r.get());
    }
    FastForward& model = fast_();
    for (auto& [L, group] : by_length) {
      int64_t rows = 0;
      for (Request* r : group) rows += r->o.batch_size;
      const int64_t padded = forward_rows(rows, device_.is_cuda());
      std::vector<at::Tensor> parts;
      for (Request* r : group) parts.push_back(r->x.view({r->o.batch_size, L}));
      if (padded > rows) parts.push_back(group.front()->x.view({-1, L}).narrow(0, 0, 1).expand({padded - rows, L}));
      auto x = parts.size() == 1 ? parts.front() : at::cat(parts);
      auto hidden = model.hidden(x).reshape({padded * L, -1});
      // the selected rows of every request: their rows in `hidden` (head) and in its own x (write)
      std::vector<int64_t> head_index, sel;
      std::vector<uint8_t> flags;
      int64_t base = 0;
      for (Request* r : group) {
        for (const int64_t k : r->idx) head_index.push_back(base + k);
        sel.insert(sel.end(), r->idx.begin(), r->idx.end());
        flags.insert(flags.end(), r->flags.begin(), r->flags.end());
        base += r->o.batch_size * L;
      }
      const int64_t n = static_cast<int64_t>(sel.size());
      const int64_t head_rows = fused_ ? (n + 7) / 8 * 8 : n;
      auto t = selection_to_device(head_index, sel, flags, head_rows, device_);
      auto logits = fused_ ? model.head_rows(hidden, t.head_index) : model.head(hidden.index_select(0, t.head_index));
      int64_t offset = 0;
      for (Request* r : group) {
        const int64_t m = static_cast<int64_t>(r->idx.size());
        auto written = sample_and_write(logits.narrow(0, offset, m), t.sel.narrow(0, offset, m),
                                        t.take_if_masked.narrow(0, offset, m), t.take_if_unmasked.narrow(0, offset, m),
                                        r->x, m, r->o, model.vocab_size(), fused_, r->noise_calls, r->noise);
        r->selection.wrote(r->done, r->idx, written);
        offset += m;
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
