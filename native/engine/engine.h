// The engine's face: the Model interface and the entry points the N-API glue (napi/) calls.
// No libtorch types here (nor in types.h, which holds the structs these take and return), so
// the glue compiles without <torch/...> headers.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/types.h"

namespace hdlm {

// Fast full_diff and semi_diff requests (every algorithm, no guidance) sampled together: every
// step runs one batched forward per length the model sees (the context; a semi_diff prefix) over
// the requests that sample something, then each request's own selection and noise. A request's tokens depend only on
// its own options (seed included), not on what it is batched with. add and remove may be called from any thread; they
// take effect at the next step. step runs on one thread at a time.
class BatchedSampler {
 public:
  virtual ~BatchedSampler() = default;
  // watch: the request's caller sees its steps as they happen (every options.step_every-th and
  // the last: a step call returns at each of them).
  virtual void add(int64_t id, const SampleOptions& options, bool watch) = 0;
  virtual void remove(int64_t id) = 0;
  // Up to max_steps steps of every request, fewer once a request finishes (it leaves the batch)
  // or reaches a step its caller watches. Events: each request's last step of the call, with its
  // tokens when it finished or asked for them (step_tokens) at a step it reports.
  virtual std::vector<BatchRowEvent> step(int64_t max_steps) = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual ModelInfo info() const = 0;
  // tokens: batch × length ids; positions: same size or empty for 0..length-1; sigma: same
  // size (gamma models: per-token total noise; required) or empty (epsilon models).
  // fast: the fast path's forward (epsilon models; positions must be empty: 0..length-1).
  virtual Logits forward(const std::vector<int32_t>& tokens, int64_t batch, int64_t length,
                         const std::vector<int32_t>& positions, const std::vector<float>& sigma, bool fast) = 0;
  // Epsilon models. Returns batch_size × context_length ids. Throws
  // EngineError("HDLM_ABORTED") when `abort` is set.
  virtual std::vector<int32_t> sample(const SampleOptions& options, const std::atomic<bool>& abort,
                                      const StepCallback& on_step) = 0;
  // Gamma models only. Returns batch_size × context_length ids.
  virtual std::vector<int32_t> sample_gamma(const GammaSampleOptions& options, const std::atomic<bool>& abort,
                                            const StepCallback& on_step) = 0;
  // Evaluation (see EvalRequest in types.h). Models that do not support `request.op` throw
  // HDLM_UNSUPPORTED.
  virtual EvalResult evaluate(const EvalRequest& request, const std::atomic<bool>& abort);
  // Epsilon models with the fast path only (others throw HDLM_UNSUPPORTED).
  virtual std::shared_ptr<BatchedSampler> open_batch();
  // Writes the TorchScript module to `path`, which must not exist: every write checked, then
  // fsync. On any failure the file is removed and EngineError("HDLM_IO") thrown.
  virtual void save_torchscript(const std::string& path);
};

// Builds an epsilon- or gamma-family model from a safetensors checkpoint.
std::shared_ptr<Model> build_model(const BuildSpec& spec);
// Loads a TorchScript module that follows the hdlm interface (see README "TorchScript interface").
std::shared_ptr<Model> load_torchscript(const std::string& path, const std::string& device, Precision precision);
// A GPT-2 (Hugging Face layout: wte, wpe, h.{i}.*, ln_f; optional `transformer.` prefix) as a
// TorchScript module, for evaluation; arch.family "gpt2", arch.n_blocks layers; config_json
// carries n_positions and layer_norm_epsilon. Supports forward and evaluate("causal_nll" / "last_hidden").
std::shared_ptr<Model> build_gpt2(const BuildSpec& spec);

RuntimeInfo runtime_info();
// Compiles the fused kernels for the device on first use.
FusedKernelStatus fused_kernel_status(int64_t device_index);
void set_threads(int64_t n);
CudaMemory cuda_memory(int64_t device_index, bool reset_peak);

}  // namespace hdlm
