#include "napi/options.h"

#include <cmath>

#include "napi/convert.h"

namespace hdlm {
namespace js {
namespace {

// The safetensors entries lib/checkpoint.ts located: [{ name, dtype, shape, begin, end }].
std::vector<TensorEntry> read_tensor_entries(Napi::Env env, const Napi::Object& o) {
  std::vector<TensorEntry> out;
  auto tensors = get(o, "tensors");
  if (!tensors.IsArray()) throw_type(env, "an array of tensors");
  auto list = tensors.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) {
    auto item = list.Get(i);
    if (!item.IsObject()) throw_type(env, "tensor entries as objects");
    auto t = item.As<Napi::Object>();
    TensorEntry e;
    e.name = get_string(t, "name");
    e.dtype = get_string(t, "dtype");
    const auto begin = get_int(t, "begin"), end = get_int(t, "end");
    if (begin < 0 || end < 0) throw_type(env, "non-negative tensor offsets");
    e.begin = static_cast<uint64_t>(begin);
    e.end = static_cast<uint64_t>(end);
    auto shape = get(t, "shape");
    if (!shape.IsArray()) throw_type(env, "a shape array");
    auto dims = shape.As<Napi::Array>();
    for (uint32_t j = 0; j < dims.Length(); ++j) {
      auto dim = dims.Get(j);
      if (!dim.IsNumber()) throw_type(env, "numeric dimensions");
      e.shape.push_back(dim.As<Napi::Number>().Int64Value());
    }
    out.push_back(std::move(e));
  }
  return out;
}

MetaScheduleSpec read_schedule_of(Napi::Env env, const Napi::Object& o) {
  auto ms = get(o, "metaschedule");
  if (!ms.IsObject()) throw_type(env, "a metaschedule object");
  return read_schedule(env, ms.As<Napi::Object>());
}

}  // namespace

Precision read_precision(Napi::Env env, const std::string& name) {
  if (name == "fp32") return Precision::Fp32;
  if (name == "A") return Precision::ContextA;
  if (name == "B") return Precision::ContextB;
  if (name == "C") return Precision::ContextC;
  throw_type(env, "precision fp32, A, B or C");
}

MetaScheduleSpec read_schedule(Napi::Env env, const Napi::Object& o) {
  MetaScheduleSpec spec;
  const auto type = get_string(o, "type");
  if (type == "simple")
    spec.type = ScheduleType::Simple;
  else if (type == "block")
    spec.type = ScheduleType::Block;
  else if (type == "hybrid")
    spec.type = ScheduleType::Hybrid;
  else
    throw_type(env, "a metaschedule type 'simple', 'block' or 'hybrid'");
  spec.width = get_int(o, "width");
  spec.tau = get_int(o, "tau");
  spec.length = get_int(o, "length");
  if (spec.width < 1 || spec.tau < 1 || (spec.type == ScheduleType::Hybrid && spec.length < 1)) {
    throw_type(env, "a metaschedule with positive width, tau and length");
  }
  return spec;
}

ContextAttention read_context(Napi::Env env, const std::string& name) {
  if (name == "full") return ContextAttention::Full;
  if (name == "causal") return ContextAttention::Causal;
  if (name == "block_causal") return ContextAttention::BlockCausal;
  throw_type(env, "contextAttention 'full', 'causal' or 'block_causal'");
}

BlockAttention read_block(Napi::Env env, const std::string& name) {
  if (name == "full") return BlockAttention::Full;
  if (name == "causal") return BlockAttention::Causal;
  throw_type(env, "blockAttention 'full' or 'causal'");
}

BuildSpec read_build_spec(Napi::Env env, const Napi::Object& o) {
  BuildSpec spec;
  spec.weights_path = get_string(o, "weightsPath");
  const auto file_size = get_int(o, "fileSize");
  if (file_size < 0) throw_type(env, "a non-negative fileSize");
  spec.file_size = static_cast<uint64_t>(file_size);
  spec.config_json = get_string(o, "configJson");
  spec.device = get_string(o, "device");
  spec.precision = read_precision(env, get_string(o, "precision"));
  auto arch = get(o, "arch");
  if (!arch.IsObject()) throw_type(env, "an arch object");
  auto a = arch.As<Napi::Object>();
  spec.arch.family = get_string(a, "family");
  spec.arch.vocab_size = get_int(a, "vocabSize");
  spec.arch.hidden_size = get_int(a, "hiddenSize");
  spec.arch.n_heads = get_int(a, "nHeads");
  spec.arch.n_blocks = get_int(a, "nBlocks");
  if (spec.arch.family == "gamma_hybrid") {
    spec.arch.cond_dim = get_int(a, "condDim");
    spec.arch.gamma = get_number(a, "gamma");
    spec.arch.radd = get(a, "radd").ToBoolean();
    spec.arch.sigma_conditioning = get(a, "sigmaConditioning").ToBoolean();
    spec.arch.timestep_embedding = get(a, "timestepEmbedding").ToBoolean();
    spec.arch.scale_by_sigma = get(a, "scaleBySigma").ToBoolean();
    spec.arch.post_process_ar = get(a, "postProcessAR").ToBoolean();
  }
  spec.tensors = read_tensor_entries(env, o);
  return spec;
}

BuildSpec read_gpt2_spec(Napi::Env env, const Napi::Object& o) {
  BuildSpec spec;
  spec.weights_path = get_string(o, "weightsPath");
  spec.file_size = static_cast<uint64_t>(get_int(o, "fileSize"));
  spec.config_json = get_string(o, "configJson");
  spec.device = get_string(o, "device");
  spec.arch.family = "gpt2";
  spec.arch.n_heads = get_int(o, "nHeads");
  spec.arch.n_blocks = get_int(o, "nLayers");
  spec.tensors = read_tensor_entries(env, o);
  return spec;
}

ForwardRequest read_forward_request(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 4 || !info[1].IsNumber() || !info[2].IsNumber()) {
    throw_type(env,
               "forward(tokens: Int32Array, batch: number, length: number, positions: Int32Array | null, sigma?: "
               "Float32Array | null)");
  }
  ForwardRequest r;
  r.tokens = to_int32_vector(env, info[0], "tokens");
  r.batch = info[1].As<Napi::Number>().Int64Value();
  r.length = info[2].As<Napi::Number>().Int64Value();
  if (!info[3].IsNull() && !info[3].IsUndefined()) r.positions = to_int32_vector(env, info[3], "positions");
  r.fast = info.Length() > 5 && info[5].ToBoolean();
  if (info.Length() > 4 && !info[4].IsNull() && !info[4].IsUndefined()) {
    if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw_type(env, "sigma as a Float32Array");
    }
    auto arr = info[4].As<Napi::Float32Array>();
    r.sigma.assign(arr.Data(), arr.Data() + arr.ElementLength());
  }
  if (r.batch < 1 || r.length < 1 || static_cast<int64_t>(r.tokens.size()) != r.batch * r.length ||
      (!r.positions.empty() && r.positions.size() != r.tokens.size()) ||
      (!r.sigma.empty() && r.sigma.size() != r.tokens.size()) ||
      (r.fast && (!r.positions.empty() || !r.sigma.empty()))) {
    throw_type(env,
               "tokens (and positions, sigma) of batch × length elements; neither positions nor sigma in fast mode");
  }
  return r;
}

SampleOptions read_sample_options(Napi::Env env, const Napi::Object& o) {
  SampleOptions s;
  const auto mode = get_string(o, "mode");
  if (mode == "full")
    s.mode = EpsilonMode::FullDiff;
  else if (mode == "semi")
    s.mode = EpsilonMode::SemiDiff;
  else if (mode == "full_shifted")
    s.mode = EpsilonMode::FullDiffShifted;
  else if (mode == "semi_shifted")
    s.mode = EpsilonMode::SemiDiffShifted;
  else
    throw_type(env, "mode 'full', 'semi', 'full_shifted' or 'semi_shifted'");
  if (is_shifted(s.mode)) {
    s.repetition_penalty = get_number(o, "repetitionPenalty");
    s.bos_id = get_int(o, "bosId");
  }
  if (s.mode == EpsilonMode::SemiDiffShifted) {
    s.schedule = read_schedule_of(env, o);
    s.context_attention = read_context(env, get_string(o, "contextAttention"));
    s.block_attention = read_block(env, get_string(o, "blockAttention"));
  }
  const auto alg = get_string(o, "alg");
  if (alg == "original")
    s.alg = Algorithm::Original;
  else if (alg == "acs")
    s.alg = Algorithm::Acs;
  else if (alg == "remask")
    s.alg = Algorithm::Remask;
  else if (alg == "remask_adhoc_shuffle")
    s.alg = Algorithm::RemaskAdhocShuffle;
  else if (alg == "remdm")
    s.alg = Algorithm::Remdm;
  else
    throw_type(env, "a known alg");
  s.batch_size = get_int(o, "batchSize");
  s.steps = get_int(o, "steps");
  s.temperature = get_number(o, "temperature");
  s.cfg_scale = get_number(o, "cfgScale");
  s.context_length = get_int(o, "contextLength");
  s.eps = get_number(o, "eps");
  s.mask_id = get_int(o, "maskId");
  s.eta = get_number(o, "eta");
  s.block_size = get_int(o, "blockSize");
  s.prompt_length = get_int(o, "promptLength");
  auto prompt = get(o, "prompt");
  if (!prompt.IsNull() && !prompt.IsUndefined()) s.prompt = to_int32_vector(env, prompt, "prompt");
  auto fixed = get(o, "fixed");
  if (!fixed.IsNull() && !fixed.IsUndefined()) s.fixed_tokens = to_int32_vector(env, fixed, "fixed");
  s.seed = get_seed(o);
  s.step_tokens = get(o, "stepTokens").ToBoolean();
  s.step_every = get(o, "stepEvery").IsUndefined() ? 1 : get_int(o, "stepEvery");
  s.fast = !get(o, "reference").ToBoolean();
  // Shape sanity that would otherwise index out of bounds natively.
  if (s.batch_size < 1 || s.steps < 1 || s.step_every < 1 || s.context_length < 1 || s.block_size < 1 ||
      s.prompt_length < 0 || s.prompt_length > s.context_length ||
      static_cast<int64_t>(s.prompt.size()) != (s.prompt_length > 0 ? s.batch_size * s.prompt_length : 0) ||
      (s.cfg_scale > 0 && s.prompt_length == 0 && !is_shifted(s.mode)) || s.bos_id < 0 ||
      (!s.fixed_tokens.empty() &&
       (is_shifted(s.mode) || static_cast<int64_t>(s.fixed_tokens.size()) != s.batch_size * s.context_length))) {
    throw_type(env, "consistent sampling options (sizes, prompt shape)");
  }
  return s;
}

GammaSampleOptions read_gamma_options(Napi::Env env, const Napi::Object& o) {
  GammaSampleOptions g;
  const auto mode = get_string(o, "mode");
  if (mode != "nar" && mode != "sar") throw_type(env, "mode 'nar' or 'sar'");
  g.sar = mode == "sar";
  g.schedule = read_schedule_of(env, o);
  g.context_attention = read_context(env, get_string(o, "contextAttention"));
  g.block_attention = read_block(env, get_string(o, "blockAttention"));
  const auto graph = get_string(o, "graph");
  if (graph == "QGamma")
    g.graph = GammaGraph::QGamma;
  else if (graph == "absorb")
    g.graph = GammaGraph::Absorb;
  else
    throw_type(env, "graph 'QGamma' or 'absorb'");
  g.gamma = get_number(o, "gamma");
  g.vocab_size = get_int(o, "vocabSize");
  g.batch_size = get_int(o, "batchSize");
  g.context_length = get_int(o, "contextLength");
  g.eps = get_number(o, "eps");
  g.seed = get_seed(o);
  g.step_tokens = get(o, "stepTokens").ToBoolean();
  g.step_every = get(o, "stepEvery").IsUndefined() ? 1 : get_int(o, "stepEvery");
  if (g.batch_size < 1 || g.step_every < 1 || g.context_length < 1 || g.vocab_size < 2 ||
      !(g.eps > 0 && g.eps < 0.05)) {
    throw_type(env, "consistent gamma sampling options");
  }
  return g;
}

EvalRequest read_eval_request(Napi::Env env, const Napi::Object& o) {
  EvalRequest r;
  r.op = get_string(o, "op");
  r.tokens = to_int32_vector(env, get(o, "tokens"), "tokens");
  r.rows = get_int(o, "rows");
  r.length = get_int(o, "length");
  r.batch_size = get_int(o, "batchSize");
  r.repetitions = get_int(o, "repetitions");
  r.sampling_eps = get_number(o, "samplingEps");
  r.mask_id = get_int(o, "maskId");
  r.sigma = get_number(o, "sigma");
  r.seed = get_seed(o);
  // mc_loglik, both optional: rowSeeds (a BigUint64Array, one per row), drawsPerForward
  const auto row_seeds = get(o, "rowSeeds");
  if (!row_seeds.IsUndefined() && !row_seeds.IsNull()) {
    if (!row_seeds.IsTypedArray() || row_seeds.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array) {
      throw_type(env, "a BigUint64Array for rowSeeds");
    }
    auto arr = row_seeds.As<Napi::TypedArrayOf<uint64_t>>();
    r.row_seeds.assign(arr.Data(), arr.Data() + arr.ElementLength());
  }
  if (!get(o, "drawsPerForward").IsUndefined()) r.draws_per_forward = get_int(o, "drawsPerForward");
  if (r.rows < 1 || r.length < 1 || static_cast<int64_t>(r.tokens.size()) != r.rows * r.length || r.batch_size < 1 ||
      r.repetitions < 1 || !(r.sigma >= 0.0 && std::isfinite(r.sigma)) || r.draws_per_forward < 1 ||
      (!r.row_seeds.empty() && static_cast<int64_t>(r.row_seeds.size()) != r.rows)) {
    throw_type(env,
               "tokens of rows × length ids, batchSize, repetitions and drawsPerForward ≥ 1, a finite sigma ≥ 0, "
               "rowSeeds absent or one per row");
  }
  return r;
}

}  // namespace js
}  // namespace hdlm
