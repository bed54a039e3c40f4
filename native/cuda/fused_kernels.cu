// The fast path's fused kernels (declared for the host in fused_kernels.h), compiled at run
// time by NVRTC (nvrtc.cc) for the GPU in use, so building the addon needs no CUDA compiler.
// Plain CUDA C++ without any header: bf16 is handled as its bit pattern; fp32 math throughout.
// Every kernel is extern "C", looked up by name in fused_kernels.cc.
typedef unsigned short bf16;
__device__ __forceinline__ float bf2f(bf16 x) { return __uint_as_float(((unsigned int)x) << 16); }
__device__ __forceinline__ bf16 f2bf(float f) {
  unsigned int u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                        // round to nearest even
  return (bf16)(u >> 16);
}
// Eight bf16 in one 16-byte access.
struct __align__(16) bf16x8 {
  unsigned int w[4];
};
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
extern "C" __global__ void rotary_qk(bf16* __restrict__ qkv, const float* __restrict__ cos_t,
                                     const float* __restrict__ sin_t, long long rows, int length, int heads,
                                     int head_dim, int width) {
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

// Philox4x32-10 (Salmon et al. 2011): 64 random bits per (counter, key).
__device__ __forceinline__ unsigned long long philox(unsigned int c0, unsigned int c1, unsigned int c2, unsigned int c3,
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
  return ((unsigned long long)c0 << 32) | c1;  // two of the four output words
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
      const unsigned long long bits =
          philox((unsigned int)j, (unsigned int)row, (unsigned int)stream, (unsigned int)(stream >> 32),
                 (unsigned int)seed, (unsigned int)(seed >> 32));
      // 52 bits centred in their bins: u in [2^-53, 1 - 2^-53], every value exact in double (53
      // bits + 0.5 would round the top one to 1), never 0 or 1, as reference mode's float64
      // uniforms. The noise -ln(-ln u) is computed in double: its upper tail then reaches 36.7,
      // where fp32 stops at 16.6, so a token 17 or more nats below the best keeps its small chance.
      // That matters where the model is sure of a token, as at the unmasked positions acs resamples.
      const double u = ((double)(bits >> 12) + 0.5) * (1.0 / 4503599627370496.0);
      v += temperature * (float)-log(-log(u));
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

extern "C" __global__ void keys_to_index(const unsigned long long* __restrict__ keys, long long* __restrict__ out,
                                         int n) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < n) out[j] = key_index(keys[j]);
}

// The write of one fast step: for j < n, position p = sel[j] takes the sampled token if its
// current value selects it (masked: take_if_masked[j], unmasked: take_if_unmasked[j]), else keeps
// it; written[j] receives the value it ends with.
extern "C" __global__ void write_selected(const unsigned long long* __restrict__ keys,
                                          const long long* __restrict__ sel, const bool* __restrict__ take_if_masked,
                                          const bool* __restrict__ take_if_unmasked, long long* __restrict__ x,
                                          long long* __restrict__ written, int n, long long mask_id) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const long long p = sel[j], current = x[p];
  const bool take = current == mask_id ? take_if_masked[j] : take_if_unmasked[j];
  const long long value = take ? key_index(keys[j]) : current;
  x[p] = value;
  written[j] = value;
}
