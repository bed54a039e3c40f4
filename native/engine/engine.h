// The native engine's plain C++ surface: what the N-API glue (addon.cc) sees.
// No libtorch types here, so addon.cc compiles without <torch/...> headers.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "metaschedule.h"

namespace hdlm {

// Errors the engine throws; addon.cc turns them into JS errors carrying `code`.
struct EngineError : std::runtime_error {
  std::string code;  // HDLM_BAD_FILE, HDLM_NATIVE, HDLM_ABORTED, HDLM_INVALID_ARGUMENT, HDLM_UNSUPPORTED
  EngineError(std::string c, const std::string& message) : std::runtime_error(message), code(std::move(c)) {}
};

struct TensorEntry {
  std::string name;
  std::string dtype;  // F32, BF16, F16
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // absolute byte offsets in the file
  uint64_t end = 0;
};

struct Architecture {
  std::string family;  // epsilon_hybrid or gamma_hybrid
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t n_heads = 0;
  int64_t n_blocks = 0;
  // gamma_hybrid only (hdlm-reference §3.1); decided from the config by lib/config.ts
  int64_t cond_dim = 0;
  double gamma = 0.0;               // graph.gamma (embedding interpolation)
  bool radd = false;                // §3.2 mask-interpolated embedding
  bool sigma_conditioning = false;  // adaLN in blocks
  bool timestep_embedding = false;  // sigma_map present
  bool scale_by_sigma = false;      // §3.6
  bool post_process_ar = false;     // §3.7 rule 1 (AR sampling_method with post_process_logits)
};

// How the epsilon model computes (see model_epsilon.cc): fp32 on the CPU; on CUDA upstream's
// bf16-autocast forward, with the rotary table of precision context A, B or C
// (hdlm-reference §0.3).
enum class Precision { Fp32 = 0, ContextA = 1, ContextB = 2, ContextC = 3 };

struct BuildSpec {
  std::string weights_path;
  uint64_t file_size = 0;
  std::vector<TensorEntry> tensors;
  Architecture arch;
  std::string config_json;
  std::string device;      // "cpu" or "cuda:N"
  Precision precision = Precision::Fp32;
  std::string cache_path;  // empty: do not save
};

struct ModelInfo {
  std::string family;
  std::string config_json;
  std::string device;
  int64_t format_version = 0;
  std::string precision;  // fp32, A, B, C, or "module" for a TorchScript file without the attribute
};

enum class Algorithm { Original, Acs, Remask, RemaskAdhocShuffle, Remdm };

struct SampleOptions {
  bool semi = false;     // false: full_diff (full_diff_shifted), true: semi_diff (semi_diff_shifted)
  bool shifted = false;  // the next-token samplers full_diff_shifted / semi_diff_shifted (§4.4, §4.5)
  double repetition_penalty = 1.2;  // shifted samplers
  int64_t bos_id = 50256;           // shifted samplers: written at position 0 before the prompt
  MetaScheduleSpec schedule;        // semi_diff_shifted
  ContextAttention context_attention = ContextAttention::BlockCausal;  // semi_diff_shifted
  BlockAttention block_attention = BlockAttention::Full;              // semi_diff_shifted
  Algorithm alg = Algorithm::Original;
  std::vector<int32_t> prompt;  // batch_size × prompt_length, row-major; empty = no prompt
  int64_t prompt_length = 0;
  int64_t batch_size = 1;
  int64_t steps = 512;
  double temperature = 1.0;
  double cfg_scale = 0.0;
  int64_t context_length = 1024;
  double eps = 1e-5;
  int64_t mask_id = 50257;
  double eta = 0.015;
  int64_t block_size = 16;
  uint64_t seed = 0;
  bool step_tokens = false;
  bool fast = false;  // fast mode (same distribution, another random stream); see sampler.h
};

// Upstream's gamma samplers (hdlm/gamma_hybrid/sampling.py get_sa_sampling_fn, "NAR", and
// sampling_sar.py, "SAR"): analytic predictor, log-linear noise, driven by a metaschedule.
enum class GammaGraph { QGamma = 0, Absorb = 1 };
struct GammaSampleOptions {
  bool sar = false;
  MetaScheduleSpec schedule;
  ContextAttention context_attention = ContextAttention::BlockCausal;
  BlockAttention block_attention = BlockAttention::Full;
  GammaGraph graph = GammaGraph::QGamma;
  double gamma = 0.01;     // graph.gamma (QGamma)
  int64_t vocab_size = 50258;  // states, mask included (mask = vocab_size − 1)
  int64_t batch_size = 1;
  int64_t context_length = 1024;
  double eps = 1e-4;       // annealing.sampling_eps
  uint64_t seed = 0;
  bool step_tokens = false;
};

// Called after every step (from the sampling thread). `tokens` is empty unless asked for.
using StepCallback = std::function<void(int64_t step, int64_t total, std::vector<int32_t>&& tokens)>;

struct Logits {
  std::vector<float> data;
  int64_t batch = 0, length = 0, vocab = 0;
};

struct EvalRequest;  // evaluation, see below
struct EvalResult;

class Model {
 public:
  virtual ~Model() = default;
  virtual ModelInfo info() const = 0;
  // tokens: batch × length ids; positions: same size or empty for 0..length-1; sigma: same
  // size (gamma models: per-token total noise; required) or empty (epsilon models).
  // fast: the fast path's forward (epsilon models; positions must be empty: 0..length-1).
  virtual Logits forward(const std::vector<int32_t>& tokens, int64_t batch, int64_t length,
                         const std::vector<int32_t>& positions, const std::vector<float>& sigma, bool fast) = 0;
  // Returns batch_size × context_length ids. Throws EngineError("HDLM_ABORTED") when `abort` is set.
  virtual std::vector<int32_t> sample(const SampleOptions& options, const std::atomic<bool>& abort,
                                      const StepCallback& on_step) = 0;
  // Gamma models only. Returns batch_size × context_length ids.
  virtual std::vector<int32_t> sample_gamma(const GammaSampleOptions& options, const std::atomic<bool>& abort,
                                            const StepCallback& on_step) = 0;
  // Evaluation (issue 8; see EvalRequest below). Models that do not support `request.op` throw.
  virtual EvalResult evaluate(const EvalRequest& request, const std::atomic<bool>& abort);
};

// Build an epsilon-family model from a safetensors checkpoint; saves it to spec.cache_path if set.
std::shared_ptr<Model> build_model(const BuildSpec& spec);
// Load a TorchScript module that follows the hdlm interface (see README "TorchScript interface").
std::shared_ptr<Model> load_torchscript(const std::string& path, const std::string& device, Precision precision);

// ---- Evaluation (issue 8: native/eval.cc, native/model_gpt2.cc) ---------------------------------
// op "mc_loglik" (diffusion models, upstream zeroshot_ppl.py, mode aligned, nll_type mc): for
//   each of `rows` sequences of `length` ids, `repetitions` times: batch_size copies, stratified
//   times t_b = (u0 + b/batch_size) mod 1, p_b = (1 − sampling_eps)·t_b + sampling_eps, every
//   position masked (mask_id) with probability p_b, one forward; the value is
//   Σ_{masked} CE(logits, x) / p_b / batch_size, or NaN when nothing was masked (upstream skips it).
//   Result: rows × repetitions. Draws come from a CPU generator seeded with `seed`.
// op "causal_nll" (GPT-2): Result rows × 1, Σ_{l=1..length−1} CE(logits[l−1], x_l) per row.
struct EvalRequest {
  std::string op;
  std::vector<int32_t> tokens;  // rows × length, row-major
  int64_t rows = 0, length = 0;
  int64_t batch_size = 16;
  int64_t repetitions = 1;
  double sampling_eps = 1e-3;
  int64_t mask_id = 50257;
  uint64_t seed = 0;
};
struct EvalResult {
  std::vector<double> values;
  int64_t rows = 0, cols = 0;
};
// A GPT-2 (Hugging Face layout: wte, wpe, h.{i}.*, ln_f; optional `transformer.` prefix) as a
// TorchScript module; arch.family "gpt2", arch.n_blocks layers; config_json carries
// n_positions and layer_norm_epsilon. Supports forward and evaluate("causal_nll").
std::shared_ptr<Model> build_gpt2(const BuildSpec& spec);
// ---- end evaluation ------------------------------------------------------------------------------

struct RuntimeInfo {
  std::string libtorch_version;
  bool cuda_compiled = false;
  int64_t cuda_device_count = 0;
  int64_t threads = 0;
  std::string cuda_device_name;  // device 0, empty without CUDA
};
RuntimeInfo runtime_info();
// Whether the fast path's fused CUDA kernels (fused_kernels.h) run on a CUDA device (compiling them
// on first use); `reason` says why not.
struct FusedKernelStatus {
  bool available = false;
  std::string reason;
};
FusedKernelStatus fused_kernel_status(int64_t device_index);
void set_threads(int64_t n);

// CUDA caching-allocator counters of one device, in bytes; -1 without CUDA (or a bad index).
struct CudaMemory {
  int64_t allocated = -1;       // held by live tensors
  int64_t peak_allocated = -1;  // the most held since the last reset
  int64_t reserved = -1;        // allocated + cached by the allocator
};
CudaMemory cuda_memory(int64_t device_index, bool reset_peak);

}  // namespace hdlm
