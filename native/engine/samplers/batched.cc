// Step-level batching of fast full_diff requests (`original` and `acs`, no guidance): each step,
// the requests that sample something go through one forward per context length (rows of
// different lengths never share attention), the output head runs on their selected rows only,
// and each request draws its tokens from its own logits with its own noise. Same distribution as
// reference mode (upstream hdlm/epsilon_hybrid/sample.py: full_diff), as the host-selected
// sampler (host_selected.cc) but with an exact host copy of every request's tokens (the values a
// step wrote are read back before the next step), which makes joining and leaving simple.
//
// A request's result depends only on its own options: its positions are selected with its own
// generator (seeded from its seed), its noise comes from its own device generator (CPU) or its
// own seed and counter (CUDA's fused kernel), and, on the CPU, where a row's forward does not
// depend on the other rows of the batch, it gets the same tokens alone and inside any batch.
#include <algorithm>
#include <map>
#include <mutex>
#include <random>
#include <utility>
#include <vector>

#include "engine/fast_forward.h"
#include "engine/guarded.h"
#include "engine/samplers/common.h"

namespace hdlm {
namespace {

struct Request {
  int64_t id = 0;
  SampleOptions o;
  std::vector<int64_t> x;        // batch_size × context_length, the current tokens
  std::vector<uint8_t> kept;     // 1 = prompt or fixed position: never selected
  std::vector<float> tau;        // the time grid
  std::mt19937_64 select_rng;    // which positions a step samples
  at::Generator noise;           // the sampling noise (CPU; CUDA without fused kernels)
  uint64_t noise_calls = 0;      // the fused kernel's counter (CUDA)
  int64_t done = 0;              // steps done
  // this step's selection: flat positions in x
  std::vector<int64_t> selected;
};

class BatchedFastSampler : public BatchedSampler {
 public:
  BatchedFastSampler(std::function<FastForward&()> fast, at::Device device)
      : fast_(std::move(fast)), device_(device) {}

  void add(int64_t id, const SampleOptions& o) override {
    if (o.mode != EpsilonMode::FullDiff || (o.alg != Algorithm::Original && o.alg != Algorithm::Acs) ||
        o.cfg_scale > 0) {
      throw EngineError("HDLM_UNSUPPORTED", "the batched sampler runs fast full_diff with 'original' or 'acs' and no guidance");
    }
    if (!o.fixed_tokens.empty() &&
        static_cast<int64_t>(o.fixed_tokens.size()) != o.batch_size * o.context_length) {
      throw EngineError("HDLM_INVALID_ARGUMENT", "fixed tokens must be batch_size × context_length");
    }
    std::lock_guard<std::mutex> lock(mu_);
    joining_.emplace_back(id, o);
  }

  void remove(int64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    leaving_.push_back(id);
  }

  std::vector<BatchRowEvent> step() override {
    return guarded("HDLM_NATIVE", "batched sampling", [&] {
      c10::InferenceMode guard;
      admit();
      std::vector<BatchRowEvent> events;
      if (running_.empty()) return events;
      select_all();
      sample_selected();
      for (auto it = running_.begin(); it != running_.end();) {
        Request& r = *it->second;
        ++r.done;
        BatchRowEvent e;
        e.id = r.id;
        e.step = r.done;
        e.total = r.o.steps;
        e.done = r.done == r.o.steps;
        if (e.done || r.o.step_tokens) e.tokens.assign(r.x.begin(), r.x.end());
        events.push_back(std::move(e));
        it = events.back().done ? running_.erase(it) : std::next(it);
      }
      return events;
    });
  }

 private:
  // Applies the joins and leaves asked for since the last step.
  void admit() {
    std::vector<std::pair<int64_t, SampleOptions>> joining;
    std::vector<int64_t> leaving;
    {
      std::lock_guard<std::mutex> lock(mu_);
      joining.swap(joining_);
      leaving.swap(leaving_);
    }
    for (auto& [id, o] : joining) running_[id] = start(id, std::move(o));
    for (const int64_t id : leaving) running_.erase(id);
  }

  std::unique_ptr<Request> start(int64_t id, SampleOptions o) {
    auto r = std::make_unique<Request>();
    r->id = id;
    const int64_t B = o.batch_size, L = o.context_length, P = o.prompt_length;
    r->x.assign(B * L, o.mask_id);
    r->kept.assign(B * L, 0);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t j = 0; j < P; ++j) {
        r->x[b * L + j] = o.prompt[b * P + j];
        r->kept[b * L + j] = 1;
      }
    }
    for (size_t k = 0; k < o.fixed_tokens.size(); ++k) {
      if (o.fixed_tokens[k] < 0) continue;
      r->x[k] = o.fixed_tokens[k];
      r->kept[k] = 1;
    }
    r->tau = time_grid(o.steps, o.eps, device_);
    r->select_rng.seed(o.seed ^ 0x9E3779B97F4A7C15ull);
    r->noise = make_sampling_generator(device_, o.seed);
    r->o = std::move(o);
    return r;
  }

  // Each request's positions for this step: a masked position with probability p, and for
  // `acs` an unmasked one with probability η(1 − p) (none at the last step, where p = 1).
  void select_all() {
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    for (auto& [id, rp] : running_) {
      Request& r = *rp;
      const auto& o = r.o;
      const int64_t i = r.done;
      const bool last = i == o.steps - 1;
      const double p = last ? 1.0 : static_cast<double>(1.0f - r.tau[i + 1] / r.tau[i]);
      const double eta = last ? 0.0 : static_cast<double>(static_cast<float>(o.eta) * (1.0f - static_cast<float>(p)));
      const bool acs = o.alg == Algorithm::Acs;
      r.selected.clear();
      for (int64_t k = 0; k < static_cast<int64_t>(r.x.size()); ++k) {
        if (r.kept[k]) continue;
        if (r.x[k] == o.mask_id) {
          if (uniform(r.select_rng) < p) r.selected.push_back(k);
        } else if (acs && uniform(r.select_rng) < eta) {
          r.selected.push_back(k);
        }
      }
    }
  }

  // One forward per context length over the requests with a selection, the head on the selected
  // rows, each request's draw from its own rows, and the values written back to the host copy.
  void sample_selected() {
    std::map<int64_t, std::vector<Request*>> by_length;
    for (auto& [id, rp] : running_) {
      if (!rp->selected.empty()) by_length[rp->o.context_length].push_back(rp.get());
    }
    const auto long_opts = at::TensorOptions().dtype(at::kLong);
    for (auto& [L, group] : by_length) {
      FastForward& model = fast_();
      int64_t rows = 0;
      for (Request* r : group) rows += r->o.batch_size;
      // CUDA replays one graph per batch shape: pad the rows to a multiple of 8 (copies of the
      // first row, never read) to keep the number of shapes small.
      const int64_t padded = device_.is_cuda() ? (rows + 7) / 8 * 8 : rows;
      std::vector<int64_t> tokens;
      tokens.reserve(padded * L);
      std::vector<int64_t> index;
      for (Request* r : group) {
        const int64_t base = static_cast<int64_t>(tokens.size());
        tokens.insert(tokens.end(), r->x.begin(), r->x.end());
        for (const int64_t k : r->selected) index.push_back(base + k);
      }
      const std::vector<int64_t> first(tokens.begin(), tokens.begin() + L);
      for (int64_t b = rows; b < padded; ++b) tokens.insert(tokens.end(), first.begin(), first.end());
      auto x = at::tensor(tokens, long_opts).view({padded, L}).to(device_);
      auto hidden = model.hidden(x).reshape({padded * L, -1});
      auto sel = at::tensor(index, long_opts).to(device_);
      auto logits = model.head(hidden.index_select(0, sel));
      std::vector<at::Tensor> values;
      int64_t offset = 0;
      for (Request* r : group) {
        const int64_t n = static_cast<int64_t>(r->selected.size());
        values.push_back(sample_fast(logits.narrow(0, offset, n), r->o.temperature, r->o.seed, r->noise_calls, r->noise));
        offset += n;
      }
      auto host = at::cat(values).to(at::kLong).cpu().contiguous();
      const int64_t* v = host.data_ptr<int64_t>();
      offset = 0;
      for (Request* r : group) {
        for (const int64_t k : r->selected) r->x[k] = v[offset++];
      }
    }
  }

  std::function<FastForward&()> fast_;
  at::Device device_;
  std::mutex mu_;  // guards joining_ and leaving_
  std::vector<std::pair<int64_t, SampleOptions>> joining_;
  std::vector<int64_t> leaving_;
  std::map<int64_t, std::unique_ptr<Request>> running_;  // step's thread only
};

}  // namespace

std::shared_ptr<BatchedSampler> make_batched_fast_sampler(std::function<FastForward&()> fast, const at::Device& device) {
  return std::make_shared<BatchedFastSampler>(std::move(fast), device);
}

}  // namespace hdlm
