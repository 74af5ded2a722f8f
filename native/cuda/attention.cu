// Causal self-attention on the GPU: the CUDA twin of native/cpu/attention.cc (contract: cpu/attention.h), a
// straightforward version. Forward: one block per query row (b, h, i) computes the scores, the softmax row (saved)
// and the output row. Backward, three passes over the saved probabilities: dv_j = Σ_{i>=j} drop(p)_ij·dy_i (by key
// column), then per query row dp, the scores' gradient ds (written over the probabilities) and dq_i, then
// dk_j = Σ_{i>=j} ds_ij·q_i/√hd (by key column). float32 with float32 reductions: equal to the CPU to rounding.
#include <cuda_runtime.h>

#include "cpu/elementwise.h"  // dropout_uniform, shared with the CPU so both draw the same mask
#include "core/error.h"
#include "cuda/device.h"
#include "cuda/train.h"

namespace nms::cuda {
namespace {

constexpr int kThreads = 128;

struct Geo {
  int64_t t, heads, hd, d, ld;  // ld = 3·d, the row stride of qkv
  float p, keep_scale, scale;
  uint64_t seed, offset;
};

Geo geo(const AttentionShape& s) {
  const int64_t d = s.heads * s.hd;
  return Geo{s.t, s.heads, s.hd, d, 3 * d, s.p, s.p > 0.0f ? 1.0f / (1.0f - s.p) : 1.0f,
             1.0f / sqrtf(static_cast<float>(s.hd)), s.seed, s.offset};
}

// The factor dropout applies to probability (bh, i, j): 0, or 1/(1 − p) when kept (1 without dropout).
__device__ __forceinline__ float drop_factor(const Geo& g, int64_t bh, int64_t i, int64_t j) {
  if (g.p <= 0.0f) return 1.0f;
  return cpu::dropout_uniform(g.seed, g.offset + static_cast<uint64_t>((bh * g.t + i) * g.t + j)) >= g.p ? g.keep_scale : 0.0f;
}

// Reductions over the block (kThreads); every thread gets the result.
__device__ float block_reduce(float v, bool is_max) {
  __shared__ float part[kThreads / 32];
  for (int off = 16; off > 0; off >>= 1) {
    const float o = __shfl_down_sync(0xffffffffu, v, off);
    v = is_max ? fmaxf(v, o) : v + o;
  }
  __syncthreads();  // `part` may still be read by a previous call
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = part[0];
  for (int w = 1; w < kThreads / 32; ++w) r = is_max ? fmaxf(r, part[w]) : r + part[w];
  return r;
}

// grid (t, batch·heads); shared: the score row [t] and q_i [hd].
__global__ void __launch_bounds__(kThreads) attn_fwd_kernel(const float* qkv, Geo g, float* out, float* probs) {
  extern __shared__ float sh[];
  float* sc = sh;
  float* q = sh + g.t;
  const int64_t i = blockIdx.x, bh = blockIdx.y, b = bh / g.heads, h = bh % g.heads;
  const float* row0 = qkv + b * g.t * g.ld;
  for (int64_t c = threadIdx.x; c < g.hd; c += kThreads) q[c] = row0[i * g.ld + h * g.hd + c];
  __syncthreads();
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j <= i; j += kThreads) {
    const float* k = row0 + j * g.ld + g.d + h * g.hd;
    float s = 0.0f;
    for (int64_t c = 0; c < g.hd; ++c) s += q[c] * k[c];
    s *= g.scale;
    sc[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = block_reduce(mx, true);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j <= i; j += kThreads) {
    const float e = expf(sc[j] - mx);
    sc[j] = e;
    sum += e;
  }
  const float inv = 1.0f / block_reduce(sum, false);
  float* pr = probs + (bh * g.t + i) * g.t;
  for (int64_t j = threadIdx.x; j < g.t; j += kThreads) {
    const float p = j <= i ? sc[j] * inv : 0.0f;
    pr[j] = p;
    if (j <= i) sc[j] = p * drop_factor(g, bh, i, j);
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < g.hd; c += kThreads) {
    float acc = 0.0f;
    for (int64_t j = 0; j <= i; ++j) acc += sc[j] * row0[j * g.ld + 2 * g.d + h * g.hd + c];
    out[(b * g.t + i) * g.d + h * g.hd + c] = acc;
  }
}

// By key column j: dst_j = factor·Σ_{i>=j} w_ij·src_i, w_ij = probs[bh, i, j] (times its dropout factor when
// `dropped`); src rows (b, i) at src + (b·t + i)·ld + col, dst rows in dqkv's part `part`. Shared: w [t].
__global__ void __launch_bounds__(kThreads) attn_col_kernel(const float* probs, bool dropped, const float* src, int64_t ld,
                                                             int64_t col, Geo g, float factor, float* dqkv, int part) {
  extern __shared__ float w[];
  const int64_t j = blockIdx.x, bh = blockIdx.y, b = bh / g.heads, h = bh % g.heads;
  for (int64_t i = j + threadIdx.x; i < g.t; i += kThreads) {
    const float v = probs[(bh * g.t + i) * g.t + j];
    w[i] = dropped ? v * drop_factor(g, bh, i, j) : v;
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < g.hd; c += kThreads) {
    float acc = 0.0f;
    for (int64_t i = j; i < g.t; ++i) acc += w[i] * src[(b * g.t + i) * ld + col + h * g.hd + c];
    dqkv[(b * g.t + j) * g.ld + part * g.d + h * g.hd + c] = factor * acc;
  }
}

// By query row i: dp_j = drop(dy_i·v_j), ds_ij = p_ij·(dp_j − Σ_k p_ik·dp_k) over the probabilities' row (zeros
// above the diagonal), dq_i = Σ_j ds_ij·k_j/√hd. Shared: dp [t] and dy_i [hd].
__global__ void __launch_bounds__(kThreads) attn_row_kernel(const float* dout, const float* qkv, Geo g, float* probs,
                                                             float* dqkv) {
  extern __shared__ float sh[];
  float* dp = sh;
  float* dy = sh + g.t;
  const int64_t i = blockIdx.x, bh = blockIdx.y, b = bh / g.heads, h = bh % g.heads;
  const float* row0 = qkv + b * g.t * g.ld;
  for (int64_t c = threadIdx.x; c < g.hd; c += kThreads) dy[c] = dout[(b * g.t + i) * g.d + h * g.hd + c];
  __syncthreads();
  float* pr = probs + (bh * g.t + i) * g.t;
  float part = 0.0f;
  for (int64_t j = threadIdx.x; j <= i; j += kThreads) {
    const float* v = row0 + j * g.ld + 2 * g.d + h * g.hd;
    float s = 0.0f;
    for (int64_t c = 0; c < g.hd; ++c) s += dy[c] * v[c];
    s *= drop_factor(g, bh, i, j);
    dp[j] = s;
    part += pr[j] * s;
  }
  const float r = block_reduce(part, false);
  for (int64_t j = threadIdx.x; j < g.t; j += kThreads) {
    const float ds = j <= i ? pr[j] * (dp[j] - r) : 0.0f;
    pr[j] = ds;
    dp[j] = ds;
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < g.hd; c += kThreads) {
    float acc = 0.0f;
    for (int64_t j = 0; j <= i; ++j) acc += dp[j] * row0[j * g.ld + g.d + h * g.hd + c];
    dqkv[(b * g.t + i) * g.ld + h * g.hd + c] = g.scale * acc;
  }
}

dim3 grid_of(const AttentionShape& s) {
  if (s.t > 65535 || s.batch * s.heads > 65535) fail("E_SHAPE", "attention on 'cuda': t and batch·heads must be at most 65535");
  return dim3(static_cast<unsigned>(s.t), static_cast<unsigned>(s.batch * s.heads));
}

size_t shared_bytes(const AttentionShape& s) {
  const size_t bytes = static_cast<size_t>(s.t + s.hd) * sizeof(float);
  if (bytes > 48 * 1024) fail("E_SHAPE", "attention on 'cuda': t + headDim must be at most 12288");
  return bytes;
}

}  // namespace

void attention_forward(const float* qkv, const AttentionShape& s, float* out, float* probs) {
  activate();
  if (s.batch == 0) return;
  attn_fwd_kernel<<<grid_of(s), kThreads, shared_bytes(s), stream()>>>(qkv, geo(s), out, probs);
  check_launch("attention kernel");
}

void attention_backward(const float* dout, const float* qkv, const AttentionShape& s, float* probs, float* dqkv) {
  activate();
  if (s.batch == 0) return;
  const Geo g = geo(s);
  const dim3 grid = grid_of(s);
  const size_t bytes = shared_bytes(s);
  // dv from the probabilities, before the row pass overwrites them with ds.
  attn_col_kernel<<<grid, kThreads, bytes, stream()>>>(probs, true, dout, g.d, 0, g, 1.0f, dqkv, 2);
  check_launch("attention backward (dv) kernel");
  attn_row_kernel<<<grid, kThreads, bytes, stream()>>>(dout, qkv, g, probs, dqkv);
  check_launch("attention backward (ds, dq) kernel");
  attn_col_kernel<<<grid, kThreads, bytes, stream()>>>(probs, false, qkv, g.ld, 0, g, g.scale, dqkv, 1);
  check_launch("attention backward (dk) kernel");
}

}  // namespace nms::cuda
