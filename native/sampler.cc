// Semantics follow hdlm-reference §4.0–§4.3 exactly, including the order of random draws
// (all float64 uniforms from one generator seeded like torch.manual_seed) and the fp32
// arithmetic of the thresholds. This file is compiled with -ffp-contract=off so that the
// host-side fp32 expressions round once per operation, as PyTorch's kernels do.
#include "sampler.h"

#include <algorithm>
#include <vector>

#ifdef HDLM_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif
#include <ATen/CPUGeneratorImpl.h>

namespace hdlm {
namespace {

using at::indexing::Slice;

at::Generator make_generator(const at::Device& device, uint64_t seed) {
#ifdef HDLM_WITH_CUDA
  if (device.is_cuda()) {
    auto gen = at::cuda::detail::createCUDAGenerator(device.index());
    gen.set_current_seed(seed);
    return gen;
  }
#endif
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

struct Sampler {
  const ForwardFn& forward;
  const SampleOptions& o;
  at::Device device;
  at::Generator gen;
  at::Tensor prompt;  // [B, P] int64 on device, or undefined

  at::Tensor uniform(at::IntArrayRef shape) {
    return at::rand(shape, gen, at::TensorOptions().dtype(at::kDouble).device(device));
  }

  // Gumbel-max in float64: argmax exp(l) / (-ln u)^T, one draw of N×V uniforms (§4.0).
  at::Tensor gumbel_argmax(const at::Tensor& rows) {
    if (rows.size(0) == 0) return at::empty({0}, at::TensorOptions().dtype(at::kLong).device(device));
    auto l = rows.to(at::kDouble);
    auto u = uniform(l.sizes());
    auto g = (-u.log()).pow(o.temperature);
    return (l.exp() / g).argmax(-1);
  }

  at::Tensor logits_for(const at::Tensor& x, const at::Tensor& positions) {
    if (o.cfg_scale <= 0) return forward(x, positions);
    // Classifier-free guidance as upstream intends it (§4.2): the unconditional copy has the
    // prompt positions masked; both go through the model as one batch of 2B.
    auto un_x = x.clone();
    un_x.index_put_({Slice(), Slice(0, o.prompt_length)}, o.mask_id);
    auto both = forward(at::cat({x, un_x}), at::cat({positions, positions}));
    auto parts = both.chunk(2, 0);
    return parts[1] + (o.cfg_scale + 1.0) * (parts[0] - parts[1]);
  }

  // One step of `alg` on the prefix x (B × n). in_block restricts selections (semi_diff);
  // undefined for full_diff.
  void step(at::Tensor x, const at::Tensor& logits, const at::Tensor& masked, const at::Tensor& unmasked,
            const at::Tensor& in_block, bool last, float t, float s) {
    const int64_t B = x.size(0), n = x.size(1);
    // p = 1 - s/t in fp32, exactly 1 on the last step; thresholds derived from it in fp32.
    const float p = last ? 1.0f : 1.0f - s / t;
    const float one_minus_p = last ? 0.0f : 1.0f - p;
    const float eta_threshold = last ? 0.0f : static_cast<float>(o.eta) * one_minus_p;
    auto restrict = [&](at::Tensor sel) { return in_block.defined() ? sel & in_block : sel; };

    switch (o.alg) {
      case Algorithm::Original: {
        auto sel_m = restrict((uniform({B, n}) < static_cast<double>(p)) & masked);
        x.index_put_({sel_m}, gumbel_argmax(logits.index({sel_m})));
        break;
      }
      case Algorithm::Acs: {
        auto u1 = uniform({B, n});
        auto u2 = uniform({B, n});
        auto sel_m = restrict((u1 < static_cast<double>(p)) & masked);
        auto sel_u = restrict((u2 < static_cast<double>(eta_threshold)) & unmasked);
        auto a = gumbel_argmax(logits.index({sel_m}));
        auto b = gumbel_argmax(logits.index({sel_u}));
        x.index_put_({sel_m}, a);
        x.index_put_({sel_u}, b);
        break;
      }
      case Algorithm::Remask: {
        x.index_put_({masked}, gumbel_argmax(logits.index({masked})));
        x.index_put_({uniform({B, n}) < static_cast<double>(one_minus_p)}, o.mask_id);
        break;
      }
      case Algorithm::RemaskAdhocShuffle: {
        auto sel_u = restrict((uniform({B, n}) < static_cast<double>(eta_threshold)) & unmasked);
        auto a = gumbel_argmax(logits.index({masked}));
        auto b = gumbel_argmax(logits.index({sel_u}));
        x.index_put_({masked}, a);
        x.index_put_({sel_u}, b);
        x.index_put_({uniform({B, n}) < static_cast<double>(one_minus_p)}, o.mask_id);
        break;
      }
      case Algorithm::Remdm: {
        const double alpha_t = 1.0 - static_cast<double>(t), alpha_s = 1.0 - static_cast<double>(s);
        const double sigma = alpha_t > 0 ? std::min(o.eta, (1.0 - alpha_s) / alpha_t) : o.eta;
        auto q = at::softmax(logits, -1) * (1.0 - sigma);
        q.index_put_({"...", o.mask_id}, sigma);
        auto z = (q + 1e-8).log();
        auto chosen = gumbel_argmax(z.reshape({-1, z.size(-1)})).view({B, n});
        x.index_put_({masked}, chosen.index({masked}));
        break;
      }
    }
  }

  void impose_prompt(at::Tensor& x) {
    if (prompt.defined()) x.index_put_({Slice(), Slice(0, o.prompt_length)}, prompt);
  }

  at::Tensor run(const std::atomic<bool>& abort, const StepCallback& on_step) {
    const int64_t B = o.batch_size, L = o.context_length;
    const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device);
    auto x = at::full({B, L}, o.mask_id, long_opts);
    if (o.prompt_length > 0) {
      prompt = at::tensor(o.prompt, at::TensorOptions().dtype(at::kInt)).view({B, o.prompt_length}).to(long_opts);
      impose_prompt(x);
    }
    auto positions = at::arange(L, long_opts).unsqueeze(0).expand({B, L}).contiguous();
    // τ = linspace(1, eps, steps + 1) in fp32 on the sampling device (upstream: on CUDA).
    auto tau_t = at::linspace(1.0, o.eps, o.steps + 1, at::TensorOptions().dtype(at::kFloat).device(device)).cpu();
    std::vector<float> tau(tau_t.data_ptr<float>(), tau_t.data_ptr<float>() + tau_t.numel());

    const int64_t n_blocks = o.semi ? (L + o.block_size - 1) / o.block_size : 1;
    const int64_t total = n_blocks * o.steps;
    int64_t done = 0;
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t start = o.semi ? blk * o.block_size : 0;
      const int64_t end = o.semi ? std::min(start + o.block_size, L) : L;
      at::Tensor in_block;
      if (o.semi) {
        in_block = at::zeros({B, end}, long_opts.dtype(at::kBool));
        in_block.index_put_({Slice(), Slice(start, end)}, true);
      }
      auto pos = positions.index({Slice(), Slice(0, end)}).contiguous();
      for (int64_t i = 0; i < o.steps; ++i) {
        if (abort.load(std::memory_order_relaxed)) throw EngineError("HDLM_ABORTED", "sampling was aborted");
        auto xs = o.semi ? x.index({Slice(), Slice(0, end)}).contiguous() : x;
        auto masked = xs == o.mask_id;
        auto unmasked = masked.logical_not();
        auto logits = logits_for(xs, pos);
        step(xs, logits, masked, unmasked, in_block, i == o.steps - 1, tau[i], tau[i + 1]);
        if (o.semi) x.index_put_({Slice(), Slice(0, end)}, xs);
        impose_prompt(x);
        ++done;
        if (on_step) {
          std::vector<int32_t> tokens;
          if (o.step_tokens) {
            auto cpu = x.to(at::kInt).cpu().contiguous();
            tokens.assign(cpu.data_ptr<int32_t>(), cpu.data_ptr<int32_t>() + cpu.numel());
          }
          on_step(done, total, std::move(tokens));
        }
      }
    }
    return x.cpu();
  }
};

}  // namespace

at::Tensor run_sampler(const ForwardFn& forward, const SampleOptions& options, const at::Device& device,
                       const std::atomic<bool>& abort, const StepCallback& on_step) {
  Sampler sampler{forward, options, device, make_generator(device, options.seed), {}};
  return sampler.run(abort, on_step);
}

}  // namespace hdlm
