#include "cpu/attention.h"

#include <cmath>
#include <cstring>

#include "core/threadpool.h"
#include "cpu/elementwise.h"  // dropout_uniform
#include "cpu/simd.h"         // Isa, Scratch

namespace nms::cpu {
namespace {

// The per-(batch, head) kernels are compiled once per ISA (AVX-512, AVX2, baseline) and picked by active_isa()
// (cpu/simd.h), like gemm and spmm, so the tests reach every version on one machine; everything below is inlined
// into each version, so its loops vectorise for that ISA. Loops run over the keys j (contiguous rows of Kᵀ / Vᵀ and of the
// probabilities) or over the head dimension (contiguous rows of q, k, v), never a horizontal dot product.

#define NMS_INLINE inline __attribute__((always_inline))

NMS_INLINE void axpy(float* y, const float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// e^x to about 2 ulp for x <= 0 (0 below −87), branch-free so that a loop of it vectorises: x = k·ln2 + r with
// |r| <= ln2/2, e^r by its degree-6 Taylor polynomial, 2^k put into the exponent bits.
NMS_INLINE float exp_nonpositive(float x) {
  const float xc = x < -87.0f ? -87.0f : x;
  const float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (xc - k * 0.693145751953125f) - k * 1.42860682030941723e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return x < -87.0f ? 0.0f : p * scale;
}

// Eight partial sums / maxima, so that the reductions vectorise without reassociation flags.
NMS_INLINE float row_max(const float* x, int64_t n) {
  float m[8];
  for (int k = 0; k < 8; ++k) m[k] = x[0];
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) m[k] = x[j + k] > m[k] ? x[j + k] : m[k];
  for (; j < n; ++j) m[0] = x[j] > m[0] ? x[j] : m[0];
  float r = m[0];
  for (int k = 1; k < 8; ++k) r = m[k] > r ? m[k] : r;
  return r;
}

NMS_INLINE float exp_sum(float* x, float mx, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) {
      const float e = exp_nonpositive(x[j + k] - mx);
      x[j + k] = e;
      s[k] += e;
    }
  for (; j < n; ++j) {
    const float e = exp_nonpositive(x[j] - mx);
    x[j] = e;
    s[0] += e;
  }
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

NMS_INLINE float dot(const float* a, const float* b, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) s[k] += a[j + k] * b[j + k];
  for (; j < n; ++j) s[0] += a[j] * b[j];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

struct Task {
  const AttentionShape& s;
  int64_t b, h;
  int64_t d() const { return s.heads * s.hd; }
  int64_t ld() const { return 3 * d(); }
  // Row i of this head's q, k or v (part 0, 1, 2) inside qkv-shaped data.
  template <class T>
  T* row(T* base, int64_t i, int part) const { return base + (b * s.t + i) * ld() + part * d() + h * s.hd; }
  uint64_t counter(int64_t i) const { return s.offset + static_cast<uint64_t>(((b * s.heads + h) * s.t + i) * s.t); }
};

// kt [hd, t] = the head's k (or v), transposed.
NMS_INLINE void transpose_part(const Task& k, const float* qkv, int part, float* kt) {
  const int64_t t = k.s.t, hd = k.s.hd;
  for (int64_t j = 0; j < t; ++j) {
    const float* r = k.row(qkv, j, part);
    for (int64_t c = 0; c < hd; ++c) kt[c * t + j] = r[c];
  }
}

NMS_INLINE void forward_task(const Task& k, const float* qkv, float* out, float* probs, float* kt) {
  const int64_t t = k.s.t, hd = k.s.hd, d = k.d();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float p = k.s.p, keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
  transpose_part(k, qkv, 1, kt);
  for (int64_t i = 0; i < t; ++i) {
    float* pr = probs + ((k.b * k.s.heads + k.h) * t + i) * t;
    const float* q = k.row(qkv, i, 0);
    const int64_t n = i + 1;
    for (int64_t j = 0; j < t; ++j) pr[j] = 0.0f;
    for (int64_t c = 0; c < hd; ++c) axpy(pr, kt + c * t, q[c] * scale, n);
    const float mx = row_max(pr, n);
    const float inv = 1.0f / exp_sum(pr, mx, n);
    for (int64_t j = 0; j < n; ++j) pr[j] *= inv;
    float* y = out + (k.b * t + i) * d + k.h * hd;
    for (int64_t c = 0; c < hd; ++c) y[c] = 0.0f;
    const uint64_t base = k.counter(i);
    for (int64_t j = 0; j < n; ++j) {
      const float pj = p > 0.0f ? (dropout_uniform(k.s.seed, base + j) >= p ? pr[j] * keep_scale : 0.0f) : pr[j];
      axpy(y, k.row(qkv, j, 2), pj, hd);
    }
  }
}

NMS_INLINE void backward_task(const Task& k, const float* dout, const float* qkv, float* probs, float* dqkv, float* vt,
                              float* dp, float* dkv) {
  const int64_t t = k.s.t, hd = k.s.hd, d = k.d();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float p = k.s.p, keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
  transpose_part(k, qkv, 2, vt);
  float* dk = dkv;           // [t, hd]
  float* dv = dkv + t * hd;  // [t, hd]
  for (int64_t j = 0; j < 2 * t * hd; ++j) dkv[j] = 0.0f;
  for (int64_t i = 0; i < t; ++i) {
    float* pr = probs + ((k.b * k.s.heads + k.h) * t + i) * t;
    const float* dy = dout + (k.b * t + i) * d + k.h * hd;
    const float* q = k.row(qkv, i, 0);
    const int64_t n = i + 1;
    // dp_j = ∂L/∂(dropped p_ij) = dy_i·v_j; dv_j += dropped p_ij·dy_i; then dp_j becomes ∂L/∂p_ij.
    for (int64_t j = 0; j < n; ++j) dp[j] = 0.0f;
    for (int64_t c = 0; c < hd; ++c) axpy(dp, vt + c * t, dy[c], n);
    const uint64_t base = k.counter(i);
    for (int64_t j = 0; j < n; ++j) {
      const bool kept = p > 0.0f ? dropout_uniform(k.s.seed, base + j) >= p : true;
      const float f = p > 0.0f ? (kept ? keep_scale : 0.0f) : 1.0f;
      axpy(dv + j * hd, dy, pr[j] * f, hd);
      dp[j] *= f;
    }
    // Softmax: ∂L/∂s_ij = p_ij·(dp_j − Σ_k p_ik·dp_k), kept in the probabilities' row.
    const float r = dot(pr, dp, n);
    for (int64_t j = 0; j < n; ++j) pr[j] = pr[j] * (dp[j] - r);
    float* dq = k.row(dqkv, i, 0);
    for (int64_t c = 0; c < hd; ++c) dq[c] = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      const float g = pr[j] * scale;
      axpy(dq, k.row(qkv, j, 1), g, hd);
      axpy(dk + j * hd, q, g, hd);
    }
  }
  for (int64_t j = 0; j < t; ++j) {
    std::memcpy(k.row(dqkv, j, 1), dk + j * hd, static_cast<size_t>(hd) * sizeof(float));
    std::memcpy(k.row(dqkv, j, 2), dv + j * hd, static_cast<size_t>(hd) * sizeof(float));
  }
}

#define NMS_ATTENTION_VERSION(suffix, target)                                                                  \
  target void forward_##suffix(const Task& k, const float* qkv, float* out, float* probs, float* kt) {          \
    forward_task(k, qkv, out, probs, kt);                                                                     \
  }                                                                                                          \
  target void backward_##suffix(const Task& k, const float* dout, const float* qkv, float* probs, float* dqkv,  \
                                float* vt, float* dp, float* dkv) {                                           \
    backward_task(k, dout, qkv, probs, dqkv, vt, dp, dkv);                                                    \
  }
NMS_ATTENTION_VERSION(base, )
#if NMS_X86
NMS_ATTENTION_VERSION(avx2, NMS_TARGET_AVX2)
NMS_ATTENTION_VERSION(avx512, NMS_TARGET_AVX512)
#endif

void forward_any(Isa isa, const Task& k, const float* qkv, float* out, float* probs, float* kt) {
#if NMS_X86
  if (isa == Isa::Avx512) return forward_avx512(k, qkv, out, probs, kt);
  if (isa == Isa::Avx2) return forward_avx2(k, qkv, out, probs, kt);
#endif
  forward_base(k, qkv, out, probs, kt);
}

void backward_any(Isa isa, const Task& k, const float* dout, const float* qkv, float* probs, float* dqkv, float* vt,
                  float* dp, float* dkv) {
#if NMS_X86
  if (isa == Isa::Avx512) return backward_avx512(k, dout, qkv, probs, dqkv, vt, dp, dkv);
  if (isa == Isa::Avx2) return backward_avx2(k, dout, qkv, probs, dqkv, vt, dp, dkv);
#endif
  backward_base(k, dout, qkv, probs, dqkv, vt, dp, dkv);
}

}  // namespace

void attention_forward(const float* qkv, const AttentionShape& s, float* out, float* probs) {
  const Isa isa = active_isa();
  parallel_for(s.batch * s.heads, 1, [&](int64_t t0, int64_t t1) {
    thread_local Scratch scratch;
    float* kt = scratch.floats(static_cast<size_t>(s.hd * s.t));
    for (int64_t task = t0; task < t1; ++task)
      forward_any(isa, Task{s, task / s.heads, task % s.heads}, qkv, out, probs, kt);
  });
}

void attention_backward(const float* dout, const float* qkv, const AttentionShape& s, float* probs, float* dqkv) {
  const Isa isa = active_isa();
  parallel_for(s.batch * s.heads, 1, [&](int64_t t0, int64_t t1) {
    thread_local Scratch scratch;
    float* vt = scratch.floats(static_cast<size_t>(s.hd * s.t * 3 + s.t));
    float *dkv = vt + s.hd * s.t, *dp = dkv + 2 * s.hd * s.t;
    for (int64_t task = t0; task < t1; ++task)
      backward_any(isa, Task{s, task / s.heads, task % s.heads}, dout, qkv, probs, dqkv, vt, dp, dkv);
  });
}

}  // namespace nms::cpu
