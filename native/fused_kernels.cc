#include "fused_kernels.h"

#include <algorithm>
#include <cstdlib>

#ifdef HDLM_WITH_CUDA
#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <map>
#include <mutex>
#include <vector>
#endif

namespace hdlm {
namespace fused {

#ifdef HDLM_WITH_CUDA
namespace {

// bf16 is handled as its bit pattern (no CUDA headers inside NVRTC); fp32 math throughout.
const char* kSource = R"CUDA(
typedef unsigned short bf16;
__device__ __forceinline__ float bf2f(bf16 x) { return __uint_as_float(((unsigned int)x) << 16); }
__device__ __forceinline__ bf16 f2bf(float f) {
  unsigned int u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                          // round to nearest even
  return (bf16)(u >> 16);
}
// Eight bf16 in one 16-byte access.
struct __align__(16) bf16x8 { unsigned int w[4]; };
__device__ __forceinline__ void unpack8(const bf16x8& u, float* f) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(u.w[i] << 16);
    f[2 * i + 1] = __uint_as_float(u.w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ bf16x8 pack8(const float* f) {
  bf16x8 u;
#pragma unroll
  for (int i = 0; i < 4; ++i) u.w[i] = (unsigned int)f2bf(f[2 * i]) | ((unsigned int)f2bf(f[2 * i + 1]) << 16);
  return u;
}

// In place on the q and k thirds of qkv [rows, 3D]: NeoX-halves rotary per head, angles from
// cos/sin [L, d/2] fp32. One thread per (row, q|k, head, chunk of `width` pairs); width 8 (16-byte
// accesses) when d/2 is a multiple of 8, else 1.
extern "C" __global__ void rotary_qk(bf16* __restrict__ qkv, const float* __restrict__ cos_t, const float* __restrict__ sin_t,
                                     long long rows, int length, int heads, int head_dim, int width) {
  const int half = head_dim / 2, chunks = half / width, D = heads * head_dim;
  const long long per_row = 2LL * heads * chunks;
  const long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (t >= rows * per_row) return;
  const long long row = t / per_row;
  const int r = (int)(t - row * per_row);
  const int c = r % chunks, hw = r / chunks;  // hw: 0 .. 2·heads − 1 (q heads, then k heads)
  bf16* x = qkv + row * 3 * D + hw * head_dim + c * width;
  const int pos = (int)(row % length);
  const float* cs = cos_t + pos * half + c * width;
  const float* sn = sin_t + pos * half + c * width;
  if (width == 8) {
    float x1[8], x2[8], y1[8], y2[8];
    unpack8(*(const bf16x8*)x, x1);
    unpack8(*(const bf16x8*)(x + half), x2);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      y1[i] = x1[i] * cs[i] - x2[i] * sn[i];
      y2[i] = x2[i] * cs[i] + x1[i] * sn[i];
    }
    *(bf16x8*)x = pack8(y1);
    *(bf16x8*)(x + half) = pack8(y2);
  } else {
    const float x1 = bf2f(x[0]), x2 = bf2f(x[half]);
    x[0] = f2bf(x1 * cs[0] - x2 * sn[0]);
    x[half] = f2bf(x2 * cs[0] + x1 * sn[0]);
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per output row r, reading input row gather[r] (r without gather). With bias (only
// without gather) h = bf16(h + bias) is written back first. out = LayerNorm(h)·weight, no
// LayerNorm bias. The row stays in registers: D a multiple of 8, at most 2048.
extern "C" __global__ void layer_norm_rows(bf16* __restrict__ h, const long long* __restrict__ gather,
                                           const bf16* __restrict__ bias, const bf16* __restrict__ weight,
                                           bf16* __restrict__ out, long long rows, int D, float eps) {
  const int lane = threadIdx.x & 31;
  const long long row = blockIdx.x * (long long)(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int nvec = D / 8;
  bf16x8* x = (bf16x8*)(h + (gather ? gather[row] : row) * D);
  float v[8][8];
  float sum = 0.f;
#pragma unroll
  for (int c = 0; c < 8; ++c) {
    const int j = c * 32 + lane;
    if (j < nvec) {
      unpack8(x[j], v[c]);
      if (bias) {
        float b[8];
        unpack8(((const bf16x8*)bias)[j], b);
#pragma unroll
        for (int i = 0; i < 8; ++i) v[c][i] = bf2f(f2bf(v[c][i] + b[i]));
        x[j] = pack8(v[c]);
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += v[c][i];
    }
  }
  const float mean = warp_sum(sum) / D;
  float sq = 0.f;
#pragma unroll
  for (int c = 0; c < 8; ++c) {
    if (c * 32 + lane < nvec) {
#pragma unroll
      for (int i = 0; i < 8; ++i) sq += (v[c][i] - mean) * (v[c][i] - mean);
    }
  }
  const float rstd = rsqrtf(warp_sum(sq) / D + eps);
  bf16x8* y = (bf16x8*)(out + row * D);
#pragma unroll
  for (int c = 0; c < 8; ++c) {
    const int j = c * 32 + lane;
    if (j < nvec) {
      float w[8];
      unpack8(((const bf16x8*)weight)[j], w);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[c][i] = (v[c][i] - mean) * rstd * w[i];
      y[j] = pack8(v[c]);
    }
  }
}

// The same for any D (three passes over the row in memory).
extern "C" __global__ void layer_norm_rows_any(bf16* __restrict__ h, const long long* __restrict__ gather,
                                               const bf16* __restrict__ bias, const bf16* __restrict__ weight,
                                               bf16* __restrict__ out, long long rows, int D, float eps) {
  const int lane = threadIdx.x & 31;
  const long long row = blockIdx.x * (long long)(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  bf16* x = h + (gather ? gather[row] : row) * D;
  float sum = 0.f;
  for (int j = lane; j < D; j += 32) {
    float v = bf2f(x[j]);
    if (bias) {
      const bf16 r = f2bf(v + bf2f(bias[j]));
      x[j] = r;
      v = bf2f(r);
    }
    sum += v;
  }
  const float mean = warp_sum(sum) / D;
  float sq = 0.f;
  for (int j = lane; j < D; j += 32) {
    const float v = bf2f(x[j]) - mean;
    sq += v * v;
  }
  const float rstd = rsqrtf(warp_sum(sq) / D + eps);
  bf16* y = out + row * D;
  for (int j = lane; j < D; j += 32) y[j] = f2bf((bf2f(x[j]) - mean) * rstd * bf2f(weight[j]));
}

// Philox4x32-10 (Salmon et al. 2011): one 32-bit word per (counter, key).
__device__ __forceinline__ unsigned int philox(unsigned int c0, unsigned int c1, unsigned int c2, unsigned int c3,
                                               unsigned int k0, unsigned int k1) {
  for (int r = 0; r < 10; ++r) {
    const unsigned int hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const unsigned int hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c0;
}

// (value, index) as one integer whose order is argmax order: larger value first, NaN above
// everything (as torch.argmax), ties to the lowest index.
__device__ __forceinline__ unsigned long long argmax_key(float v, int j) {
  unsigned int u = __float_as_uint(v);
  u = (v != v) ? 0xffffffffu : ((u & 0x80000000u) ? ~u : (u | 0x80000000u));
  return ((unsigned long long)u << 32) | (unsigned int)(0x7fffffff - j);
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return bf2f(x); }

// keys[row] = max over this block's slice of the row of argmax_key(l_j + T·G_j), G_j Gumbel noise
// from Philox keyed by (seed, stream, row, j) (l_j alone for T = 0). Grid (rows, slices): many
// blocks per row, so that a handful of rows still fills the GPU; keys must start at 0.
template <typename T>
__device__ void gumbel_keys(const T* __restrict__ logits, long long row_stride, int V, float temperature,
                            unsigned long long seed, unsigned long long stream, unsigned long long* __restrict__ keys) {
  const int row = blockIdx.x;
  const int per = (V + gridDim.y - 1) / gridDim.y;
  const int j0 = blockIdx.y * per, j1 = min(V, j0 + per);
  const T* l = logits + row * row_stride;
  unsigned long long best = 0;
  for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
    float v = to_float(l[j]);
    if (temperature > 0.f) {
      const unsigned int bits = philox((unsigned int)j, (unsigned int)row, (unsigned int)stream,
                                       (unsigned int)(stream >> 32), (unsigned int)seed, (unsigned int)(seed >> 32));
      // 23 bits centred in their bins: u in [2^-24, 1 - 2^-24], all exact in fp32, never 0 or 1.
      // (24 bits + 0.5 rounds the top value to exactly 1: -ln(-ln 1) = +inf then picks a uniformly
      // random token, about V * 2^-24 = 0.3 % of the rows for a 50k vocabulary.)
      const float u = ((float)(bits >> 9) + 0.5f) * (1.0f / 8388608.0f);
      v += temperature * -logf(-logf(u));
    }
    const unsigned long long k = argmax_key(v, j);
    if (k > best) best = k;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long other = __shfl_xor_sync(0xffffffffu, best, o);
    if (other > best) best = other;
  }
  if ((threadIdx.x & 31) == 0) atomicMax(keys + row, best);
}
extern "C" __global__ void gumbel_keys_f32(const float* l, long long s, int V, float t, unsigned long long seed,
                                           unsigned long long stream, unsigned long long* keys) {
  gumbel_keys(l, s, V, t, seed, stream, keys);
}
extern "C" __global__ void gumbel_keys_bf16(const bf16* l, long long s, int V, float t, unsigned long long seed,
                                            unsigned long long stream, unsigned long long* keys) {
  gumbel_keys(l, s, V, t, seed, stream, keys);
}

__device__ __forceinline__ long long key_index(unsigned long long key) {
  return 0x7fffffffLL - (long long)(key & 0xffffffffu);
}

extern "C" __global__ void keys_to_index(const unsigned long long* __restrict__ keys, long long* __restrict__ out, int n) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < n) out[j] = key_index(keys[j]);
}

// The write of one fast step: for j < n, position p = sel[j] takes the sampled token if its
// current value selects it (masked: take_if_masked[j], unmasked: take_if_unmasked[j]), else keeps
// it; written[j] receives the value it ends with.
extern "C" __global__ void write_selected(const unsigned long long* __restrict__ keys, const long long* __restrict__ sel,
                                          const bool* __restrict__ take_if_masked, const bool* __restrict__ take_if_unmasked,
                                          long long* __restrict__ x, long long* __restrict__ written, int n, long long mask_id) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const long long p = sel[j], current = x[p];
  const bool take = current == mask_id ? take_if_masked[j] : take_if_unmasked[j];
  const long long value = take ? key_index(keys[j]) : current;
  x[p] = value;
  written[j] = value;
}
)CUDA";

// The few NVRTC and driver entry points we use, resolved with dlopen/dlsym: libtorch's wheels ship
// neither nvrtc.h nor libtorch's own NVRTC header, and linking libcuda directly would break loading
// the addon on machines without a driver.
using CUresult = int;
using CUfunction = void*;
using CUmodule = void*;
using CUstream = void*;
using CUcontext = void*;
using nvrtcResult = int;
using nvrtcProgram = void*;
constexpr int kSuccess = 0;

struct Api {
  nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram*, const char*, const char*, int, const char* const*, const char* const*);
  nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int, const char* const*);
  nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t*);
  nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char*);
  nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram, size_t*);
  nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram, char*);
  nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram*);
  const char* (*nvrtcGetErrorString)(nvrtcResult);
  CUresult (*cuModuleLoadData)(CUmodule*, const void*);
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                             void**, void**);
  CUresult (*cuCtxGetCurrent)(CUcontext*);
  CUresult (*cuGetErrorString)(CUresult, const char**);
};

template <typename F>
bool resolve(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

// Loads the API once; `why` says what is missing when it fails.
const Api* api(std::string* why) {
  static std::string error;
  static const Api* loaded = [] () -> const Api* {
    // libtorch loads its NVRTC (found through its own RPATH) on first use; asking for it first
    // lets the dlopen below find the same library by soname.
    try {
      (void)at::globalContext().getNVRTC();
    } catch (const std::exception&) {
    }
    void* nvrtc = nullptr;
    const std::string major = std::to_string(CUDART_VERSION / 1000);
    for (const std::string name : {"libnvrtc.so." + major, std::string("libnvrtc.so")}) {
      if ((nvrtc = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL))) break;
    }
    void* cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvrtc || !cuda) {
      error = std::string("could not load ") + (!nvrtc ? "libnvrtc" : "libcuda");
      return nullptr;
    }
    static Api a;
    if (!resolve(nvrtc, "nvrtcCreateProgram", a.nvrtcCreateProgram) || !resolve(nvrtc, "nvrtcCompileProgram", a.nvrtcCompileProgram) ||
        !resolve(nvrtc, "nvrtcGetProgramLogSize", a.nvrtcGetProgramLogSize) || !resolve(nvrtc, "nvrtcGetProgramLog", a.nvrtcGetProgramLog) ||
        !resolve(nvrtc, "nvrtcGetCUBINSize", a.nvrtcGetCUBINSize) || !resolve(nvrtc, "nvrtcGetCUBIN", a.nvrtcGetCUBIN) ||
        !resolve(nvrtc, "nvrtcDestroyProgram", a.nvrtcDestroyProgram) || !resolve(nvrtc, "nvrtcGetErrorString", a.nvrtcGetErrorString) ||
        !resolve(cuda, "cuModuleLoadData", a.cuModuleLoadData) || !resolve(cuda, "cuModuleGetFunction", a.cuModuleGetFunction) ||
        !resolve(cuda, "cuLaunchKernel", a.cuLaunchKernel) || !resolve(cuda, "cuCtxGetCurrent", a.cuCtxGetCurrent) ||
        !resolve(cuda, "cuGetErrorString", a.cuGetErrorString)) {
      error = "libnvrtc / libcuda lack an expected entry point";
      return nullptr;
    }
    return &a;
  }();
  if (!loaded && why) *why = error;
  return loaded;
}

struct Kernels {
  bool ok = false;
  std::string why;
  CUfunction rotary = nullptr, layer_norm = nullptr, layer_norm_any = nullptr, gumbel_f32 = nullptr, gumbel_bf16 = nullptr,
             keys_to_index = nullptr, write_selected = nullptr;
};

std::mutex g_mutex;
std::map<int, Kernels> g_kernels;

Kernels compile(int device) {
  Kernels k;
  const Api* nv = api(&k.why);
  if (!nv) return k;
  const auto* prop = at::cuda::getDeviceProperties(device);
  const std::string arch = "--gpu-architecture=sm_" + std::to_string(prop->major) + std::to_string(prop->minor);
  nvrtcProgram prog;
  if (nv->nvrtcCreateProgram(&prog, kSource, "hdlm_fused.cu", 0, nullptr, nullptr) != kSuccess) {
    k.why = "nvrtcCreateProgram failed";
    return k;
  }
  std::vector<const char*> opts = {arch.c_str(), "--std=c++17"};
  const auto res = nv->nvrtcCompileProgram(prog, static_cast<int>(opts.size()), opts.data());
  if (res != kSuccess) {
    size_t log_size = 0;
    nv->nvrtcGetProgramLogSize(prog, &log_size);
    std::string log(log_size, '\0');
    if (log_size) nv->nvrtcGetProgramLog(prog, &log[0]);
    k.why = std::string("NVRTC could not compile the fused kernels (") + arch + "): " + nv->nvrtcGetErrorString(res) + " " + log;
    nv->nvrtcDestroyProgram(&prog);
    return k;
  }
  size_t size = 0;
  nv->nvrtcGetCUBINSize(prog, &size);
  std::string cubin(size, '\0');
  nv->nvrtcGetCUBIN(prog, &cubin[0]);
  nv->nvrtcDestroyProgram(&prog);
  // The module lives in the device's primary context (the one the CUDA runtime uses) for the rest
  // of the process, like libtorch's own JIT kernels.
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  cudaFree(nullptr);
  CUmodule module;
  if (nv->cuModuleLoadData(&module, cubin.data()) != kSuccess ||
      nv->cuModuleGetFunction(&k.rotary, module, "rotary_qk") != kSuccess ||
      nv->cuModuleGetFunction(&k.layer_norm, module, "layer_norm_rows") != kSuccess ||
      nv->cuModuleGetFunction(&k.layer_norm_any, module, "layer_norm_rows_any") != kSuccess ||
      nv->cuModuleGetFunction(&k.gumbel_f32, module, "gumbel_keys_f32") != kSuccess ||
      nv->cuModuleGetFunction(&k.gumbel_bf16, module, "gumbel_keys_bf16") != kSuccess ||
      nv->cuModuleGetFunction(&k.keys_to_index, module, "keys_to_index") != kSuccess ||
      nv->cuModuleGetFunction(&k.write_selected, module, "write_selected") != kSuccess) {
    k.why = "could not load the fused kernels' module";
    return k;
  }
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

void launch(CUfunction f, int64_t grid, int block, void** args, int64_t grid_y = 1) {
  const Api* nv = api(nullptr);
  CUcontext ctx = nullptr;
  nv->cuCtxGetCurrent(&ctx);
  if (!ctx) cudaFree(nullptr);  // a thread that has not used the runtime yet: bind the primary context
  const auto stream = at::cuda::getCurrentCUDAStream();
  const CUresult r = nv->cuLaunchKernel(f, static_cast<unsigned>(grid), static_cast<unsigned>(grid_y), 1, static_cast<unsigned>(block), 1, 1, 0,
                                        static_cast<CUstream>(stream.stream()), args, nullptr);
  if (r != kSuccess) {
    const char* msg = nullptr;
    nv->cuGetErrorString(r, &msg);
    TORCH_CHECK(false, "fused kernel launch failed: ", msg ? msg : "unknown CUDA error");
  }
}

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

void rotary_qk(at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, int64_t length, int64_t heads, int64_t head_dim) {
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

void layer_norm_rows(at::Tensor& h, const at::Tensor& gather, const at::Tensor& bias, const at::Tensor& weight, at::Tensor& out,
                     double eps) {
  const auto& ks = kernels(h.device().index());
  TORCH_CHECK(ks.ok && h.is_contiguous() && out.is_contiguous() && h.scalar_type() == at::kBFloat16 &&
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
                    const at::Tensor& take_if_unmasked, at::Tensor& x, at::Tensor& written, int64_t n, int64_t mask_id) {
  const auto& ks = kernels(x.device().index());
  TORCH_CHECK(ks.ok && x.is_contiguous() && x.scalar_type() == at::kLong && sel.scalar_type() == at::kLong &&
                  keys.numel() >= n && sel.numel() >= n && take_if_masked.numel() >= n && take_if_unmasked.numel() >= n &&
                  written.numel() >= n,
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
void write_selected(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&, at::Tensor&, int64_t,
                    int64_t) {
  TORCH_CHECK(false, "fused kernels need a CUDA build");
}

#endif

}  // namespace fused
}  // namespace hdlm
