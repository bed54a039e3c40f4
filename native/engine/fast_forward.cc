#include "engine/fast_forward.h"

#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "cuda/fused_kernels.h"

#ifdef HDLM_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace hdlm {

struct FastForward::Graph {
  int calls = 0;
  at::Tensor tokens, out;
#ifdef HDLM_WITH_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph;
#endif
};

// Eager calls before a shape is captured: the first ones initialise cuBLAS workspaces and
// the caching allocator, which must not happen inside a capture.
constexpr int kWarmupCalls = 2;

#ifdef HDLM_WITH_CUDA
// One capture stream per device for the whole process: a pool stream per capture would leave a
// cuBLAS workspace behind on every stream the pool hands out.
c10::cuda::CUDAStream capture_stream(c10::DeviceIndex index) {
  static std::mutex mutex;
  static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> streams;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = streams.find(index);
  if (it == streams.end()) it = streams.emplace(index, c10::cuda::getStreamFromPool(false, index)).first;
  return it->second;
}
#endif

FastForward::~FastForward() = default;

std::unique_ptr<FastForward> FastForward::from_module(const torch::jit::Module& m, const at::Device& device) {
  for (const char* name : {"embedding", "inv_freq", "norm1", "attn_qkv", "attn_out", "norm2", "mlp0_w", "mlp0_b",
                           "mlp2_w", "mlp2_b", "norm_final", "out_w", "out_b", "hidden_size", "n_heads", "head_dim"}) {
    if (!m.hasattr(name)) return nullptr;
  }
  std::unique_ptr<FastForward> f(new FastForward());
  f->device_ = device;
  // bf16 activations and weights on CUDA (fp32 accumulation in the GEMMs); the CPU stays fp32.
  // HDLM_FAST_FP32=1 keeps CUDA in fp32 too, on ATen's kernels (the fused ones are bf16): a
  // diagnostic, to measure what bf16 costs in fidelity (docs/fast-mode-fidelity.md).
  static const bool fp32 = [] {
    const char* env = std::getenv("HDLM_FAST_FP32");
    return env && std::string(env) == "1";
  }();
  f->dtype_ = device.is_cuda() && !fp32 ? at::kBFloat16 : at::kFloat;
  f->hidden_size_ = m.attr("hidden_size").toInt();
  f->n_heads_ = m.attr("n_heads").toInt();
  f->head_dim_ = m.attr("head_dim").toInt();
  auto cast = [&](const at::Tensor& t) { return t.to(device, f->dtype_).contiguous(); };
  auto list = [&](const char* name) {
    std::vector<at::Tensor> out;
    for (const auto& t : m.attr(name).toTensorList()) out.push_back(cast(t));
    return out;
  };
  f->embedding_ = cast(m.attr("embedding").toTensor());
  f->inv_freq_ = m.attr("inv_freq").toTensor().to(device, at::kFloat);
  f->norm1_ = list("norm1");
  f->qkv_ = list("attn_qkv");
  f->attn_out_ = list("attn_out");
  f->norm2_ = list("norm2");
  f->mlp0_w_ = list("mlp0_w");
  f->mlp0_b_ = list("mlp0_b");
  f->mlp2_w_ = list("mlp2_w");
  f->mlp2_b_ = list("mlp2_b");
  f->norm_final_ = cast(m.attr("norm_final").toTensor());
  // The output head with its rows padded to a multiple of 8 (bias −inf, never sampled): aligned
  // logit rows give the GEMM its fast kernels. head() reads the unpadded view.
  auto out_w = cast(m.attr("out_w").toTensor());
  auto out_b = cast(m.attr("out_b").toTensor());
  const int64_t V = out_w.size(0), padded = (V + 7) / 8 * 8;
  f->out_w_pad_ = at::zeros({padded, out_w.size(1)}, out_w.options());
  f->out_w_pad_.narrow(0, 0, V).copy_(out_w);
  f->out_b_pad_ = at::full({padded}, -std::numeric_limits<double>::infinity(), out_b.options());
  f->out_b_pad_.narrow(0, 0, V).copy_(out_b);
  f->out_w_ = f->out_w_pad_.narrow(0, 0, V);
  f->out_b_ = f->out_b_pad_.narrow(0, 0, V);
  f->fused_ = f->dtype_ == at::kBFloat16 && device.is_cuda() && f->head_dim_ % 2 == 0 && fused::available(device);
  return f;
}

std::pair<at::Tensor, at::Tensor> FastForward::rotary(int64_t length) {
  auto it = rotary_cache_.find(length);
  if (it != rotary_cache_.end()) return it->second;
  auto positions = at::arange(length, at::TensorOptions().dtype(at::kFloat).device(device_));
  auto ang = at::outer(positions, inv_freq_);
  auto emb = at::cat({ang, ang}, -1);
  // [1, L, 1, 1, d]: broadcasts over batch, {q, k} and heads. The sine's first half is negated
  // so that rotate_half(x)·sin becomes roll(x, d/2)·sin_signed.
  auto sin = ang.sin();
  auto cos = emb.cos().to(dtype_).view({1, length, 1, 1, head_dim_});
  auto sin_signed = at::cat({sin.neg(), sin}, -1).to(dtype_).view({1, length, 1, 1, head_dim_});
  return rotary_cache_[length] = {cos, sin_signed};
}

std::pair<at::Tensor, at::Tensor> FastForward::rotary_table(int64_t length) {
  auto it = rotary_table_cache_.find(length);
  if (it != rotary_table_cache_.end()) return it->second;
  auto positions = at::arange(length, at::TensorOptions().dtype(at::kFloat).device(device_));
  auto ang = at::outer(positions, inv_freq_);
  return rotary_table_cache_[length] = {ang.cos().contiguous(), ang.sin().contiguous()};
}

#ifdef HDLM_WITH_CUDA
// The CUDA forward with fused kernels: per block, LayerNorm (with the previous block's MLP bias
// added to the residual in the same pass), the QKV GEMM, rotary on q and k in place, fused (SDPA)
// attention on views of qkv, and three GEMMs that accumulate into the residual in place or apply
// bias + GELU in their epilogue.
at::Tensor FastForward::run_fused(const at::Tensor& tokens) {
  const int64_t B = tokens.size(0), L = tokens.size(1), D = hidden_size_, H = n_heads_, d = head_dim_;
  const auto [cos, sin] = rotary_table(L);
  auto h = at::embedding(embedding_, tokens).view({B * L, D}).contiguous();
  auto a = at::empty_like(h);
  for (size_t i = 0; i < qkv_.size(); ++i) {
    fused::layer_norm_rows(h, {}, i == 0 ? at::Tensor() : mlp2_b_[i - 1], norm1_[i], a, 1e-5);
    auto qkv = at::mm(a, qkv_[i].t());
    fused::rotary_qk(qkv, cos, sin, L, H, d);
    // q, k, v as strided views of qkv: the attention kernel reads them in place
    auto heads = qkv.view({B, L, 3, H, d});
    auto o = at::scaled_dot_product_attention(heads.select(2, 0).transpose(1, 2), heads.select(2, 1).transpose(1, 2),
                                              heads.select(2, 2).transpose(1, 2));
    h.addmm_(o.transpose(1, 2).reshape({B * L, D}), attn_out_[i].t());
    fused::layer_norm_rows(h, {}, {}, norm2_[i], a, 1e-5);
    auto z = at::_addmm_activation(mlp0_b_[i], a, mlp0_w_[i].t(), 1, 1, /*use_gelu=*/true);
    h.addmm_(z, mlp2_w_[i].t());
  }
  if (!mlp2_b_.empty()) h.add_(mlp2_b_.back());
  return h.view({B, L, D});
}
#else
at::Tensor FastForward::run_fused(const at::Tensor& tokens) { return run(tokens); }
#endif

at::Tensor FastForward::run(const at::Tensor& tokens) {
  if (fused_) return run_fused(tokens);
  // Few, large kernels: at B = 1 the step is bound by kernel count, not by FLOPs.
  const int64_t B = tokens.size(0), L = tokens.size(1), D = hidden_size_, H = n_heads_, d = head_dim_;
  const auto [cos, sin_signed] = rotary(L);
  auto h = at::embedding(embedding_, tokens).view({B * L, D});
  for (size_t i = 0; i < qkv_.size(); ++i) {
    auto a = at::layer_norm(h, {D}, norm1_[i], {}, 1e-5);
    auto qkv = at::mm(a, qkv_[i].t()).view({B, L, 3, H, d});
    // rotate_half(x)·sin = roll(x, d/2)·[-sin, sin] (NeoX halves): q and k in three kernels.
    auto qk = qkv.narrow(2, 0, 2);
    auto rotated = at::addcmul(qk * cos, qk.roll(d / 2, -1), sin_signed);
    auto q = rotated.select(2, 0).transpose(1, 2);
    auto k = rotated.select(2, 1).transpose(1, 2);
    auto v = qkv.select(2, 2).transpose(1, 2);
#if TORCH_VERSION_MAJOR >= 2
    auto o = at::scaled_dot_product_attention(q, k, v);
#else
    auto o = at::matmul(at::softmax(at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(d)), -1), v);
#endif
    h = at::addmm(h, o.transpose(1, 2).reshape({B * L, D}), attn_out_[i].t());
    auto m = at::layer_norm(h, {D}, norm2_[i], {}, 1e-5);
#if TORCH_VERSION_MAJOR >= 2
    // GEMM with the bias and tanh-GELU in its epilogue.
    auto z = at::_addmm_activation(mlp0_b_[i], m, mlp0_w_[i].t(), 1, 1, /*use_gelu=*/true);
#else
    auto z = at::gelu(at::linear(m, mlp0_w_[i], mlp0_b_[i]), "tanh");
#endif
    h = at::addmm(h, z, mlp2_w_[i].t()).add_(mlp2_b_[i]);
  }
  return h.view({B, L, D});
}

at::Tensor FastForward::hidden(const at::Tensor& tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
#ifdef HDLM_WITH_CUDA
  static const bool graphs_enabled = [] {
    const char* env = std::getenv("HDLM_CUDA_GRAPHS");
    return !(env && std::string(env) == "0");
  }();
  if (device_.is_cuda() && graphs_enabled) {
    auto& slot = graphs_[{tokens.size(0), tokens.size(1)}];
    if (!slot) slot = std::make_unique<Graph>();
    Graph& g = *slot;
    if (g.graph) {
      g.tokens.copy_(tokens);
      g.graph->replay();
      return g.out.clone();
    }
    if (++g.calls <= kWarmupCalls) return run(tokens);
    // Capture on a side stream (capture is illegal on the legacy default stream), ordered after
    // the current stream's pending work.
    g.tokens = tokens.clone();
    auto current = c10::cuda::getCurrentCUDAStream(device_.index());
    auto side = capture_stream(device_.index());
    at::cuda::CUDAEvent before_capture;
    before_capture.record(current);
    before_capture.block(side);
    {
      c10::cuda::CUDAStreamGuard guard(side);
      g.graph = std::make_unique<at::cuda::CUDAGraph>();
      g.graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
      g.out = run(g.tokens);
      g.graph->capture_end();
    }
    at::cuda::CUDAEvent after_capture;
    after_capture.record(side);
    after_capture.block(current);
    g.graph->replay();
    return g.out.clone();
  }
#endif
  return run(tokens);
}

at::Tensor FastForward::head(const at::Tensor& rows) const {
  auto u = at::layer_norm(rows, {hidden_size_}, norm_final_, {}, 1e-5);
  return at::linear(u, out_w_, out_b_).to(at::kFloat);
}

at::Tensor FastForward::head_rows(const at::Tensor& hidden, const at::Tensor& index) const {
  at::Tensor u;
  if (fused_) {
    auto h = hidden;
    u = at::empty({index.numel(), hidden_size_}, hidden.options());
    fused::layer_norm_rows(h, index, {}, norm_final_, u, 1e-5);
  } else {
    u = at::layer_norm(hidden.index_select(0, index), {hidden_size_}, norm_final_, {}, 1e-5);
  }
  return at::addmm(out_b_pad_, u, out_w_pad_.t());
}

}  // namespace hdlm
