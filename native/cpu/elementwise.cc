#include "cpu/elementwise.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "core/nm_format.h"
#include "core/nm_select.h"
#include "cpu/simd.h"
#include "cpu/vmath.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif


namespace nms::cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per chunk for streaming kernels

// Grain in rows so that a chunk holds about kGrain elements.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)); }

// Column blocks of 64 floats: column-wise sums run over blocks so each block's sum is computed by one thread in
// row order (deterministic, whatever the thread count) while reading contiguous 256-byte segments.
constexpr int64_t kColBlock = 64;

NMS_CLONES void relu_range(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
NMS_CLONES void relu_back_range(const float* dy, const float* y, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
NMS_CLONES void masked_scale_range(const float* x, const uint8_t* m, float alpha, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = m[i] ? v : alpha * v;
  }
}
NMS_CLONES void masked_zero_range(const float* x, const uint8_t* m, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = m[i] ? v : 0.0f;
  }
}
// The select is done on the bits: written as `m ? g : g + λw`, GCC emits a conditional scalar store (the kept
// case stores nothing), which neither vectorises nor predicts on a random mask.
NMS_CLONES void masked_add_range(float* g, const float* w, const uint8_t* m, float lambda, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i], add = gi + lambda * w[i];
    uint32_t keep, moved;
    std::memcpy(&keep, &gi, 4);
    std::memcpy(&moved, &add, 4);
    const uint32_t pruned = 0u - static_cast<uint32_t>(m[i] == 0);
    const uint32_t r = (keep & ~pruned) | (moved & pruned);
    std::memcpy(g + i, &r, 4);
  }
}
// Max pooling over channels, branch-free: the first window position, then each further one replaces the running
// maximum where it is larger, or NaN over a number (first maximum wins; the first NaN stays).
NMS_CLONES void pool_first(const float* x, int32_t base, float* y, int32_t* a, int64_t c) {
  for (int64_t i = 0; i < c; ++i) {
    y[i] = x[i];
    a[i] = base + static_cast<int32_t>(i);
  }
}
NMS_CLONES void pool_update(const float* x, int32_t base, float* y, int32_t* a, int64_t c) {
  for (int64_t i = 0; i < c; ++i) {
    const float v = x[i], cur = y[i];
    const bool take = v > cur || (v != v && cur == cur);
    y[i] = take ? v : cur;
    a[i] = take ? base + static_cast<int32_t>(i) : a[i];
  }
}
NMS_CLONES void bias_add_row(float* y, const float* b, int64_t cols) {
  for (int64_t c = 0; c < cols; ++c) y[c] += b[c];
}
// GELU with the vectorising Φ and exp of cpu/vmath.h (std::erf and std::exp stay scalar calls).
NMS_CLONES void gelu_range(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * vnormal_cdf(x[i]);
}
NMS_CLONES void gelu_back_range(const float* dy, const float* x, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    dx[i] = dy[i] * (vnormal_cdf(v) + v * 0.39894228040143268f * vexp(-0.5f * v * v));
  }
}
NMS_CLONES void add_range(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
NMS_CLONES void add_row(float* acc, const float* d, int64_t w) {
  for (int64_t j = 0; j < w; ++j) acc[j] += d[j];
}

// The mask refresh of the recipes: the N:M selection of core/nm_select.h (ties to the lower index, NaN largest;
// the rule nm.mask uses) on float32, writing the mask and W ⊙ (m + (1 − m)·α) in the same pass.

// Scalar path: the core rule itself. The vector paths below rank each lane the same way:
// rank_i = #{j : key_j > key_i or (key_j = key_i, j < i)}, kept when rank_i < n.
// Each path adds to *changed (when given) the mask entries it overwrites with another value: the step's SAD, counted
// as the mask is written instead of from a copy of the old row afterwards (that copy and count were 9% of the pass).
template <int M>
void nm_mask_scale_scalar(const float* w, int64_t count, int n, float alpha, uint8_t* mask, float* eff, int64_t* changed) {
  int64_t diff = 0;
  for (int64_t g = 0; g < count; g += M) {
    const uint32_t keep = nm_group_keep<M>(w + g, DType::F32, 0, n);
    for (int i = 0; i < M; ++i) {
      const bool k = (keep >> i) & 1u;
      const float v = w[g + i];
      diff += mask[g + i] != static_cast<uint8_t>(k);
      mask[g + i] = k;
      eff[g + i] = k ? v : (alpha == 0.0f ? 0.0f : alpha * v);
    }
  }
  if (changed) *changed += diff;
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
// GCC 12's own intrinsic headers trip -Wuninitialized (_mm512_undefined_* inside permutexvar) here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// AVX-512 path for M in {4, 8, 16}: 16 lanes hold 16/M groups; for each shift s in 1..M−1 the keys are rotated
// within their group and every lane counts the group members that beat it (same rule as above).
template <int M>
__attribute__((target("avx512f,avx512bw,avx512vl,popcnt"))) int64_t nm_mask_scale_avx512(const float* w, int64_t count, int n, float alpha, uint8_t* mask, float* eff,
                                                                                             int64_t* changed) {
  int64_t diff = 0;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i inner = _mm512_and_si512(lane, _mm512_set1_epi32(M - 1)), base = _mm512_andnot_si512(_mm512_set1_epi32(M - 1), lane);
  __m512i rot[M];
  __mmask16 earlier[M];
  for (int s = 1; s < M; ++s) {
    const __m512i other = _mm512_and_si512(_mm512_add_epi32(inner, _mm512_set1_epi32(s)), _mm512_set1_epi32(M - 1));
    rot[s] = _mm512_or_si512(base, other);
    earlier[s] = _mm512_cmplt_epi32_mask(other, inner);
  }
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000), qnan = _mm512_set1_epi32(0x7fc00000);
  const __m512i nn = _mm512_set1_epi32(n), one = _mm512_set1_epi32(1);
  const __m512 va = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m512 v = _mm512_loadu_ps(w + i);
    __m512i key = _mm512_and_si512(_mm512_castps_si512(v), absmask);
    key = _mm512_mask_mov_epi32(key, _mm512_cmpgt_epu32_mask(key, inf), qnan);
    __mmask16 keep;
    if (M >= 8 && n == 1) {
      // 1:M: the group's largest key by log2(M) rotate-and-max steps, then its lowest-index lane (the same rule as
      // the ranks below: an equal key earlier in the group beats). The M − 1 rank steps were the pass's limit at
      // 1:8 (4096², interleaved: median 15.8 -> 11.6 ms); at 1:4 this measured no faster.
      __m512i mx = key;
      for (int s = 1; s < M; s *= 2) mx = _mm512_max_epu32(mx, _mm512_permutexvar_epi32(rot[s], mx));
      const unsigned eq = _mm512_cmpeq_epi32_mask(key, mx);
      unsigned low = 0;
      for (int g = 0; g < 16; g += M) {
        const unsigned bits = (eq >> g) & ((1u << M) - 1);
        low |= (bits & (0u - bits)) << g;
      }
      keep = static_cast<__mmask16>(low);
    } else {
      __m512i rank = _mm512_setzero_si512();
      for (int s = 1; s < M; ++s) {
        const __m512i o = _mm512_permutexvar_epi32(rot[s], key);
        const __mmask16 beats = _mm512_cmpgt_epu32_mask(o, key) | (_mm512_cmpeq_epi32_mask(o, key) & earlier[s]);
        rank = _mm512_mask_add_epi32(rank, beats, rank, one);
      }
      keep = _mm512_cmplt_epi32_mask(rank, nn);
    }
    const __m128i bytes = _mm_maskz_set1_epi8(keep, 1);
    if (changed) diff += __builtin_popcount(_mm_cmpneq_epi8_mask(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mask + i)), bytes));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(mask + i), bytes);
    const __m512 e = alpha == 0.0f ? _mm512_maskz_mov_ps(keep, v) : _mm512_mask_blend_ps(keep, _mm512_mul_ps(va, v), v);
    _mm512_storeu_ps(eff + i, e);
  }
  if (changed) *changed += diff;
  return i;
}
// The vector paths follow the ISA that gemm/spmm use (cpu/simd.h: NMSPARSE_CPU_ISA and cpuIsa() lower it), so
// the tests reach every path on one machine.
bool has_avx512bw() { return active_isa() == Isa::Avx512; }
// A group's 4 position bits from its 4 keep bits (at most 2 set): a table, not a second compress and a reduction,
// which held the 2:4 loop to a third of its speed.
struct Pos24Lut {
  uint8_t code[16] = {};
  constexpr Pos24Lut() {
    for (int k = 0; k < 16; ++k)
      for (int i = 0, t = 0; i < 4 && t < 2; ++i)
        if ((k >> i) & 1) code[k] = static_cast<uint8_t>(code[k] | i << (2 * t++));  // the t-th kept, ascending
  }
};
constexpr Pos24Lut kPos24;

// The training pass of one row for 2:4, 1:4 and 1:8 on AVX-512, 16 columns at a time in one read of w: the keep
// set (Select: from |w|, writing the mask bytes and adding to *changed the entries they change; else the given
// mask's, checked beforehand), w ⊙ m when eff, the kept values compressed out of the vector and their positions.
// The pass ran at a third of the memory's speed as a select pass (the ranks above) then a compress pass reading
// the mask and w again. Returns the columns done (a multiple of 16); the position byte holding the next field may
// be written in part (its free high bits zero).
template <int N, int M, bool Select>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,popcnt,bmi"))) int64_t nm_train_row_avx512(const float* w, int64_t cols, uint8_t* mask, float* eff,
                                                                                                   float* values, uint8_t* pos, int64_t* changed) {
  static_assert((N == 2 && M == 4) || (N == 1 && (M == 4 || M == 8)), "2:4, 1:4 and 1:8");
  constexpr int kept = 16 / M * N;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i inner = _mm512_and_si512(lane, _mm512_set1_epi32(M - 1)), base = _mm512_andnot_si512(_mm512_set1_epi32(M - 1), lane);
  // rot[s]: the lane s further round the group; tie[s]: 1 where that lane is earlier in the group, so that
  // "j beats i" (key_j > key_i, or equal with j < i) is the one compare key_j + tie > key_i.
  __m512i rot[M], tie[M];
  for (int s = 1; s < M; ++s) {
    const __m512i other = _mm512_and_si512(_mm512_add_epi32(inner, _mm512_set1_epi32(s)), _mm512_set1_epi32(M - 1));
    rot[s] = _mm512_or_si512(base, other);
    tie[s] = _mm512_maskz_set1_epi32(_mm512_cmplt_epi32_mask(other, inner), 1);
  }
  // The magnitude key's order with every NaN at 0x7f800001 (above inf, all equal): a min, not a compare and blend.
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff), nan_key = _mm512_set1_epi32(0x7f800001);
  int64_t diff = 0, c = 0;
  uint32_t buf = 0;  // 1:8: position bits not yet written
  int nbits = 0;
  for (; c + 16 <= cols; c += 16) {
    const __m512 v = _mm512_loadu_ps(w + c);
    const __m512i key = _mm512_min_epu32(_mm512_and_si512(_mm512_castps_si512(v), absmask), nan_key);
    unsigned keep;
    if constexpr (!Select) {
      keep = _mm_test_epi8_mask(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mask + c)), _mm_set1_epi8(-1));
    } else if constexpr (M == 4) {
      __mmask16 b[4];  // b[s]: the lane s further round beats this one (keys <= 0x7f800001: the add cannot wrap)
      for (int s = 1; s < 4; ++s)
        b[s] = _mm512_cmpgt_epu32_mask(_mm512_add_epi32(_mm512_permutexvar_epi32(rot[s], key), tie[s]), key);
      keep = N == 1 ? ~(b[1] | b[2] | b[3]) : ~((b[1] & b[2]) | (b[3] & (b[1] | b[2])));  // beaten by none / at most one
      keep &= 0xffffu;
    } else {
      // 1:8: the group's largest key by rotate-and-max, then its lowest lane (an equal key earlier in the group beats).
      __m512i mx = key;
      for (int s = 1; s < 8; s *= 2) mx = _mm512_max_epu32(mx, _mm512_permutexvar_epi32(rot[s], mx));
      const unsigned eq = _mm512_cmpeq_epi32_mask(key, mx), lo = eq & 0xffu, hi = eq >> 8;
      keep = (lo & (0u - lo)) | ((hi & (0u - hi)) << 8);
    }
    if constexpr (Select) {
      const __m128i bytes = _mm_maskz_set1_epi8(static_cast<__mmask16>(keep), 1);
      if (changed) diff += __builtin_popcount(_mm_cmpneq_epi8_mask(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mask + c)), bytes));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(mask + c), bytes);
    }
    if (eff) _mm512_storeu_ps(eff + c, _mm512_maskz_mov_ps(static_cast<__mmask16>(keep), v));
    const __m512 packed = _mm512_maskz_compress_ps(static_cast<__mmask16>(keep), v);
    float* dst = values + c / M * N;
    if constexpr (kept == 8) _mm256_storeu_ps(dst, _mm512_castps512_ps256(packed));
    else if constexpr (kept == 4) _mm_storeu_ps(dst, _mm512_castps512_ps128(packed));
    else _mm_storel_pi(reinterpret_cast<__m64*>(dst), _mm512_castps512_ps128(packed));
    if constexpr (M == 4) {
      // kPos24 gives a nibble's kept positions, 2 bits each, ascending (one field for 1:4, two for 2:4).
      constexpr int sh = 2 * N;
      const uint32_t p = kPos24.code[keep & 15] | kPos24.code[(keep >> 4) & 15] << sh | kPos24.code[(keep >> 8) & 15] << 2 * sh |
                         kPos24.code[keep >> 12] << 3 * sh;
      if constexpr (N == 2) std::memcpy(pos + c / 8, &p, 2);
      else pos[c / 16] = static_cast<uint8_t>(p);
    } else {
      buf |= (static_cast<uint32_t>(__builtin_ctz(keep)) | static_cast<uint32_t>(__builtin_ctz(keep >> 8)) << 3) << nbits;
      nbits += 6;
      for (; nbits >= 8; nbits -= 8, buf >>= 8) *pos++ = static_cast<uint8_t>(buf);
    }
  }
  if (M == 8 && nbits > 0) *pos = static_cast<uint8_t>(buf);
  if (changed) *changed += diff;
  return c;
}

// AVX2 (the same rule as the AVX-512 path): 8 lanes hold 8/M groups, M in {4, 8}.
bool has_avx2() { return active_isa() != Isa::Scalar; }
// Mask bytes of an 8-bit keep set: byte i = bit i.
struct MaskBytes {
  uint64_t b[256];
  MaskBytes() {
    for (int k = 0; k < 256; ++k) {
      b[k] = 0;
      for (int i = 0; i < 8; ++i) b[k] |= static_cast<uint64_t>((k >> i) & 1) << (8 * i);
    }
  }
};
const MaskBytes kMaskBytes;

template <int M>
__attribute__((target("avx2,fma,popcnt"))) int64_t nm_mask_scale_avx2(const float* w, int64_t count, int n, float alpha, uint8_t* mask, float* eff,
                                                                        int64_t* changed) {
  int64_t diff = 0;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i inner = _mm256_and_si256(lane, _mm256_set1_epi32(M - 1)), base = _mm256_andnot_si256(_mm256_set1_epi32(M - 1), lane);
  __m256i rot[M], earlier[M];
  for (int s = 1; s < M; ++s) {
    const __m256i other = _mm256_and_si256(_mm256_add_epi32(inner, _mm256_set1_epi32(s)), _mm256_set1_epi32(M - 1));
    rot[s] = _mm256_or_si256(base, other);
    earlier[s] = _mm256_cmpgt_epi32(inner, other);
  }
  // Keys are at most 0x7fc00000, so signed compares order them.
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000), qnan = _mm256_set1_epi32(0x7fc00000);
  const __m256i nn = _mm256_set1_epi32(n);
  const __m256 va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 v = _mm256_loadu_ps(w + i);
    __m256i key = _mm256_and_si256(_mm256_castps_si256(v), absmask);
    key = _mm256_blendv_epi8(key, qnan, _mm256_cmpgt_epi32(key, inf));
    __m256i rank = _mm256_setzero_si256();
    for (int s = 1; s < M; ++s) {
      const __m256i o = _mm256_permutevar8x32_epi32(key, rot[s]);
      const __m256i beats = _mm256_or_si256(_mm256_cmpgt_epi32(o, key), _mm256_and_si256(_mm256_cmpeq_epi32(o, key), earlier[s]));
      rank = _mm256_sub_epi32(rank, beats);
    }
    const __m256i keep = _mm256_cmpgt_epi32(nn, rank);
    const uint64_t bytes = kMaskBytes.b[_mm256_movemask_ps(_mm256_castsi256_ps(keep))];
    if (changed) {
      uint64_t old;
      std::memcpy(&old, mask + i, 8);
      diff += __builtin_popcountll(old ^ bytes);  // mask bytes are 0 or 1: one bit per changed entry
    }
    std::memcpy(mask + i, &bytes, 8);
    const __m256 e = alpha == 0.0f ? _mm256_and_ps(v, _mm256_castsi256_ps(keep)) : _mm256_blendv_ps(_mm256_mul_ps(va, v), v, _mm256_castsi256_ps(keep));
    _mm256_storeu_ps(eff + i, e);
  }
  if (changed) *changed += diff;
  return i;
}

// Compression on AVX2 for M in {4, 8}, any N, 8 columns at a time: for the 8-bit keep set, a table gives the lanes
// of the kept values (gathered by one permute) and their in-group indices packed log2(M) bits each, which go
// through a bit buffer into the position stream.
struct CompressLut {
  int32_t lanes[256][8];
  uint32_t pos4[256], pos8[256];
  CompressLut() {
    for (int k = 0; k < 256; ++k) {
      int t = 0;
      pos4[k] = pos8[k] = 0;
      for (int i = 0; i < 8; ++i) lanes[k][i] = 0;
      for (int i = 0; i < 8; ++i)
        if ((k >> i) & 1) {
          lanes[k][t] = i;
          pos4[k] |= static_cast<uint32_t>(i & 3) << (2 * t);
          pos8[k] |= static_cast<uint32_t>(i) << (3 * t);
          ++t;
        }
    }
  }
};
const CompressLut kCompressLut;

// Returns the columns done (whole chunks of 8); their values and position bytes are written, the last byte
// possibly partly (its free high bits zero).
__attribute__((target("avx2,fma"))) int64_t nm_compress_row_avx2(const float* w, const uint8_t* mask, int64_t cols, int n, int m,
                                                                 float* values, uint8_t* pos) {
  const int bits = m == 4 ? 2 : 3, per = 8 / m * n;  // kept values per chunk
  const uint32_t* lut = m == 4 ? kCompressLut.pos4 : kCompressLut.pos8;
  const int64_t kpr = cols / m * n;
  uint64_t buf = 0;
  int nbits = 0;
  int64_t c = 0, t = 0;
  for (; c + 8 <= cols; c += 8, t += per) {
    const __m128i mb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(mask + c));
    const int keep = ~_mm_movemask_epi8(_mm_cmpeq_epi8(mb, _mm_setzero_si128())) & 0xff;
    const __m256 v = _mm256_permutevar8x32_ps(_mm256_loadu_ps(w + c), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kCompressLut.lanes[keep])));
    if (t + 8 <= kpr) _mm256_storeu_ps(values + t, v);
    else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, v);
      std::copy(tmp, tmp + per, values + t);
    }
    buf |= static_cast<uint64_t>(lut[keep]) << nbits;
    nbits += per * bits;
    for (; nbits >= 8; nbits -= 8, buf >>= 8) *pos++ = static_cast<uint8_t>(buf);
  }
  if (nbits > 0) *pos = static_cast<uint8_t>(buf);
  return c;
}
#pragma GCC diagnostic pop
#endif

template <int M>
void nm_mask_scale_span(const float* w, int64_t count, int n, float alpha, uint8_t* mask, float* eff, int64_t* changed = nullptr) {
  int64_t done = 0;
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  if constexpr (M <= 16)
    if (has_avx512bw()) done = nm_mask_scale_avx512<M>(w, count, n, alpha, mask, eff, changed);
  if constexpr (M <= 8)
    if (!done && has_avx2()) done = nm_mask_scale_avx2<M>(w, count, n, alpha, mask, eff, changed);
#endif
  nm_mask_scale_scalar<M>(w + done, count - done, n, alpha, mask + done, eff + done, changed);
}

// Columns [c, cols) of nm_compress_row, the first t kept values and their position fields written (the byte
// holding field t possibly in part, its free high bits zero).
void nm_compress_from(const float* w, const uint8_t* mask, int64_t c, int64_t t, int64_t cols, int n, int m, float* values, uint8_t* pos) {
  const int bits = nm_pos_bits(m);
  std::fill(pos + (t * bits + 7) / 8, pos + nm_pos_row_bytes(cols, n, m), uint8_t{0});
  for (; c < cols; c += m)
    for (int i = 0; i < m; ++i)
      if (mask[c + i]) {
        values[t] = w[c + i];
        nm_put_pos(pos, t++, bits, i);
      }
}

// The compressed form of one row from its mask: the kept values in ascending position and their positions
// (core/nm_format.h), exactly n per group. Vector path: M <= 8 on AVX2 (2:4, 1:4 and 1:8 on AVX-512 are
// nm_train_row_avx512).
void nm_compress_row(const float* w, const uint8_t* mask, int64_t cols, int n, int m, float* values, uint8_t* pos) {
  int64_t c = 0, t = 0;
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  if (m <= 8 && has_avx2()) {
    c = nm_compress_row_avx2(w, mask, cols, n, m, values, pos);
    t = c / m * n;
  }
#endif
  nm_compress_from(w, mask, c, t, cols, n, m, values, pos);
}

// Whether every group of M in a row of a given mask keeps exactly n (no early exit, so the loop vectorises).
template <int M>
bool row_keeps_n(const uint8_t* mr, int64_t cols, int n) {
  int bad = 0;
  for (int64_t g = 0; g < cols; g += M) {
    int kept = 0;
    for (int j = 0; j < M; ++j) kept += mr[g + j] != 0;
    bad |= kept != n;
  }
  return bad == 0;
}

}  // namespace

int64_t nm_train_pass(const float* w, int64_t rows, int64_t cols, int n, int m, uint8_t* mask, bool select,
                      bool count_sad, float* eff, float* values, uint8_t* positions) {
  const int64_t kpr = nm_kept_per_row(cols, n, m), prb = nm_pos_row_bytes(cols, n, m);
  std::atomic<int64_t> sad{0}, bad_row{rows};
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  const bool fused = has_avx512bw() && ((n == 2 && m == 4) || (n == 1 && (m == 4 || m == 8)));
#endif
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    // Without eff, the selection's w ⊙ m of a row goes to a row of scratch that stays in L1: the products that
    // read only the compressed form spare the step the write of the whole dense copy.
    thread_local std::vector<float> row_eff;
    if (!eff) row_eff.resize(static_cast<size_t>(cols));
    int64_t changed = 0;
    for (int64_t r = r0; r < r1; ++r) {
      uint8_t* mr = mask + r * cols;
      if (!select) {
        // A given mask must keep exactly n per group (the compressed form has room for n): a row that does not is
        // not written, and the call fails naming it.
        bool ok = true;
        NMS_DISPATCH_M(m, ok = row_keeps_n<kM>(mr, cols, n));
        if (!ok) {
          int64_t cur = bad_row.load();
          while (r < cur && !bad_row.compare_exchange_weak(cur, r)) continue;
          continue;
        }
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
        if (fused) {
          const float* wr = w + r * cols;
          float* er = eff ? eff + r * cols : nullptr;
          float* vr = values + r * kpr;
          uint8_t* pr = positions + r * prb;
          const int64_t c = n == 2 ? nm_train_row_avx512<2, 4, false>(wr, cols, mr, er, vr, pr, nullptr)
                            : m == 4 ? nm_train_row_avx512<1, 4, false>(wr, cols, mr, er, vr, pr, nullptr)
                                     : nm_train_row_avx512<1, 8, false>(wr, cols, mr, er, vr, pr, nullptr);
          if (c < cols) {
            if (er) masked_zero_range(wr + c, mr + c, er + c, cols - c);
            nm_compress_from(wr, mr, c, c / m * n, cols, n, m, vr, pr);
          }
          continue;
        }
#endif
        if (eff) masked_zero_range(w + r * cols, mr, eff + r * cols, cols);
        nm_compress_row(w + r * cols, mr, cols, n, m, values + r * kpr, positions + r * prb);
        continue;
      }
      const float* wr = w + r * cols;
      float* er = eff ? eff + r * cols : nullptr;
      int64_t* ch = count_sad ? &changed : nullptr;
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
      if (fused) {
        float* vr = values + r * kpr;
        uint8_t* pr = positions + r * prb;
        const int64_t c = n == 2 ? nm_train_row_avx512<2, 4, true>(wr, cols, mr, er, vr, pr, ch)
                          : m == 4 ? nm_train_row_avx512<1, 4, true>(wr, cols, mr, er, vr, pr, ch)
                                   : nm_train_row_avx512<1, 8, true>(wr, cols, mr, er, vr, pr, ch);
        if (c < cols) {  // the last columns short of 16: the scalar rule
          NMS_DISPATCH_M(m, nm_mask_scale_span<kM>(wr + c, cols - c, n, 0.f, mr + c, er ? er + c : row_eff.data(), ch));
          nm_compress_from(wr, mr, c, c / m * n, cols, n, m, vr, pr);
        }
        continue;
      }
#endif
      NMS_DISPATCH_M(m, nm_mask_scale_span<kM>(wr, cols, n, 0.f, mr, er ? er : row_eff.data(), ch));
      nm_compress_row(wr, mr, cols, n, m, values + r * kpr, positions + r * prb);
    }
    sad += changed;
  });
  if (const int64_t r = bad_row.load(); r < rows) {
    const uint8_t* mr = mask + r * cols;
    for (int64_t g = 0; g < cols; g += m) {
      const int kept = static_cast<int>(std::count_if(mr + g, mr + g + m, [](uint8_t b) { return b != 0; }));
      if (kept != n)
        fail("E_VALUE", "nmTrainPass: options.mask keeps " + std::to_string(kept) + " of the group at row " + std::to_string(r) +
                            ", columns " + std::to_string(g) + ".." + std::to_string(g + m - 1) + "; expected exactly " +
                            std::to_string(n) + " of " + std::to_string(m));
    }
  }
  return sad.load();
}

void bias_add(float* y, const float* b, int64_t rows, int64_t cols) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) bias_add_row(y + r * cols, b, cols);
  });
}

void bias_grad(const float* dy, int64_t rows, int64_t cols, float* db) {
  const int64_t blocks = (cols + kColBlock - 1) / kColBlock;
  parallel_for(blocks, std::max<int64_t>(1, kGrain / std::max<int64_t>(rows * kColBlock, 1)), [&](int64_t b0, int64_t b1) {
    float acc[kColBlock];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * kColBlock, w = std::min(kColBlock, cols - c0);
      std::fill(acc, acc + w, 0.0f);
      for (int64_t r = 0; r < rows; ++r) add_row(acc, dy + r * cols + c0, w);
      std::memcpy(db + c0, acc, static_cast<size_t>(w) * sizeof(float));
    }
  });
}

void relu_forward(const float* x, float* y, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { relu_range(x + i0, y + i0, i1 - i0); });
}

void add(const float* a, const float* b, float* y, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { add_range(a + i0, b + i0, y + i0, i1 - i0); });
}

void embedding_forward(const float* ids, const float* table, float* out, int64_t rows, int64_t vocab, int64_t dim,
                       bool accumulate) {
  parallel_for(rows, row_grain(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = table + static_cast<int64_t>(ids[r]) * dim;
      if (accumulate) add_row(out + r * dim, src, dim);
      else std::memcpy(out + r * dim, src, static_cast<size_t>(dim) * sizeof(float));
    }
  });
}

void embedding_backward(const float* dy, const float* ids, float* dtable, int64_t rows, int64_t vocab, int64_t dim,
                        bool accumulate) {
  // By column block, rows in order: each sum has one owner and a fixed order (repeated ids need no atomics).
  if (!accumulate) std::memset(dtable, 0, static_cast<size_t>(vocab * dim) * sizeof(float));
  const int64_t blocks = (dim + kColBlock - 1) / kColBlock;
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * kColBlock, w = std::min(kColBlock, dim - c0);
      for (int64_t r = 0; r < rows; ++r)
        add_row(dtable + static_cast<int64_t>(ids[r]) * dim + c0, dy + r * dim + c0, w);
    }
  });
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { relu_back_range(dy + i0, y + i0, dx + i0, i1 - i0); });
}

void gelu_forward(const float* x, float* y, int64_t n) {
  parallel_for(n, kGrain / 4, [&](int64_t i0, int64_t i1) { gelu_range(x + i0, y + i0, i1 - i0); });
}

void gelu_backward(const float* dy, const float* x, float* dx, int64_t n) {
  parallel_for(n, kGrain / 4, [&](int64_t i0, int64_t i1) { gelu_back_range(dy + i0, x + i0, dx + i0, i1 - i0); });
}

void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t rows, int64_t cols, float eps) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += xr[c];
      const double mu = s / static_cast<double>(cols);
      double v = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double d = xr[c] - mu;
        v += d * d;
      }
      const float m = static_cast<float>(mu);
      const float rs = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(cols) + eps));
      mean[r] = m;
      rstd[r] = rs;
      float* yr = y + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        const float h = (xr[c] - m) * rs;
        yr[c] = gamma ? h * gamma[c] + (beta ? beta[c] : 0.0f) : h + (beta ? beta[c] : 0.0f);
      }
    }
  });
}

void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                        float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  // Parameter gradients first: dx may alias dy.
  if (dgamma || dbeta) {
    const int64_t blocks = (cols + kColBlock - 1) / kColBlock;
    parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
      float ag[kColBlock], ab[kColBlock];
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t c0 = b * kColBlock, w = std::min(kColBlock, cols - c0);
        std::fill(ag, ag + w, 0.0f);
        std::fill(ab, ab + w, 0.0f);
        for (int64_t r = 0; r < rows; ++r) {
          const float* d = dy + r * cols + c0;
          const float* xr = x + r * cols + c0;
          const float m = mean[r], rs = rstd[r];
          for (int64_t j = 0; j < w; ++j) {
            ag[j] += d[j] * (xr[j] - m) * rs;
            ab[j] += d[j];
          }
        }
        if (dgamma) std::memcpy(dgamma + c0, ag, static_cast<size_t>(w) * sizeof(float));
        if (dbeta) std::memcpy(dbeta + c0, ab, static_cast<size_t>(w) * sizeof(float));
      }
    });
  }
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* d = dy + r * cols;
      const float* xr = x + r * cols;
      const float m = mean[r], rs = rstd[r];
      double s1 = 0, s2 = 0;  // Σ dx̂ and Σ dx̂·x̂
      for (int64_t c = 0; c < cols; ++c) {
        const float g = gamma ? d[c] * gamma[c] : d[c];
        s1 += g;
        s2 += static_cast<double>(g) * ((xr[c] - m) * rs);
      }
      const float a = static_cast<float>(s1 / static_cast<double>(cols));
      const float b = static_cast<float>(s2 / static_cast<double>(cols));
      float* o = dx + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        const float g = gamma ? d[c] * gamma[c] : d[c];
        o[c] = rs * (g - a - (xr[c] - m) * rs * b);
      }
    }
  });
}

XentResult softmax_xent_forward(const float* logits, const int32_t* labels, float* probs, int64_t rows,
                                int64_t cols, float label_smoothing) {
  std::vector<double> loss(static_cast<size_t>(rows));
  std::vector<uint8_t> hit(static_cast<size_t>(rows));
  const double eps = label_smoothing;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* z = logits + r * cols;
      float* p = probs + r * cols;
      int64_t arg = 0;
      float mx = z[0];
      for (int64_t c = 1; c < cols; ++c)
        if (z[c] > mx || (z[c] != z[c] && mx == mx)) { mx = z[c]; arg = c; }
      double sum = 0, sumz = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const float e = std::exp(z[c] - mx);
        p[c] = e;
        sum += e;
        sumz += z[c];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t c = 0; c < cols; ++c) p[c] *= inv;
      const int32_t y = labels[r];
      if (y == kIgnoreLabel) {
        loss[r] = 0;
        hit[r] = 0;
        continue;
      }
      const double lse = mx + std::log(sum);  // log Σ exp z
      // −Σ q·log p = (1−ε)(lse − z_y) + ε·(lse − mean z)
      loss[r] = (1.0 - eps) * (lse - z[y]) + eps * (lse - sumz / static_cast<double>(cols));
      hit[r] = arg == y;
    }
  });
  XentResult res{0.0, 0, 0};
  for (int64_t r = 0; r < rows; ++r) {
    res.loss_sum += loss[r];
    res.correct += hit[r];
    res.counted += labels[r] != kIgnoreLabel;
  }
  return res;
}

void softmax_xent_backward(const float* probs, const int32_t* labels, float* dlogits, int64_t rows, int64_t cols,
                           float label_smoothing, float scale) {
  const float off = label_smoothing / static_cast<float>(cols), on = 1.0f - label_smoothing + off;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* p = probs + r * cols;
      float* d = dlogits + r * cols;
      const int32_t y = labels[r];
      if (y == kIgnoreLabel) std::fill(d, d + cols, 0.0f);
      else for (int64_t c = 0; c < cols; ++c) d[c] = (p[c] - (c == y ? on : off)) * scale;
    }
  });
}

void im2col(const float* x, const Window2d& g, float* cols) {
  const int64_t rows = g.batch * g.oh * g.ow, width = g.kh * g.kw * g.c;
  const size_t cbytes = static_cast<size_t>(g.c) * sizeof(float);
  parallel_for(rows, row_grain(width), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / (g.oh * g.ow), rem = r % (g.oh * g.ow), oy = rem / g.ow, ox = rem % g.ow;
      float* dst = cols + r * width;
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        const int64_t iy = oy * g.stride_h - g.pad_h + ky;
        if (iy < 0 || iy >= g.h) {
          std::memset(dst, 0, cbytes * g.kw);
          dst += g.kw * g.c;
          continue;
        }
        const float* src = x + (b * g.h + iy) * g.w * g.c;
        for (int64_t kx = 0; kx < g.kw; ++kx, dst += g.c) {
          const int64_t ix = ox * g.stride_w - g.pad_w + kx;
          if (ix < 0 || ix >= g.w) std::fill(dst, dst + g.c, 0.0f);
          else if (g.c < 8) for (int64_t c = 0; c < g.c; ++c) dst[c] = src[ix * g.c + c];  // few channels: no call
          else std::memcpy(dst, src + ix * g.c, cbytes);
        }
      }
    }
  });
}

void col2im(const float* cols, const Window2d& g, float* dx) {
  const int64_t width = g.kh * g.kw * g.c, image = g.h * g.w * g.c;
  // One image per task: patches of different images never overlap, so there is no race.
  parallel_for(g.batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      float* img = dx + b * image;
      std::fill(img, img + image, 0.0f);
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const float* src = cols + ((b * g.oh + oy) * g.ow + ox) * width;
          for (int64_t ky = 0; ky < g.kh; ++ky) {
            const int64_t iy = oy * g.stride_h - g.pad_h + ky;
            for (int64_t kx = 0; kx < g.kw; ++kx, src += g.c) {
              const int64_t ix = ox * g.stride_w - g.pad_w + kx;
              if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
              float* d = img + (iy * g.w + ix) * g.c;
              for (int64_t c = 0; c < g.c; ++c) d[c] += src[c];
            }
          }
        }
    }
  });
}

void maxpool_forward(const float* x, const Window2d& g, float* y, int32_t* argmax) {
  const int64_t rows = g.batch * g.oh * g.ow;
  parallel_for(rows, row_grain(g.c * g.kh * g.kw), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / (g.oh * g.ow), rem = r % (g.oh * g.ow), oy = rem / g.ow, ox = rem % g.ow;
      float* yr = y + r * g.c;
      int32_t* ar = argmax + r * g.c;
      bool first = true;  // padding is at most half the window, so every window holds an image position
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        const int64_t iy = oy * g.stride_h - g.pad_h + ky;
        if (iy < 0 || iy >= g.h) continue;
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          const int64_t ix = ox * g.stride_w - g.pad_w + kx;
          if (ix < 0 || ix >= g.w) continue;
          const int64_t base = ((b * g.h + iy) * g.w + ix) * g.c;
          if (first) pool_first(x + base, static_cast<int32_t>(base), yr, ar, g.c);
          else pool_update(x + base, static_cast<int32_t>(base), yr, ar, g.c);
          first = false;
        }
      }
    }
  });
}

void maxpool_backward(const float* dy, const int32_t* argmax, const Window2d& g, float* dx) {
  const int64_t image = g.h * g.w * g.c, per_out = g.oh * g.ow * g.c;
  parallel_for(g.batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      std::fill(dx + b * image, dx + (b + 1) * image, 0.0f);
      const float* d = dy + b * per_out;
      const int32_t* a = argmax + b * per_out;
      // An index outside this image (never produced by maxpool_forward) is skipped, not written.
      for (int64_t i = 0; i < per_out; ++i)
        if (a[i] >= b * image && a[i] < (b + 1) * image) dx[a[i]] += d[i];
    }
  });
}

void dropout_apply(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t offset) {
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      y[i] = dropout_uniform(seed, offset + static_cast<uint64_t>(i)) >= p ? x[i] * scale : 0.0f;
  });
}

void masked_scale(const float* x, const uint8_t* mask, float alpha, float* y, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    if (alpha == 0.0f) masked_zero_range(x + i0, mask + i0, y + i0, i1 - i0);
    else masked_scale_range(x + i0, mask + i0, alpha, y + i0, i1 - i0);
  });
}

void masked_add(float* g, const float* w, const uint8_t* mask, float lambda, int64_t n) {
  if (lambda == 0.0f) return;  // exactly the unmodified gradient (no −0 + 0 or 0·inf surprises)
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { masked_add_range(g + i0, w + i0, mask + i0, lambda, i1 - i0); });
}

void nm_mask_scale(const float* w, int64_t rows, int64_t cols, int n, int m, float alpha, uint8_t* mask, float* eff) {
  // Groups never cross rows (cols % m == 0), so the whole tensor is one run of groups.
  const int64_t count = rows * cols;
  parallel_for(count / 16 + 1, std::max<int64_t>(1, kGrain / 16), [&](int64_t c0, int64_t c1) {
    const int64_t i0 = c0 * 16, i1 = std::min(count, c1 * 16);  // 16 is a multiple of every m <= 16; m = 32 below
    auto run = [&](int64_t a, int64_t b) {
      NMS_DISPATCH_M(m, nm_mask_scale_span<kM>(w + a, b - a, n, alpha, mask + a, eff + a));
    };
    if (m <= 16) run(i0, i1);
    else {  // m = 32: chunks start on a 32-element boundary
      const int64_t a = (i0 + 31) / 32 * 32, b = std::min(count, (i1 + 31) / 32 * 32);
      if (a < b) run(a, b);
    }
  });
}

}  // namespace nms::cpu
