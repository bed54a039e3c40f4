#include "engine/samplers/common.h"

#include <ATen/CPUGeneratorImpl.h>
#ifdef HDLM_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

#include "cuda/fused_kernels.h"
#include "engine/finite.h"

namespace hdlm {

using at::indexing::Slice;

at::Generator make_sampling_generator(const at::Device& device, uint64_t seed) {
#ifdef HDLM_WITH_CUDA
  if (device.is_cuda()) {
    auto gen = at::cuda::detail::createCUDAGenerator(device.index());
    gen.set_current_seed(seed);
    return gen;
  }
#endif
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

void check_sampled_rows(const at::Tensor& rows) {
  check_finite_rows(rows, [&](int64_t r) {
    return "in the logits of a position being sampled (row " + std::to_string(r) + " of the " +
           std::to_string(rows.numel() / rows.size(-1)) + " sampled this step)";
  });
}

at::Tensor uniform_f64(at::IntArrayRef shape, at::Generator& gen, const at::Device& device) {
  return at::rand(shape, gen, at::TensorOptions().dtype(at::kDouble).device(device));
}

at::Tensor gumbel_argmax_f64(const at::Tensor& rows, double temperature, at::Generator& gen, const at::Device& device) {
  if (rows.size(0) == 0) return at::empty({0}, at::TensorOptions().dtype(at::kLong).device(device));
  check_sampled_rows(rows);
  auto l = rows.to(at::kDouble);
  auto g = (-uniform_f64(l.sizes(), gen, device).log()).pow(temperature);
  return (l.exp() / g).argmax(-1);
}

at::Tensor sample_fast(const at::Tensor& l, double temperature, uint64_t seed, uint64_t& calls, at::Generator& gen) {
  if (l.size(0) == 0) return at::empty({0}, l.options().dtype(at::kLong));
  check_sampled_rows(l);
  auto fused = fused::gumbel_argmax(l, temperature, seed, calls++);
  if (fused.defined()) return fused;
  if (temperature == 0) return l.argmax(-1);
  if (l.is_cuda()) {  // no fused kernels: argmax(l/T + Gumbel) = argmax(l − T·ln E), E ~ Exp(1)
    auto log_e = at::empty(l.sizes(), l.options()).exponential_(1.0, gen).log_();
    return at::sub(l, log_e, temperature).argmax(-1);
  }
  return at::multinomial(at::softmax(l / temperature, -1), 1, /*replacement=*/false, gen).squeeze(1);
}

std::vector<float> time_grid(int64_t steps, double eps, const at::Device& device) {
  auto tau = at::linspace(1.0, eps, steps + 1, at::TensorOptions().dtype(at::kFloat).device(device)).cpu();
  return std::vector<float>(tau.data_ptr<float>(), tau.data_ptr<float>() + tau.numel());
}

at::Tensor prompt_tensor(const SampleOptions& o, const at::Device& device) {
  return at::tensor(o.prompt, at::TensorOptions().dtype(at::kInt))
      .view({o.batch_size, o.prompt_length})
      .to(at::TensorOptions().dtype(at::kLong).device(device));
}

at::Tensor fixed_tensor(const SampleOptions& o, const at::Device& device) {
  if (o.fixed_tokens.empty()) return at::Tensor();
  return at::tensor(o.fixed_tokens, at::TensorOptions().dtype(at::kInt))
      .view({o.batch_size, o.context_length})
      .to(at::TensorOptions().dtype(at::kLong).device(device));
}

at::Tensor with_guidance(const SampleOptions& o, const at::Tensor& x, const at::Tensor& fixed) {
  auto un_x = x.clone();
  if (o.prompt_length > 0) un_x.index_put_({Slice(), Slice(0, o.prompt_length)}, o.mask_id);
  if (fixed.defined()) un_x.masked_fill_(fixed.narrow(1, 0, x.size(1)), o.mask_id);
  return at::cat({x, un_x});
}

at::Tensor guided(const SampleOptions& o, const at::Tensor& both) {
  auto parts = both.chunk(2, 0);
  return parts[1] + (o.cfg_scale + 1.0) * (parts[0] - parts[1]);
}

void report_step(const StepCallback& on_step, bool with_tokens, int64_t every, const at::Tensor& x, int64_t done,
                 int64_t total) {
  if (!on_step) return;
  const bool report = reports(every, done, total);
  std::vector<int32_t> tokens;
  if (with_tokens && report) {
    auto cpu = x.to(at::kInt).cpu().contiguous();
    tokens.assign(cpu.data_ptr<int32_t>(), cpu.data_ptr<int32_t>() + cpu.numel());
  }
  on_step(done, total, report, std::move(tokens));
}

}  // namespace hdlm
