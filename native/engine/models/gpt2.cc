// GPT-2 (Hugging Face layout) for evaluation: the module (weights as attributes, jit/gpt2.py as
// its forward) and the Model that runs it (forward and the causal NLL).
#include "engine/models/gpt2.h"

#include <algorithm>
#include <cmath>

#include "engine/checkpoint.h"
#include "engine/engine.h"
#include "engine/eval.h"
#include "engine/guarded.h"
#include "hdlm_embedded_sources.h"

namespace hdlm {
namespace {

at::Tensor take(std::unordered_map<std::string, at::Tensor>& w, const std::string& name, std::vector<int64_t> shape) {
  auto it = w.find(name);
  if (it == w.end()) throw EngineError("HDLM_BAD_FILE", "GPT-2 checkpoint is missing tensor '" + name + "'");
  auto t = it->second.contiguous();
  if (t.sizes().vec() != shape) {
    throw EngineError("HDLM_BAD_FILE", "GPT-2 tensor '" + name + "' has shape " + c10::str(t.sizes()) + ", expected " +
                                           c10::str(at::IntArrayRef(shape)));
  }
  return t;
}

class Gpt2Model : public Model {
 public:
  Gpt2Model(torch::jit::Module m, at::Device device) : module_(std::move(m)), device_(device) {}

  ModelInfo info() const override {
    ModelInfo i;
    i.family = "gpt2";
    i.config_json = module_.attr("hdlm_config").toStringRef();
    i.device = device_.str();
    i.format_version = kGpt2FormatVersion;
    i.precision = "fp32";
    return i;
  }

  Logits forward(const std::vector<int32_t>& tokens, int64_t batch, int64_t length, const std::vector<int32_t>&,
                 const std::vector<float>&, bool) override {
    return guarded("HDLM_NATIVE", "forward", [&] {
      c10::InferenceMode guard;
      auto x =
          at::tensor(tokens, at::kInt).view({batch, length}).to(at::TensorOptions().dtype(at::kLong).device(device_));
      auto logits = call(x).to(at::kFloat).cpu().contiguous();
      Logits out;
      out.batch = logits.size(0);
      out.length = logits.size(1);
      out.vocab = logits.size(2);
      out.data.assign(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
      return out;
    });
  }

  std::vector<int32_t> sample(const SampleOptions&, const std::atomic<bool>&, const StepCallback&) override {
    throw EngineError("HDLM_UNSUPPORTED", "a GPT-2 model is for evaluation only; it has no diffusion sampler");
  }
  std::vector<int32_t> sample_gamma(const GammaSampleOptions&, const std::atomic<bool>&, const StepCallback&) override {
    throw EngineError("HDLM_UNSUPPORTED", "a GPT-2 model is for evaluation only; it has no diffusion sampler");
  }

  EvalResult evaluate(const EvalRequest& request, const std::atomic<bool>& abort) override {
    if (request.op != "causal_nll" && request.op != "last_hidden") eval_unsupported(request.op, "gpt2");
    return guarded("HDLM_NATIVE", "GPT-2 evaluation", [&] {
      c10::InferenceMode guard;
      if (request.op == "last_hidden") return last_hidden(request, abort);
      return eval_causal_nll([this](const at::Tensor& x, const at::Tensor&) { return call(x); }, device_, request,
                             abort);
    });
  }

 private:
  void check_length(const at::Tensor& x) {
    const int64_t n_pos = module_.attr("n_positions").toInt();
    if (x.size(1) > n_pos) {
      throw EngineError("HDLM_INVALID_ARGUMENT", "GPT-2 takes at most " + std::to_string(n_pos) +
                                                     " tokens per row, got " + std::to_string(x.size(1)));
    }
  }

  at::Tensor call(const at::Tensor& x) {
    check_length(x);
    return module_.forward({x}).toTensor();
  }

  // Rows × n_embd: hidden(x)[:, -1, :] per batch of rows.
  EvalResult last_hidden(const EvalRequest& r, const std::atomic<bool>& abort) {
    if (r.rows < 1 || r.length < 1 || static_cast<int64_t>(r.tokens.size()) != r.rows * r.length) {
      throw EngineError("HDLM_INVALID_ARGUMENT", "evaluate: tokens must hold rows × length ids");
    }
    const int64_t B = std::max<int64_t>(1, r.batch_size);
    auto all = at::tensor(r.tokens, at::kInt).view({r.rows, r.length}).to(at::kLong).to(device_);
    check_length(all);
    auto hidden = module_.get_method("hidden");
    EvalResult out;
    out.rows = r.rows;
    for (int64_t start = 0; start < r.rows; start += B) {
      if (abort.load()) throw EngineError("HDLM_ABORTED", "evaluation aborted");
      const int64_t n = std::min(B, r.rows - start);
      auto h = hidden({all.narrow(0, start, n)}).toTensor();
      auto last = h.select(1, r.length - 1).to(at::kDouble).cpu().contiguous();  // [n, D]
      out.cols = last.size(1);
      out.values.insert(out.values.end(), last.data_ptr<double>(), last.data_ptr<double>() + last.numel());
    }
    return out;
  }

  torch::jit::Module module_;
  at::Device device_;
};

}  // namespace

torch::jit::Module build_gpt2_module(int64_t NL, int64_t H, double eps, std::unordered_map<std::string, at::Tensor>& w,
                                     const std::string& config_json) {
  auto wte_it = w.find("wte.weight");
  auto wpe_it = w.find("wpe.weight");
  if (wte_it == w.end() || wpe_it == w.end() || wte_it->second.dim() != 2 || wpe_it->second.dim() != 2) {
    throw EngineError("HDLM_BAD_FILE", "GPT-2 checkpoint needs 2-D wte.weight and wpe.weight");
  }
  const int64_t V = wte_it->second.size(0), D = wte_it->second.size(1), P = wpe_it->second.size(0);
  if (H <= 0 || D % H != 0 || NL < 0 || wpe_it->second.size(1) != D) {
    throw EngineError("HDLM_BAD_FILE", "invalid GPT-2 architecture (n_embd " + std::to_string(D) + ", n_head " +
                                           std::to_string(H) + ")");
  }
  torch::jit::Module m("__torch__.hdlm.GPT2");
  m.register_attribute("hdlm_format", c10::IntType::get(), kGpt2FormatVersion);
  m.register_attribute("hdlm_family", c10::StringType::get(), std::string("gpt2"));
  m.register_attribute("hdlm_config", c10::StringType::get(), config_json);
  m.register_attribute("n_embd", c10::IntType::get(), D);
  m.register_attribute("n_head", c10::IntType::get(), H);
  m.register_attribute("n_layer", c10::IntType::get(), NL);
  m.register_attribute("n_positions", c10::IntType::get(), P);
  m.register_attribute("eps", c10::FloatType::get(), eps);
  m.register_attribute("sqrt_head_dim", c10::FloatType::get(), std::sqrt(static_cast<double>(D / H)));
  m.register_attribute("wte", c10::TensorType::get(), take(w, "wte.weight", {V, D}));
  m.register_attribute("wpe", c10::TensorType::get(), take(w, "wpe.weight", {P, D}));
  const std::vector<std::tuple<const char*, const char*, std::vector<int64_t>>> per_layer = {
      {"ln1_w", "ln_1.weight", {D}},
      {"ln1_b", "ln_1.bias", {D}},
      {"attn_w", "attn.c_attn.weight", {D, 3 * D}},
      {"attn_b", "attn.c_attn.bias", {3 * D}},
      {"proj_w", "attn.c_proj.weight", {D, D}},
      {"proj_b", "attn.c_proj.bias", {D}},
      {"ln2_w", "ln_2.weight", {D}},
      {"ln2_b", "ln_2.bias", {D}},
      {"fc_w", "mlp.c_fc.weight", {D, 4 * D}},
      {"fc_b", "mlp.c_fc.bias", {4 * D}},
      {"mproj_w", "mlp.c_proj.weight", {4 * D, D}},
      {"mproj_b", "mlp.c_proj.bias", {D}}};
  for (const auto& [attr, key, shape] : per_layer) {
    c10::List<at::Tensor> list;
    for (int64_t i = 0; i < NL; ++i) list.push_back(take(w, "h." + std::to_string(i) + "." + key, shape));
    m.register_attribute(attr, c10::ListType::ofTensors(), list);
  }
  m.register_attribute("lnf_w", c10::TensorType::get(), take(w, "ln_f.weight", {D}));
  m.register_attribute("lnf_b", c10::TensorType::get(), take(w, "ln_f.bias", {D}));
  m.define(embedded::jit_gpt2_py);
  m.eval();
  return m;
}

std::shared_ptr<Model> build_gpt2(const BuildSpec& spec) {
  const auto device = guarded("HDLM_INVALID_ARGUMENT", "device", [&] { return at::Device(spec.device); });
  if (spec.arch.family != "gpt2") throw EngineError("HDLM_INVALID_ARGUMENT", "build_gpt2 needs arch.family 'gpt2'");
  // layer_norm_epsilon is read from config_json (compact JSON written by loadGpt2 in lib/).
  double eps = 1e-5;
  const auto key = std::string("\"layer_norm_epsilon\":");
  const auto at_key = spec.config_json.find(key);
  if (at_key != std::string::npos) eps = std::stod(spec.config_json.substr(at_key + key.size()));
  return guarded("HDLM_BAD_FILE", spec.weights_path, [&]() -> std::shared_ptr<Model> {
    c10::InferenceMode guard;
    auto raw = read_safetensors(spec.weights_path, spec.file_size, spec.tensors);
    std::unordered_map<std::string, at::Tensor> weights;
    for (auto& kv : raw) {
      std::string name = kv.first;
      if (name.rfind("transformer.", 0) == 0) name = name.substr(12);
      weights[name] = kv.second.to(device);
    }
    auto module = build_gpt2_module(spec.arch.n_blocks, spec.arch.n_heads, eps, weights, spec.config_json);
    return std::make_shared<Gpt2Model>(std::move(module), device);
  });
}

}  // namespace hdlm
