#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/threadpool.h"
#include "cpu/elementwise.h"  // dropout_uniform
#include "cpu/simd.h"         // Isa, Scratch
#include "cpu/vmath.h"

namespace nms::cpu {
namespace {

// The per-(batch, head) kernels are compiled once per ISA (AVX-512, AVX2, baseline) and picked by active_isa()
// (cpu/simd.h), like gemm and spmm, so the tests reach every version on one machine; everything below is inlined
// into each version, so its loops vectorise for that ISA.
//
// Each (batch, head) is five small matrix products over the causal triangle, all run by one register-tiled kernel
// (tile) on copies of the head's q, k, v (and dy) padded to multiples of the tile, so no tile reads past a buffer:
//   forward   S = Q̂·Kᵀ (Q̂ = q/√hd), P = softmax(S) row-wise, Y = drop(P)·V
//   backward  dP = drop'(dY·Vᵀ), dV = drop(P)ᵀ·dY, dS = P ⊙ (dP − rowsum(P ⊙ dP)), dQ = dS·K̂, dK = dSᵀ·Q̂ (K̂ = k/√hd)

constexpr int64_t kMr = 4, kNr = 16;  // tile: kMr rows × kNr columns of accumulators (8 AVX2 / 4 AVX-512 registers)

NMS_INLINE int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// C[0:rows, 0:cols] (ldc) = Σ_{k0 <= k < k1} A(r, k)·B[k, 0:kNr], A(r, k) = a[r·sa + k·ka], B rows ldb apart
// (kNr readable floats each); r < kMr is always readable, only rows < rows and columns < cols are stored.
#if NMS_X86
// The AVX2 tile in eight registers (GCC keeps the portable version's array in memory). A function of its own, not
// inlined: intrinsics need its target attribute, and a tile's work dwarfs the call.
NMS_TARGET_AVX2 void tile_avx2(const float* a, int64_t sa, int64_t ka, const float* b, int64_t ldb, int64_t k0, int64_t k1,
                               float* c, int64_t ldc, int64_t rows, int64_t cols) {
  static_assert(kMr == 4 && kNr == 16, "the AVX2 tile is 4 x 16");
  __m256 acc[kMr][2];
  for (int r = 0; r < kMr; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = k0; k < k1; ++k) {
    const float* bk = b + k * ldb;
    const __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
    const float* ak = a + k * ka;
    for (int r = 0; r < kMr; ++r) {
      const __m256 av = _mm256_broadcast_ss(ak + r * sa);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  if (rows == kMr && cols == kNr) {
    for (int r = 0; r < kMr; ++r) {
      _mm256_storeu_ps(c + r * ldc, acc[r][0]);
      _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    }
    return;
  }
  alignas(32) float t[kMr][kNr];
  for (int r = 0; r < kMr; ++r) {
    _mm256_store_ps(t[r], acc[r][0]);
    _mm256_store_ps(t[r] + 8, acc[r][1]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = t[r][j];
}
#endif

template <bool Avx2>
NMS_INLINE void tile(const float* a, int64_t sa, int64_t ka, const float* b, int64_t ldb, int64_t k0, int64_t k1, float* c,
                     int64_t ldc, int64_t rows, int64_t cols) {
#if NMS_X86
  if constexpr (Avx2) return tile_avx2(a, sa, ka, b, ldb, k0, k1, c, ldc, rows, cols);
#endif
  float acc[kMr][kNr] = {};
  for (int64_t k = k0; k < k1; ++k) {
    const float* bk = b + k * ldb;
    for (int r = 0; r < kMr; ++r) {
      const float av = a[r * sa + k * ka];
      for (int j = 0; j < kNr; ++j) acc[r][j] += av * bk[j];
    }
  }
  if (rows == kMr && cols == kNr) {
    for (int r = 0; r < kMr; ++r)
      for (int j = 0; j < kNr; ++j) c[r * ldc + j] = acc[r][j];
    return;
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = acc[r][j];
}

// Eight partial sums / maxima, so that the reductions vectorise without reassociation flags.
NMS_INLINE float row_max(const float* x, int64_t n) {
  float m[8];
  for (int k = 0; k < 8; ++k) m[k] = x[0];
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) m[k] = vselect(x[j + k] > m[k], x[j + k], m[k]);
  for (; j < n; ++j) m[0] = vselect(x[j] > m[0], x[j], m[0]);
  float r = m[0];
  for (int k = 1; k < 8; ++k) r = vselect(m[k] > r, m[k], r);
  return r;
}

NMS_INLINE float exp_sum(float* x, float mx, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) {
      const float e = vexp(x[j + k] - mx);
      x[j + k] = e;
      s[k] += e;
    }
  for (; j < n; ++j) {
    const float e = vexp(x[j] - mx);
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

// One (batch, head) and its scratch: padded sizes tp (rows of t) and hp (columns of hd), and the padded copies.
struct Task {
  const AttentionShape& s;
  int64_t b, h;
  int64_t tp, hp;
  float *q, *k, *v, *kt, *dy, *p, *g;  // [tp, hp] ×3, [hp, tp], [tp, hp], [tp, tp] ×2

  int64_t d() const { return s.heads * s.hd; }
  int64_t ld() const { return 3 * d(); }
  // Row i of this head's q, k or v (part 0, 1, 2) inside qkv-shaped data.
  template <class T>
  T* row(T* base, int64_t i, int part) const { return base + (b * s.t + i) * ld() + part * d() + h * s.hd; }
  float* prob_row(float* probs, int64_t i) const { return probs + ((b * s.heads + h) * s.t + i) * s.t; }
  uint64_t counter(int64_t i) const { return s.offset + static_cast<uint64_t>(((b * s.heads + h) * s.t + i) * s.t); }
  // The dropout factor of probability (i, j): 0 or 1/(1 − p).
  float keep(int64_t i, int64_t j, float keep_scale) const {
    return dropout_uniform(s.seed, counter(i) + static_cast<uint64_t>(j)) >= s.p ? keep_scale : 0.0f;
  }

  static size_t scratch_floats(const AttentionShape& s) {
    const int64_t tp = round_up(s.t, kNr), hp = round_up(s.hd, kNr);
    return static_cast<size_t>(5 * tp * hp + 2 * tp * tp);
  }
  Task(const AttentionShape& shape, int64_t task, float* scratch) : s(shape), b(task / shape.heads), h(task % shape.heads) {
    tp = round_up(s.t, kNr);
    hp = round_up(s.hd, kNr);
    q = scratch;
    k = q + tp * hp;
    v = k + tp * hp;
    kt = v + tp * hp;
    dy = kt + hp * tp;
    p = dy + tp * hp;
    g = p + tp * tp;
  }

  // dst [tp, hp] = part's rows times `scale`, zero padded (and, with dst_t, its transpose [hp, tp]).
  void load(const float* qkv, int part, float scale, float* dst, float* dst_t) const {
    for (int64_t i = 0; i < tp; ++i) {
      float* o = dst + i * hp;
      if (i < s.t) {
        const float* r = row(qkv, i, part);
        for (int64_t c = 0; c < s.hd; ++c) o[c] = r[c] * scale;
        for (int64_t c = s.hd; c < hp; ++c) o[c] = 0.0f;
      } else {
        for (int64_t c = 0; c < hp; ++c) o[c] = 0.0f;
      }
    }
    if (dst_t)
      for (int64_t c = 0; c < hp; ++c)
        for (int64_t i = 0; i < tp; ++i) dst_t[c * tp + i] = dst[i * hp + c];
  }

  // Row blocks i0 of the lower triangle of an [t, t] product: C = A·Bᵀ-shaped, A [tp, hp] rows, bt [hp, tp].
  template <bool V>
  void lower(const float* a, const float* bt, float* c) const {
    for (int64_t i0 = 0; i0 < s.t; i0 += kMr)
      for (int64_t j0 = 0; j0 <= i0 + kMr - 1 && j0 < s.t; j0 += kNr)
        tile<V>(a + i0 * hp, hp, 1, bt + j0, tp, 0, s.hd, c + i0 * tp + j0, tp, kMr, kNr);
  }
  // out rows (ld apart, hd wide) = L·X over the causal range: L [tp, tp] lower triangular, X [tp, hp].
  template <bool V>
  void lower_times(const float* l, const float* x, float* out, int64_t ld) const {
    for (int64_t i0 = 0; i0 < s.t; i0 += kMr)
      for (int64_t c0 = 0; c0 < s.hd; c0 += kNr)
        tile<V>(l + i0 * tp, tp, 1, x + c0, hp, 0, std::min(i0 + kMr, s.t), out + i0 * ld + c0, ld,
             std::min(kMr, s.t - i0), std::min(kNr, s.hd - c0));
  }
  // out rows = Lᵀ·X: (Lᵀ)(j, i) = l[i·tp + j], nonzero for i >= j.
  template <bool V>
  void upper_times(const float* l, const float* x, float* out, int64_t ld) const {
    for (int64_t j0 = 0; j0 < s.t; j0 += kMr)
      for (int64_t c0 = 0; c0 < s.hd; c0 += kNr)
        tile<V>(l + j0, 1, tp, x + c0, hp, j0, s.t, out + j0 * ld + c0, ld, std::min(kMr, s.t - j0), std::min(kNr, s.hd - c0));
  }
};

template <bool V>
NMS_INLINE void forward_task(Task& k, const float* qkv, float* out, float* probs) {
  const int64_t t = k.s.t, tp = k.tp;
  const float scale = 1.0f / std::sqrt(static_cast<float>(k.s.hd));
  const float keep_scale = k.s.p > 0.0f ? 1.0f / (1.0f - k.s.p) : 1.0f;
  k.load(qkv, 0, scale, k.q, nullptr);
  k.load(qkv, 1, 1.0f, k.k, k.kt);
  k.load(qkv, 2, 1.0f, k.v, nullptr);
  k.template lower<V>(k.q, k.kt, k.p);
  for (int64_t i = 0; i < tp; ++i) {
    float* pr = k.p + i * tp;
    const int64_t n = std::min(i + 1, t);
    if (i < t) {
      const float inv = 1.0f / exp_sum(pr, row_max(pr, n), n);
      for (int64_t j = 0; j < n; ++j) pr[j] *= inv;
    }
    for (int64_t j = i < t ? n : 0; j < tp; ++j) pr[j] = 0.0f;
    if (i >= t) continue;
    std::memcpy(k.prob_row(probs, i), pr, static_cast<size_t>(t) * sizeof(float));
    if (k.s.p > 0.0f)
      for (int64_t j = 0; j < n; ++j) pr[j] *= k.keep(i, j, keep_scale);
  }
  k.template lower_times<V>(k.p, k.v, out + k.b * t * k.d() + k.h * k.s.hd, k.d());
}

template <bool V>
NMS_INLINE void backward_task(Task& k, const float* dout, const float* qkv, float* probs, float* dqkv) {
  const int64_t t = k.s.t, tp = k.tp, hd = k.s.hd, d = k.d();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float keep_scale = k.s.p > 0.0f ? 1.0f / (1.0f - k.s.p) : 1.0f;
  k.load(qkv, 0, scale, k.q, nullptr);
  k.load(qkv, 1, scale, k.k, nullptr);
  float* vt = k.kt;  // Vᵀ for dP = dY·Vᵀ
  k.load(qkv, 2, 1.0f, k.v, vt);
  for (int64_t i = 0; i < tp; ++i) {  // dy rows, padded
    float* o = k.dy + i * k.hp;
    for (int64_t c = 0; c < k.hp; ++c) o[c] = i < t && c < hd ? dout[(k.b * t + i) * d + k.h * hd + c] : 0.0f;
  }
  // p = drop(P) (zero padded), g = ∂L/∂P' = dY·Vᵀ.
  for (int64_t i = 0; i < tp; ++i) {
    float* pr = k.p + i * tp;
    if (i < t) std::memcpy(pr, k.prob_row(probs, i), static_cast<size_t>(t) * sizeof(float));
    for (int64_t j = i < t ? t : 0; j < tp; ++j) pr[j] = 0.0f;
    if (k.s.p > 0.0f && i < t)
      for (int64_t j = 0; j <= i; ++j) pr[j] *= k.keep(i, j, keep_scale);
  }
  for (int64_t i = 0; i < tp; ++i) std::memset(k.g + i * tp, 0, static_cast<size_t>(tp) * sizeof(float));
  k.template lower<V>(k.dy, vt, k.g);
  float* dqkv0 = dqkv + k.b * t * k.ld() + k.h * hd;
  k.template upper_times<V>(k.p, k.dy, dqkv0 + 2 * d, k.ld());  // dV = drop(P)ᵀ·dY
  // dS = P ⊙ (dP − Σ P ⊙ dP) with dP = drop'(g), written over g and over the probabilities.
  for (int64_t i = 0; i < t; ++i) {
    float* gr = k.g + i * tp;
    float* pr = k.prob_row(probs, i);
    const int64_t n = i + 1;
    if (k.s.p > 0.0f)
      for (int64_t j = 0; j < n; ++j) gr[j] *= k.keep(i, j, keep_scale);
    const float r = dot(pr, gr, n);
    for (int64_t j = 0; j < n; ++j) gr[j] = pr[j] * (gr[j] - r);
    for (int64_t j = n; j < tp; ++j) gr[j] = 0.0f;
    std::memcpy(pr, gr, static_cast<size_t>(t) * sizeof(float));
  }
  k.template lower_times<V>(k.g, k.k, dqkv0, k.ld());        // dQ = dS·K̂
  k.template upper_times<V>(k.g, k.q, dqkv0 + d, k.ld());    // dK = dSᵀ·Q̂
}

#define NMS_ATTENTION_VERSION(suffix, target, avx2)                                                            \
  target void forward_##suffix(Task& k, const float* qkv, float* out, float* probs) {                          \
    forward_task<avx2>(k, qkv, out, probs);                                                                   \
  }                                                                                                          \
  target void backward_##suffix(Task& k, const float* dout, const float* qkv, float* probs, float* dqkv) {     \
    backward_task<avx2>(k, dout, qkv, probs, dqkv);                                                           \
  }
NMS_ATTENTION_VERSION(base, , false)
#if NMS_X86
NMS_ATTENTION_VERSION(avx2, NMS_TARGET_AVX2, true)
NMS_ATTENTION_VERSION(avx512, NMS_TARGET_AVX512, true)  // the AVX2 tile; AVX-512 for the streaming loops
#endif

// Runs f(task) for every (batch, head) on the pool, each with its thread's scratch.
template <class F>
void each_head(const AttentionShape& s, F f) {
  parallel_for(s.batch * s.heads, 1, [&](int64_t t0, int64_t t1) {
    thread_local Scratch scratch;
    float* buf = scratch.floats(Task::scratch_floats(s));
    for (int64_t task = t0; task < t1; ++task) {
      Task k(s, task, buf);
      f(k);
    }
  });
}

}  // namespace

void attention_forward(const float* qkv, const AttentionShape& s, float* out, float* probs) {
  const Isa isa = active_isa();
  each_head(s, [&](Task& k) {
#if NMS_X86
    if (isa == Isa::Avx512) return forward_avx512(k, qkv, out, probs);
    if (isa == Isa::Avx2) return forward_avx2(k, qkv, out, probs);
#endif
    forward_base(k, qkv, out, probs);
  });
}

void attention_backward(const float* dout, const float* qkv, const AttentionShape& s, float* probs, float* dqkv) {
  const Isa isa = active_isa();
  each_head(s, [&](Task& k) {
#if NMS_X86
    if (isa == Isa::Avx512) return backward_avx512(k, dout, qkv, probs, dqkv);
    if (isa == Isa::Avx2) return backward_avx2(k, dout, qkv, probs, dqkv);
#endif
    backward_base(k, dout, qkv, probs, dqkv);
  });
}

}  // namespace nms::cpu
