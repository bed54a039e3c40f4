// The engine's vocabulary: the plain structs that cross between the N-API glue (napi/) and the
// engine (engine/), and the error type both sides know. No libtorch here, so that napi/ compiles
// without <torch/...> headers; engine.h holds the engine's face (the Model interface and the
// entry points) on top of these.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace hdlm {

// Errors the engine throws; napi/convert.cc turns them into JS errors carrying `code`.
struct EngineError : std::runtime_error {
  std::string code;  // HDLM_BAD_FILE, HDLM_NATIVE, HDLM_ABORTED, HDLM_INVALID_ARGUMENT, HDLM_UNSUPPORTED
  EngineError(std::string c, const std::string& message) : std::runtime_error(message), code(std::move(c)) {}
};

// ---- models ---------------------------------------------------------------------------------

struct TensorEntry {
  std::string name;
  std::string dtype;  // F32, BF16, F16
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // absolute byte offsets in the file
  uint64_t end = 0;
};

struct Architecture {
  std::string family;  // epsilon_hybrid, gamma_hybrid or gpt2
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t n_heads = 0;
  int64_t n_blocks = 0;
  // gamma_hybrid only (upstream hdlm/model/diffusion_lm.py: HDLM_Gamma); decided from the
  // config by lib/config.ts
  int64_t cond_dim = 0;
  double gamma = 0.0;               // graph.gamma (embedding interpolation)
  bool radd = false;                // mask-interpolated embedding (EmbeddingLayer with radd)
  bool sigma_conditioning = false;  // adaLN in blocks
  bool timestep_embedding = false;  // sigma_map present
  bool scale_by_sigma = false;      // output shift by log(expm1 σ) and ln(V − 1)
  bool post_process_ar = false;     // post_process_logits with an AR annealing.sampling_method
};

// How the epsilon and gamma models compute (see jit/epsilon.py): fp32 on the CPU; on CUDA
// upstream's bf16-autocast forward, with the rotary table of precision context A (accelerate's
// fp16 wrapper), B (inside a sampler's bf16 autocast) or C (no autocast).
enum class Precision { Fp32 = 0, ContextA = 1, ContextB = 2, ContextC = 3 };

struct BuildSpec {
  std::string weights_path;
  uint64_t file_size = 0;
  std::vector<TensorEntry> tensors;
  Architecture arch;
  std::string config_json;
  std::string device;  // "cpu" or "cuda:N"
  Precision precision = Precision::Fp32;
};

struct ModelInfo {
  std::string family;
  std::string config_json;
  std::string device;
  int64_t format_version = 0;
  std::string precision;  // fp32, A, B, C, or "module" for a TorchScript file without the attribute
};

// Float32 logits copied to the host: batch × length × vocab, row-major.
struct Logits {
  std::vector<float> data;
  int64_t batch = 0, length = 0, vocab = 0;
};

// ---- metaschedules (upstream hdlm/metaschedule.py, hdlm/metaschedule_utils.py) -------------

enum class ScheduleType { Simple = 0, Block = 1, Hybrid = 2 };
enum class ContextAttention { Full = 0, Causal = 1, BlockCausal = 2 };
enum class BlockAttention { Full = 0, Causal = 1 };

struct MetaScheduleSpec {
  ScheduleType type = ScheduleType::Block;
  int64_t width = 0;
  int64_t tau = 0;
  int64_t length = 0;  // hybrid only: the sequence length the schedule is built for
};

// ---- sampling -------------------------------------------------------------------------------

// Upstream's epsilon samplers (hdlm/epsilon_hybrid/sample.py).
enum class EpsilonMode { FullDiff, SemiDiff, FullDiffShifted, SemiDiffShifted };
enum class Algorithm { Original, Acs, Remask, RemaskAdhocShuffle, Remdm };

struct SampleOptions {
  EpsilonMode mode = EpsilonMode::FullDiff;
  bool fast = false;                // fast mode (same distribution, another random stream)
  double repetition_penalty = 1.2;  // shifted samplers
  int64_t bos_id = 50256;           // shifted samplers: written at position 0 before the prompt
  MetaScheduleSpec schedule;        // semi_diff_shifted
  ContextAttention context_attention = ContextAttention::BlockCausal;  // semi_diff_shifted
  BlockAttention block_attention = BlockAttention::Full;               // semi_diff_shifted
  Algorithm alg = Algorithm::Original;
  std::vector<int32_t> prompt;  // batch_size × prompt_length, row-major; empty = no prompt
  int64_t prompt_length = 0;
  // Tokens held fixed outside the prompt (infilling): batch_size × context_length, row-major, −1
  // at free positions; empty = none. Never selected, re-masked or resampled by any algorithm.
  std::vector<int32_t> fixed_tokens;
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
  int64_t step_every = 1;  // the caller sees every step_every-th step and the last (reports())
};

inline bool is_shifted(EpsilonMode mode) {
  return mode == EpsilonMode::FullDiffShifted || mode == EpsilonMode::SemiDiffShifted;
}

// Upstream's gamma samplers (hdlm/gamma_hybrid/sampling.py get_sa_sampling_fn, "NAR", and
// sampling_sar.py, "SAR"): analytic predictor, log-linear noise, driven by a metaschedule.
enum class GammaGraph { QGamma = 0, Absorb = 1 };
struct GammaSampleOptions {
  bool sar = false;
  MetaScheduleSpec schedule;
  ContextAttention context_attention = ContextAttention::BlockCausal;
  BlockAttention block_attention = BlockAttention::Full;
  GammaGraph graph = GammaGraph::QGamma;
  double gamma = 0.01;         // graph.gamma (QGamma)
  int64_t vocab_size = 50258;  // states, mask included (mask = vocab_size − 1)
  int64_t batch_size = 1;
  int64_t context_length = 1024;
  double eps = 1e-4;  // annealing.sampling_eps
  uint64_t seed = 0;
  bool step_tokens = false;
  int64_t step_every = 1;  // as SampleOptions::step_every
};

// What one step of a batched sampler (engine.h BatchedSampler) did for one of its requests.
struct BatchRowEvent {
  int64_t id = 0;
  int64_t step = 0, total = 0;
  bool done = false;
  std::vector<int32_t> tokens;  // batch_size × context_length when done or asked for, else empty
};

// Called after every step (from the sampling thread). `tokens` is empty unless asked for.
// Called after every step: `report` says whether the caller sees this step (reports()); tokens
// only with step_tokens and only at reported steps. The other steps just count (abort, errors).
using StepCallback = std::function<void(int64_t step, int64_t total, bool report, std::vector<int32_t>&& tokens)>;

// Whether step `done` of `total` is one the caller sees: every `every`-th step, and the last.
inline bool reports(int64_t every, int64_t done, int64_t total) {
  return every <= 1 || done % every == 0 || done == total;
}

// ---- evaluation (engine/eval.cc, engine/models/gpt2.cc) ------------------------------------

// op "mc_loglik" (diffusion models; upstream hdlm/zeroshot_ppl.py, mode aligned, nll_type mc):
//   for each of `rows` sequences of `length` ids, `repetitions` times: batch_size copies,
//   stratified times t_b = (u0 + b/batch_size) mod 1, p_b = (1 − sampling_eps)·t_b +
//   sampling_eps, every position masked (mask_id) with probability p_b, one forward; the value
//   is Σ_{masked} CE(logits, x) / p_b / batch_size; a draw that masked nothing (upstream
//   divides by zero) is listed in empty_draws (its value 0). Non-finite logits at a masked
//   position throw HDLM_NON_FINITE. Result: rows × repetitions. Draws come from a CPU generator seeded with `seed`,
//   or with row_seeds[i] for row i (one generator per row) when row_seeds is given. Up to
//   draws_per_forward draws (row-major: row, then repetition; empty ones left out) share one forward.
//   gamma_hybrid models are called with σ̄ = `sigma` at every position.
// op "causal_nll" (GPT-2): Result rows × 1, Σ_{l=1..length−1} CE(logits[l−1], x_l) per row.
// op "last_hidden" (GPT-2): Result rows × n_embd, the final hidden state (after ln_f) at the
//   last position of each row, batch_size rows per forward.
struct EvalRequest {
  std::string op;
  std::vector<int32_t> tokens;  // rows × length, row-major
  int64_t rows = 0, length = 0;
  int64_t batch_size = 16;
  int64_t repetitions = 1;
  double sampling_eps = 1e-3;
  int64_t mask_id = 50257;
  double sigma = 0.0;  // mc_loglik on gamma_hybrid models
  uint64_t seed = 0;
  std::vector<uint64_t> row_seeds;  // mc_loglik: empty, or one per row
  int64_t draws_per_forward = 1;    // mc_loglik
};
struct EvalResult {
  std::vector<double> values;
  std::vector<int32_t> empty_draws;  // mc_loglik: indices into values of draws that masked nothing
  int64_t rows = 0, cols = 0;
};

// ---- the runtime ----------------------------------------------------------------------------

struct RuntimeInfo {
  std::string libtorch_version;
  bool cuda_compiled = false;
  int64_t cuda_device_count = 0;
  int64_t threads = 0;
  std::string cuda_device_name;  // device 0, empty without CUDA
};

// Whether the fast path's fused CUDA kernels (cuda/fused_kernels.h) run on a CUDA device;
// `reason` says why not.
struct FusedKernelStatus {
  bool available = false;
  std::string reason;
};

// CUDA caching-allocator counters of one device, in bytes; -1 without CUDA (or a bad index).
struct CudaMemory {
  int64_t allocated = -1;       // held by live tensors
  int64_t peak_allocated = -1;  // the most held since the last reset
  int64_t reserved = -1;        // allocated + cached by the allocator
};

}  // namespace hdlm
