// Implements engine.h on libtorch: builds or loads the TorchScript module, runs forward and
// the samplers, and turns every libtorch failure into an EngineError.
#include "engine.h"

#include <torch/script.h>
#include <torch/version.h>
#include <torch/cuda.h>
#include <ATen/Parallel.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#ifdef HDLM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <cstdio>
#include <filesystem>
#include <mutex>
#include <random>

#include <unistd.h>

#include "checkpoint.h"
#include "eval.h"
#include "fast_forward.h"
#include "model_epsilon.h"
#include "sampler.h"


namespace hdlm {
namespace {

// Runs `fn`, mapping libtorch and standard errors to EngineError with a short message
// (c10::Error carries a C++ backtrace that means nothing to a JS user).
template <typename F>
auto guarded(const std::string& code, const std::string& context, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const EngineError&) {
    throw;
  } catch (const c10::Error& e) {
    throw EngineError(code, context + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw EngineError(code, context + ": " + e.what());
  }
}

at::Device parse_device(const std::string& name) {
  at::Device device = guarded("HDLM_INVALID_ARGUMENT", "device", [&] { return at::Device(name); });
  if (device.is_cuda()) {
#ifdef HDLM_WITH_CUDA
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    if (count == 0) throw EngineError("HDLM_UNSUPPORTED", "device '" + name + "': no CUDA device is available");
    if (device.has_index() && device.index() >= count) {
      throw EngineError("HDLM_INVALID_ARGUMENT", "device '" + name + "': only " + std::to_string(count) + " CUDA device(s)");
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

// Saves to a unique temp name next to `path`, then renames: readers never see a partial file.
void save_atomically(torch::jit::Module& module, const std::string& path) {
  namespace fs = std::filesystem;
  std::random_device rd;
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  try {
    fs::create_directories(fs::path(path).parent_path());
    module.save(tmp);
    fs::rename(tmp, path);
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
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
                 const std::vector<int32_t>& positions, bool fast) override {
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
        logits = call_forward(x, pos);
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
      at::Tensor x;
      if (options.fast) {
        x = run_fast_sampler(fast_forward(), options, device_, abort, on_step);
      } else {
        auto fwd = [this](const at::Tensor& x, const at::Tensor& pos) { return call_forward(x, pos); };
        x = run_sampler(fwd, options, device_, abort, on_step);
      }
      x = x.to(at::kInt).contiguous();
      return std::vector<int32_t>(x.data_ptr<int32_t>(), x.data_ptr<int32_t>() + x.numel());
    });
  }

  // Evaluation (issue 8): the Monte-Carlo masked likelihood of upstream's zeroshot_ppl.py.
  EvalResult evaluate(const EvalRequest& request, const std::atomic<bool>& abort) override {
    return guarded("HDLM_NATIVE", "evaluation", [&] {
      c10::InferenceMode guard;
      if (request.op != "mc_loglik") eval_unsupported(request.op, module_.attr("hdlm_family").toStringRef());
      auto fwd = [this](const at::Tensor& x, const at::Tensor& pos) { return call_forward(x, pos); };
      return eval_mc_loglik(fwd, device_, request, abort);
    });
  }

 private:
  // Built on first use: a second copy of the weights in the device's compute dtype.
  FastForward& fast_forward() {
    std::lock_guard<std::mutex> lock(fast_mutex_);
    if (!fast_) {
      fast_ = FastForward::from_module(module_, device_);
      if (!fast_) {
        throw EngineError("HDLM_UNSUPPORTED",
                          "fast mode needs a model built by hdlm (this TorchScript module has another layout); use reference mode");
      }
    }
    return *fast_;
  }

  at::Tensor call_forward(const at::Tensor& x, const at::Tensor& pos) {
    // Run the graph as written: no fusion, no rewrites (fused kernels would change the bits,
    // and upstream's reference runs had TorchScript GPU fusion off). The flag is per thread.
    torch::jit::GraphOptimizerEnabledGuard no_rewrites(false);
    auto out = module_.forward({x, pos});
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
  std::string precision_ = "module";
  std::mutex fast_mutex_;
  std::unique_ptr<FastForward> fast_;
};

void check_interface(const torch::jit::Module& m, const std::string& path) {
  const auto fail = [&](const std::string& why) {
    throw EngineError("HDLM_BAD_FILE", path + " is not an hdlm TorchScript model: " + why +
                                           " (see README, \"TorchScript interface\")");
  };
  if (!m.hasattr("hdlm_format") || !m.attr("hdlm_format").isInt()) fail("it has no integer attribute 'hdlm_format'");
  if (m.attr("hdlm_format").toInt() != kEpsilonFormatVersion) {
    fail("its hdlm_format is " + std::to_string(m.attr("hdlm_format").toInt()) + ", this version reads " +
         std::to_string(kEpsilonFormatVersion));
  }
  if (!m.hasattr("hdlm_family") || !m.attr("hdlm_family").isString()) fail("it has no string attribute 'hdlm_family'");
  if (!m.hasattr("hdlm_config") || !m.attr("hdlm_config").isString()) fail("it has no string attribute 'hdlm_config'");
  auto method = m.find_method("forward");
  if (!method) fail("it has no forward method");
  // forward(self, tokens, positions)
  if (method->function().getSchema().arguments().size() != 3) fail("its forward does not take (tokens, positions)");
}

}  // namespace

std::shared_ptr<Model> build_model(const BuildSpec& spec) {
  const auto device = parse_device(spec.device);
  if (spec.arch.family != "epsilon_hybrid") {
    throw EngineError("HDLM_UNSUPPORTED", "model family '" + spec.arch.family + "' is not supported by the native builder");
  }
  auto module = guarded("HDLM_BAD_FILE", spec.weights_path, [&] {
    c10::InferenceMode guard;
    auto weights = read_safetensors(spec.weights_path, spec.file_size, spec.tensors);
    for (auto& kv : weights) kv.second = kv.second.to(device);
    return build_epsilon_module(spec.arch, weights, spec.config_json);
  });
  if (!spec.cache_path.empty()) {
    guarded("HDLM_NATIVE", "saving the TorchScript cache " + spec.cache_path, [&] { save_atomically(module, spec.cache_path); });
  }
  return std::make_shared<TorchScriptModel>(std::move(module), device, spec.precision);
}

std::shared_ptr<Model> load_torchscript(const std::string& path, const std::string& device_str, Precision precision) {
  const auto device = parse_device(device_str);
  auto module = guarded("HDLM_BAD_FILE", path + " could not be read as TorchScript", [&] {
    return torch::jit::load(path, device);
  });
  check_interface(module, path);
  module.eval();
  return std::make_shared<TorchScriptModel>(std::move(module), device, precision);
}

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.libtorch_version = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                          std::to_string(TORCH_VERSION_PATCH);
#ifdef HDLM_WITH_CUDA
  info.cuda_compiled = true;
  info.cuda_device_count = static_cast<int64_t>(torch::cuda::device_count());
#endif
  info.threads = at::get_num_threads();
  return info;
}

CudaMemory cuda_memory(int64_t device_index, bool reset_peak) {
  CudaMemory out;
#ifdef HDLM_WITH_CUDA
  guarded("HDLM_INVALID_ARGUMENT", "cuda memory", [&] {
    const auto index = static_cast<c10::DeviceIndex>(device_index);
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    out.allocated = stats.allocated_bytes[0].current;  // [0]: the aggregate over pool kinds
    out.peak_allocated = stats.allocated_bytes[0].peak;
    out.reserved = stats.reserved_bytes[0].current;
    if (reset_peak) c10::cuda::CUDACachingAllocator::resetPeakStats(index);
  });
#endif
  return out;
}

void set_threads(int64_t n) {
  guarded("HDLM_INVALID_ARGUMENT", "threads", [&] { at::set_num_threads(static_cast<int>(n)); });
}

}  // namespace hdlm
