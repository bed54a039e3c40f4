// The host side of the fused kernels (fused_kernels.h): compiles fused_kernels.cu once per
// device (nvrtc.h), checks arguments and launches. A CPU build has only the "unavailable" answers.
#include "cuda/fused_kernels.h"

#include <algorithm>
#include <cstdlib>

#ifdef HDLM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>

#include <map>
#include <mutex>
#include <vector>

#include "cuda/nvrtc.h"
#include "hdlm_embedded_sources.h"
#endif

namespace hdlm {
namespace fused {

#ifdef HDLM_WITH_CUDA
namespace {

struct Kernels {
  bool ok = false;
  std::string why;
  nvrtc::CUfunction rotary = nullptr, layer_norm = nullptr, layer_norm_any = nullptr, gumbel_f32 = nullptr,
                    gumbel_bf16 = nullptr, keys_to_index = nullptr, write_selected = nullptr;
};

std::mutex g_mutex;
std::map<int, Kernels> g_kernels;

Kernels compile(int device) {
  Kernels k;
  std::vector<nvrtc::CUfunction> f;
  if (!nvrtc::load_kernels(device, embedded::cuda_fused_kernels_cu, "fused_kernels.cu",
                           {"rotary_qk", "layer_norm_rows", "layer_norm_rows_any", "gumbel_keys_f32",
                            "gumbel_keys_bf16", "keys_to_index", "write_selected"},
                           f, k.why)) {
    return k;
  }
  k.rotary = f[0];
  k.layer_norm = f[1];
  k.layer_norm_any = f[2];
  k.gumbel_f32 = f[3];
  k.gumbel_bf16 = f[4];
  k.keys_to_index = f[5];
  k.write_selected = f[6];
  k.ok = true;
  return k;
}

const Kernels& kernels(int device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_kernels.find(device);
  if (it == g_kernels.end()) {
    const char* env = std::getenv("HDLM_FUSED_KERNELS");
    Kernels k;
    if (env && std::string(env) == "0") {
      k.why = "disabled by HDLM_FUSED_KERNELS=0";
    } else {
      try {
        k = compile(device);
      } catch (const std::exception& e) {
        k.ok = false;
        k.why = std::string("the fused kernels are unavailable: ") + e.what();
      }
    }
    it = g_kernels.emplace(device, std::move(k)).first;
  }
  return it->second;
}

using nvrtc::launch;

}  // namespace

bool available(const at::Device& device, std::string* why) {
  if (!device.is_cuda()) {
    if (why) *why = "not a CUDA device";
    return false;
  }
  const auto& k = kernels(device.index() < 0 ? 0 : device.index());
  if (why) *why = k.why;
  return k.ok;
}

void rotary_qk(at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, int64_t length, int64_t heads,
               int64_t head_dim) {
  const auto& ks = kernels(qkv.device().index());
  TORCH_CHECK(ks.ok && qkv.is_contiguous() && qkv.scalar_type() == at::kBFloat16 && cos.scalar_type() == at::kFloat &&
                  head_dim % 2 == 0,
              "rotary_qk: bad arguments");
  void* qkv_p = qkv.data_ptr();
  const void* cos_p = cos.data_ptr();
  const void* sin_p = sin.data_ptr();
  long long rows = qkv.size(0);
  int len = static_cast<int>(length), h = static_cast<int>(heads), d = static_cast<int>(head_dim);
  int width = (head_dim / 2) % 8 == 0 ? 8 : 1;
  void* args[] = {&qkv_p, &cos_p, &sin_p, &rows, &len, &h, &d, &width};
  const int64_t threads = rows * 2 * heads * (head_dim / 2 / width);
  launch(ks.rotary, (threads + 127) / 128, 128, args);
}

void layer_norm_rows(at::Tensor& h, const at::Tensor& gather, const at::Tensor& bias, const at::Tensor& weight,
                     at::Tensor& out, double eps) {
  const auto& ks = kernels(h.device().index());
  TORCH_CHECK(
      ks.ok && h.is_contiguous() && out.is_contiguous() && h.scalar_type() == at::kBFloat16 &&
          (!gather.defined() || (gather.scalar_type() == at::kLong && gather.is_contiguous() && !bias.defined())),
      "layer_norm_rows: bad arguments");
  void* h_p = h.data_ptr();
  const void* g_p = gather.defined() ? gather.data_ptr() : nullptr;
  const void* b_p = bias.defined() ? bias.data_ptr() : nullptr;
  const void* w_p = weight.data_ptr();
  void* o_p = out.data_ptr();
  int D = static_cast<int>(h.size(-1));
  long long rows = gather.defined() ? gather.numel() : h.numel() / D;
  if (rows == 0) return;
  float e = static_cast<float>(eps);
  void* args[] = {&h_p, &g_p, &b_p, &w_p, &o_p, &rows, &D, &e};
  constexpr int kWarps = 4;
  // 16-byte accesses need D % 8 == 0 and aligned rows; the register-resident row caps D at 2048.
  const bool vector = D % 8 == 0 && D <= 2048 && reinterpret_cast<uintptr_t>(h_p) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(o_p) % 16 == 0 && reinterpret_cast<uintptr_t>(w_p) % 16 == 0 &&
                      (!b_p || reinterpret_cast<uintptr_t>(b_p) % 16 == 0);
  launch(vector ? ks.layer_norm : ks.layer_norm_any, (rows + kWarps - 1) / kWarps, 32 * kWarps, args);
}

at::Tensor gumbel_keys(const at::Tensor& logits, int64_t vocab, double temperature, uint64_t seed, uint64_t stream) {
  TORCH_CHECK(logits.dim() == 2 && logits.stride(1) == 1 && logits.size(1) >= vocab &&
                  (logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kBFloat16),
              "gumbel_keys: bad arguments");
  const auto& ks = kernels(logits.device().index());
  TORCH_CHECK(ks.ok, "gumbel_keys: fused kernels unavailable");
  const int64_t rows = logits.size(0);
  auto keys = at::zeros({rows}, logits.options().dtype(at::kLong));
  if (rows == 0) return keys;
  const void* l_p = logits.data_ptr();
  long long stride = logits.stride(0);
  int V = static_cast<int>(vocab);
  float t = static_cast<float>(temperature);
  unsigned long long s = seed, st = stream;
  void* k_p = keys.data_ptr();
  void* args[] = {&l_p, &stride, &V, &t, &s, &st, &k_p};
  // About two blocks per multiprocessor in all, at most 64 slices per row.
  const int64_t sms = at::cuda::getDeviceProperties(logits.device().index())->multiProcessorCount;
  const int64_t slices = std::max<int64_t>(1, std::min<int64_t>(64, (2 * sms + rows - 1) / rows));
  launch(logits.scalar_type() == at::kFloat ? ks.gumbel_f32 : ks.gumbel_bf16, rows, 256, args, slices);
  return keys;
}

at::Tensor gumbel_argmax(const at::Tensor& logits, double temperature, uint64_t seed, uint64_t stream) {
  if (!logits.is_cuda() || !available(logits.device()) || logits.dim() != 2 ||
      (logits.scalar_type() != at::kFloat && logits.scalar_type() != at::kBFloat16)) {
    return {};
  }
  auto l = logits.stride(1) == 1 ? logits : logits.contiguous();
  auto keys = gumbel_keys(l, l.size(1), temperature, seed, stream);
  auto out = at::empty({l.size(0)}, l.options().dtype(at::kLong));
  if (l.size(0) == 0) return out;
  const auto& ks = kernels(l.device().index());
  const void* k_p = keys.data_ptr();
  void* o_p = out.data_ptr();
  int n = static_cast<int>(l.size(0));
  void* args[] = {&k_p, &o_p, &n};
  launch(ks.keys_to_index, (n + 255) / 256, 256, args);
  return out;
}

void write_selected(const at::Tensor& keys, const at::Tensor& sel, const at::Tensor& take_if_masked,
                    const at::Tensor& take_if_unmasked, at::Tensor& x, at::Tensor& written, int64_t n,
                    int64_t mask_id) {
  const auto& ks = kernels(x.device().index());
  TORCH_CHECK(ks.ok && x.is_contiguous() && x.scalar_type() == at::kLong && sel.scalar_type() == at::kLong &&
                  keys.numel() >= n && sel.numel() >= n && take_if_masked.numel() >= n &&
                  take_if_unmasked.numel() >= n && written.numel() >= n,
              "write_selected: bad arguments");
  if (n == 0) return;
  const void* k_p = keys.data_ptr();
  const void* s_p = sel.data_ptr();
  const void* m_p = take_if_masked.data_ptr();
  const void* u_p = take_if_unmasked.data_ptr();
  void* x_p = x.data_ptr();
  void* w_p = written.data_ptr();
  int count = static_cast<int>(n);
  long long mask = mask_id;
  void* args[] = {&k_p, &s_p, &m_p, &u_p, &x_p, &w_p, &count, &mask};
  launch(ks.write_selected, (count + 127) / 128, 128, args);
}

#else  // CPU build: no fused kernels

bool available(const at::Device&, std::string* why) {
  if (why) *why = "built without CUDA";
  return false;
}
void rotary_qk(at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "fused kernels need a CUDA build");
}
void layer_norm_rows(at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&, double) {
  TORCH_CHECK(false, "fused kernels need a CUDA build");
}
at::Tensor gumbel_keys(const at::Tensor&, int64_t, double, uint64_t, uint64_t) {
  TORCH_CHECK(false, "fused kernels need a CUDA build");
}
at::Tensor gumbel_argmax(const at::Tensor&, double, uint64_t, uint64_t) { return {}; }
void write_selected(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&,
                    at::Tensor&, int64_t, int64_t) {
  TORCH_CHECK(false, "fused kernels need a CUDA build");
}

#endif

}  // namespace fused
}  // namespace hdlm
