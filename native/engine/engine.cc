// Implements the engine's face (engine.h) for the epsilon and gamma families on libtorch: builds
// or loads the TorchScript module, runs forward, the samplers and the evaluation, and turns
// every libtorch failure into an EngineError. The runtime queries are in runtime.cc, GPT-2 in
// models/gpt2.cc.
#include "engine/engine.h"

#include <fcntl.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "engine/checkpoint.h"
#include "engine/eval.h"
#include "engine/fast_forward.h"
#include "engine/guarded.h"
#include "engine/models/epsilon.h"
#include "engine/models/gamma.h"
#include "engine/samplers/common.h"
#include "engine/samplers/samplers.h"

namespace hdlm {

EvalResult Model::evaluate(const EvalRequest& request, const std::atomic<bool>&) {
  eval_unsupported(request.op, info().family);
}

std::shared_ptr<BatchedSampler> Model::open_batch() {
  throw EngineError("HDLM_UNSUPPORTED", "batched sampling needs an epsilon_hybrid model with the fast path");
}

void Model::save_torchscript(const std::string&) {
  throw EngineError("HDLM_UNSUPPORTED", "only hdlm models (epsilon_hybrid, gamma_hybrid) are saved as TorchScript");
}

namespace {

at::Device parse_device(const std::string& name) {
  at::Device device = guarded("HDLM_INVALID_ARGUMENT", "device", [&] { return at::Device(name); });
  if (device.is_cuda()) {
#ifdef HDLM_WITH_CUDA
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    if (count == 0) throw EngineError("HDLM_UNSUPPORTED", "device '" + name + "': no CUDA device is available");
    if (device.has_index() && device.index() >= count) {
      throw EngineError("HDLM_INVALID_ARGUMENT",
                        "device '" + name + "': only " + std::to_string(count) + " CUDA device(s)");
    }
    if (!device.has_index()) device = at::Device(at::kCUDA, 0);
#else
    throw EngineError("HDLM_UNSUPPORTED", "device '" + name + "': this build of hdlm links a CPU-only libtorch");
#endif
  } else if (!device.is_cpu()) {
    throw EngineError("HDLM_UNSUPPORTED", "device '" + name + "': only cpu and cuda are supported");
  }
  return device;
}

std::string device_name(const at::Device& d) { return d.str(); }

// Writes `module` to the new file `path`. libtorch's file writer throws from its destructor
// when a write came up short (a full disk), which ends in std::terminate; here the serializer
// writes into a sink that never fails and keeps the first error, reported once it returned.
void write_module_file(const torch::jit::Module& module, const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw EngineError("HDLM_IO", "cannot create " + path + ": " + std::strerror(errno));
  int error = 0;
  const auto sink = [fd, &error](const void* data, size_t n) -> size_t {
    const char* p = static_cast<const char*>(data);
    size_t left = n;
    while (error == 0 && left > 0) {
      const ssize_t w = ::write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        error = w < 0 ? errno : EIO;
        break;
      }
      p += w;
      left -= static_cast<size_t>(w);
    }
    return n;
  };
  try {
    torch::jit::ExportModule(module, sink);
  } catch (...) {
    ::close(fd);
    ::unlink(path.c_str());
    throw;
  }
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error != 0) {
    ::unlink(path.c_str());
    throw EngineError("HDLM_IO", "cannot write " + path + ": " + std::strerror(error));
  }
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::Fp32: return "fp32";
    case Precision::ContextA: return "A";
    case Precision::ContextB: return "B";
    case Precision::ContextC: return "C";
  }
  return "fp32";
}

class TorchScriptModel : public Model {
 public:
  TorchScriptModel(torch::jit::Module module, at::Device device, Precision precision)
      : module_(std::move(module)), device_(device) {
    gamma_ = module_.attr("hdlm_family").toStringRef() == "gamma_hybrid";
    if (module_.hasattr("precision")) {
      if (precision != Precision::Fp32 && !device_.is_cuda()) {
        throw EngineError("HDLM_UNSUPPORTED", std::string("precision context ") + precision_name(precision) +
                                                  " reproduces upstream's CUDA forward and needs a CUDA device");
      }
      module_.setattr("precision", static_cast<int64_t>(precision));
      precision_ = precision_name(precision);
    }
  }

  ModelInfo info() const override {
    ModelInfo info;
    info.family = module_.attr("hdlm_family").toStringRef();
    info.config_json = module_.attr("hdlm_config").toStringRef();
    info.format_version = module_.attr("hdlm_format").toInt();
    info.device = device_name(device_);
    info.precision = precision_;
    return info;
  }

  Logits forward(const std::vector<int32_t>& tokens, int64_t batch, int64_t length,
                 const std::vector<int32_t>& positions, const std::vector<float>& sigma, bool fast) override {
    if (gamma_ && sigma.empty())
      throw EngineError("HDLM_INVALID_ARGUMENT", "a gamma_hybrid model's forward needs sigma");
    if (!gamma_ && !sigma.empty())
      throw EngineError("HDLM_INVALID_ARGUMENT", "an epsilon_hybrid model's forward takes no sigma");
    if (gamma_ && fast) throw EngineError("HDLM_UNSUPPORTED", "fast mode is for epsilon_hybrid models");
    return guarded("HDLM_NATIVE", "forward", [&] {
      c10::InferenceMode guard;
      const auto opts = at::TensorOptions().dtype(at::kLong).device(device_);
      auto x = at::tensor(tokens, at::kInt).view({batch, length}).to(opts);
      at::Tensor logits;
      if (fast) {
        auto& f = fast_forward();
        auto h = f.hidden(x);
        logits = f.head(h.reshape({-1, h.size(-1)})).view({batch, length, -1});
      } else {
        auto pos = positions.empty() ? at::arange(length, opts).unsqueeze(0).expand({batch, length}).contiguous()
                                     : at::tensor(positions, at::kInt).view({batch, length}).to(opts);
        at::Tensor sig;
        if (gamma_) sig = at::tensor(sigma, at::kFloat).view({batch, length}).to(device_);
        logits = call_forward(x, pos, sig);
      }
      logits = logits.to(at::kFloat).cpu().contiguous();
      Logits out;
      out.batch = logits.size(0);
      out.length = logits.size(1);
      out.vocab = logits.size(2);
      out.data.assign(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
      return out;
    });
  }

  std::vector<int32_t> sample(const SampleOptions& options, const std::atomic<bool>& abort,
                              const StepCallback& on_step) override {
    return guarded("HDLM_NATIVE", "sampling", [&] {
      c10::InferenceMode guard;
      if (gamma_)
        throw EngineError("HDLM_UNSUPPORTED",
                          "full_diff / semi_diff are epsilon_hybrid samplers; this is a gamma_hybrid model");
      const EpsilonSampler which = choose_epsilon_sampler(options);
      if (which == EpsilonSampler::SemiShifted && !module_.find_method("forward_with_mask")) {
        throw EngineError("HDLM_UNSUPPORTED",
                          "semi_diff_shifted needs attention masks: this TorchScript module has no "
                          "forward_with_mask(tokens, positions, attn_mask)");
      }
      EpsilonSamplerModel model;
      model.forward = [this](const at::Tensor& x, const at::Tensor& pos, const at::Tensor& mask) {
        if (!mask.defined()) return call_forward(x, pos, at::Tensor());
        torch::jit::GraphOptimizerEnabledGuard no_rewrites(false);
        auto out = module_.get_method("forward_with_mask")({x, pos, mask});
        if (!out.isTensor())
          throw EngineError("HDLM_BAD_FILE", "the model's forward_with_mask did not return a tensor");
        return out.toTensor();
      };
      model.fast = [this]() -> FastForward& { return fast_forward(); };
      auto x = run_epsilon_sampler(which, model, options, device_, abort, on_step).to(at::kInt).contiguous();
      return std::vector<int32_t>(x.data_ptr<int32_t>(), x.data_ptr<int32_t>() + x.numel());
    });
  }

  std::vector<int32_t> sample_gamma(const GammaSampleOptions& options, const std::atomic<bool>& abort,
                                    const StepCallback& on_step) override {
    if (!gamma_)
      throw EngineError("HDLM_UNSUPPORTED",
                        "the gamma samplers need a gamma_hybrid model; this is an epsilon_hybrid model");
    if (!module_.find_method("forward_with_mask")) {
      throw EngineError("HDLM_UNSUPPORTED",
                        "this TorchScript module has no forward_with_mask(tokens, positions, sigma, attn_mask), which "
                        "the gamma samplers need");
    }
    return guarded("HDLM_NATIVE", "sampling", [&] {
      c10::InferenceMode guard;
      auto fwd = [this](const at::Tensor& x, const at::Tensor& sigma, const at::Tensor& pos, const at::Tensor& mask) {
        torch::jit::GraphOptimizerEnabledGuard no_rewrites(false);
        auto out = module_.get_method("forward_with_mask")({x, pos, sigma, mask});
        if (!out.isTensor())
          throw EngineError("HDLM_BAD_FILE", "the model's forward_with_mask did not return a tensor");
        return out.toTensor();
      };
      auto x = run_gamma_sampler(fwd, options, device_, abort, on_step).to(at::kInt).contiguous();
      return std::vector<int32_t>(x.data_ptr<int32_t>(), x.data_ptr<int32_t>() + x.numel());
    });
  }

  std::shared_ptr<BatchedSampler> open_batch() override {
    if (gamma_) return Model::open_batch();
    // refuses a module without hdlm's layout now, not at the first step
    guarded("HDLM_NATIVE", "fast forward", [&] {
      c10::InferenceMode guard;
      fast_forward();
    });
    return make_batched_fast_sampler([this]() -> FastForward& { return fast_forward(); }, device_);
  }

  void save_torchscript(const std::string& path) override {
    guarded("HDLM_IO", "saving " + path, [&] { write_module_file(module_, path); });
  }

  // Evaluation: the Monte-Carlo masked likelihood of upstream's hdlm/zeroshot_ppl.py; gamma
  // models get σ̄ = request.sigma at every position.
  EvalResult evaluate(const EvalRequest& request, const std::atomic<bool>& abort) override {
    return guarded("HDLM_NATIVE", "evaluation", [&] {
      c10::InferenceMode guard;
      if (request.op != "mc_loglik") eval_unsupported(request.op, module_.attr("hdlm_family").toStringRef());
      const double sigma = request.sigma;
      auto fwd = [this, sigma](const at::Tensor& x, const at::Tensor& pos) {
        at::Tensor sig;
        if (gamma_) sig = at::full(x.sizes(), sigma, at::TensorOptions().dtype(at::kFloat).device(x.device()));
        return call_forward(x, pos, sig);
      };
      return eval_mc_loglik(fwd, device_, request, abort);
    });
  }

 private:
  // Built on first use: a second copy of the weights in the device's compute dtype.
  FastForward& fast_forward() {
    std::lock_guard<std::mutex> lock(fast_mutex_);
    if (!fast_) {
      if (gamma_) throw EngineError("HDLM_UNSUPPORTED", "fast mode is for epsilon_hybrid models");
      fast_ = FastForward::from_module(module_, device_);
      if (!fast_) {
        throw EngineError(
            "HDLM_UNSUPPORTED",
            "fast mode needs a model built by hdlm (this TorchScript module has another layout); use reference mode");
      }
    }
    return *fast_;
  }

  at::Tensor call_forward(const at::Tensor& x, const at::Tensor& pos, const at::Tensor& sigma) {
    // Run the graph as written: no fusion, no rewrites (fused kernels would change the bits,
    // and upstream's reference runs had TorchScript GPU fusion off). The flag is per thread.
    torch::jit::GraphOptimizerEnabledGuard no_rewrites(false);
    auto out = gamma_ ? module_.forward({x, pos, sigma}) : module_.forward({x, pos});
    if (!out.isTensor()) throw EngineError("HDLM_BAD_FILE", "the model's forward did not return a tensor");
    auto logits = out.toTensor();
    if (logits.dim() != 3 || logits.size(0) != x.size(0) || logits.size(1) != x.size(1)) {
      throw EngineError("HDLM_BAD_FILE", "the model's forward returned shape " + c10::str(logits.sizes()) +
                                             ", expected [" + std::to_string(x.size(0)) + ", " +
                                             std::to_string(x.size(1)) + ", vocab]");
    }
    return logits;
  }

  // torch::jit::Module is a handle; a copy shares the module, and concurrent forward calls on
  // it are safe (the graph executor locks its own plan cache).
  torch::jit::Module module_;
  at::Device device_;
  bool gamma_ = false;
  std::string precision_ = "module";
  std::mutex fast_mutex_;
  std::unique_ptr<FastForward> fast_;
};

void check_interface(const torch::jit::Module& m, const std::string& path) {
  const auto fail = [&](const std::string& why) {
    throw EngineError("HDLM_BAD_FILE",
                      path + " is not an hdlm TorchScript model: " + why + " (see README, \"TorchScript interface\")");
  };
  if (!m.hasattr("hdlm_format") || !m.attr("hdlm_format").isInt()) fail("it has no integer attribute 'hdlm_format'");
  if (!m.hasattr("hdlm_family") || !m.attr("hdlm_family").isString()) fail("it has no string attribute 'hdlm_family'");
  const bool gamma = m.attr("hdlm_family").toStringRef() == "gamma_hybrid";
  const int64_t version = gamma ? kGammaFormatVersion : kEpsilonFormatVersion;
  if (m.attr("hdlm_format").toInt() != version) {
    fail("its hdlm_format is " + std::to_string(m.attr("hdlm_format").toInt()) + ", this version reads " +
         std::to_string(version));
  }
  if (!m.hasattr("hdlm_config") || !m.attr("hdlm_config").isString()) fail("it has no string attribute 'hdlm_config'");
  auto method = m.find_method("forward");
  if (!method) fail("it has no forward method");
  // forward(self, tokens, positions) or, for gamma_hybrid, forward(self, tokens, positions, sigma)
  if (gamma && method->function().getSchema().arguments().size() != 4)
    fail("its forward does not take (tokens, positions, sigma)");
  if (!gamma && method->function().getSchema().arguments().size() != 3)
    fail("its forward does not take (tokens, positions)");
}

}  // namespace

std::shared_ptr<Model> build_model(const BuildSpec& spec) {
  const auto device = parse_device(spec.device);
  if (spec.arch.family != "epsilon_hybrid" && spec.arch.family != "gamma_hybrid") {
    throw EngineError("HDLM_UNSUPPORTED",
                      "model family '" + spec.arch.family + "' is not supported by the native builder");
  }
  auto module = guarded("HDLM_BAD_FILE", spec.weights_path, [&] {
    c10::InferenceMode guard;
    auto weights = read_safetensors(spec.weights_path, spec.file_size, spec.tensors);
    for (auto& kv : weights) kv.second = kv.second.to(device);
    if (spec.arch.family == "gamma_hybrid") return build_gamma_module(spec.arch, weights, spec.config_json);
    return build_epsilon_module(spec.arch, weights, spec.config_json);
  });
  return std::make_shared<TorchScriptModel>(std::move(module), device, spec.precision);
}

std::shared_ptr<Model> load_torchscript(const std::string& path, const std::string& device_str, Precision precision) {
  const auto device = parse_device(device_str);
  auto module = guarded("HDLM_BAD_FILE", path + " could not be read as TorchScript",
                        [&] { return torch::jit::load(path, device); });
  check_interface(module, path);
  module.eval();
  return std::make_shared<TorchScriptModel>(std::move(module), device, precision);
}

}  // namespace hdlm
