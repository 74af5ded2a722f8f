#include "cpu/mask.h"

#include <algorithm>
#include <cstring>

#include "core/threadpool.h"
#include "cpu/simd.h"

#if NMS_X86
#include <immintrin.h>
// GCC 12 reports the _mm512_undefined_*() placeholders inside AVX-512 intrinsics as (maybe-)uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace nms::cpu {
namespace {

constexpr int64_t kGrainElems = 1 << 14;

inline int64_t row_grain(int64_t cols) { return cols >= kGrainElems ? 1 : kGrainElems / cols; }

}  // namespace

void nm_mask(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, uint8_t* out) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < cols; g += m) {
        const int64_t base = r * cols + g;
        const uint32_t keep = nm_group_keep(w, d, base, n, m);
        for (int i = 0; i < m; ++i) out[base + i] = (keep >> i) & 1u;
      }
  });
}

void nm_prune(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, void* out) {
  const size_t es = dtype_size(d);
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < cols; g += m) {
        const int64_t base = r * cols + g;
        const uint32_t keep = nm_group_keep(w, d, base, n, m);
        for (int i = 0; i < m; ++i) {
          char* dst = static_cast<char*>(out) + (base + i) * es;
          if ((keep >> i) & 1u) {
            if (out != w) std::memcpy(dst, static_cast<const char*>(w) + (base + i) * es, es);
          } else {
            std::memset(dst, 0, es);
          }
        }
      }
  });
}

int64_t nm_check(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, int* nonzeros) {
  const int64_t groups = rows * (cols / m);
  for (int64_t g = 0; g < groups; ++g) {
    int nz = 0;
    for (int i = 0; i < m; ++i) nz += is_nonzero(w, d, g * m + i);
    if (nz > n) {
      *nonzeros = nz;
      return g;
    }
  }
  return -1;
}

const uint16_t* transposable_patterns() {
  static const auto table = [] {
    struct T { uint16_t p[kTransposablePatterns]; } t{};
    int k = 0;
    for (uint32_t code = 0; code < (1u << 16); ++code) {
      bool ok = true;
      for (int r = 0; r < 4 && ok; ++r) ok = __builtin_popcount((code >> (4 * r)) & 0xfu) == 2;
      for (int c = 0; c < 4 && ok; ++c) ok = __builtin_popcount(code & (0x1111u << c)) == 2;
      if (ok) t.p[k++] = static_cast<uint16_t>(code);
    }
    return t;
  }();
  return table.p;
}

namespace {

// The 8 kept positions of each transposable pattern in increasing bit order: the scores are summed in that order
// without a test per bit (the same sums, bit for bit, as the CUDA kernel's loop over the 16 bits).
struct KeptBits { uint8_t b[kTransposablePatterns][8]; };
const KeptBits& kept_bits() {
  static const KeptBits k = [] {
    const uint16_t* pats = transposable_patterns();
    KeptBits t{};
    for (int p = 0; p < kTransposablePatterns; ++p)
      for (int b = 0, j = 0; b < 16; ++b)
        if ((pats[p] >> b) & 1u) t.b[p][j++] = static_cast<uint8_t>(b);
    return t;
  }();
  return k;
}

// The best pattern of one tile from its 16 scores: the largest sum, the first pattern on ties.
int best_pattern(const double* s, const KeptBits& kept) {
  int best = 0;
  double best_score = -1;
  for (int p = 0; p < kTransposablePatterns; ++p) {
    double sum = 0;
    for (int t = 0; t < 8; ++t) sum += s[kept.b[p][t]];
    if (sum > best_score) best_score = sum, best = p;
  }
  return best;
}

#if NMS_X86
// The patterns as pair choices for the AVX-512 search: pair[r] is row r's pair of kept columns, one of the 6
// pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3) by its index.
struct PatternPairs {
  uint8_t upper[kTransposablePatterns], lower[kTransposablePatterns];  // pair[0]·6 + pair[1], pair[2]·6 + pair[3]
  int32_t pairs[kTransposablePatterns];  // pair[r] in byte r
};
// Row r of a tile's mask (4 bytes) from its pair index.
alignas(64) constexpr int32_t kPairBytes[16] = {0x0101, 0x010001, 0x01000001, 0x010100, 0x01000100, 0x01010000};
const PatternPairs& pattern_pairs() {
  static const PatternPairs t = [] {
    static constexpr uint8_t kNibble[6] = {3, 5, 9, 6, 10, 12};
    const uint16_t* pats = transposable_patterns();
    PatternPairs x{};
    for (int p = 0; p < kTransposablePatterns; ++p) {
      int pair[4] = {};
      for (int r = 0; r < 4; ++r) {
        const unsigned nib = (pats[p] >> (4 * r)) & 0xfu;
        for (int k = 0; k < 6; ++k)
          if (kNibble[k] == nib) pair[r] = k;
        x.pairs[p] |= pair[r] << (8 * r);
      }
      x.upper[p] = static_cast<uint8_t>(pair[0] * 6 + pair[1]);
      x.lower[p] = static_cast<uint8_t>(pair[2] * 6 + pair[3]);
    }
    return x;
  }();
  return t;
}

// The best pattern of 16 tiles side by side (x: their 4 rows of 64 floats, `stride` apart), one tile per float
// lane. The exact rule sums 8 doubles in bit order per pattern (best_pattern; 90 x 8 adds a tile). Here each
// pattern's score is (P0 + P1) + (P2 + P3) in float32 from the 24 pair sums of the rows: within 3 roundings of the
// exact sum, as the exact rule's double sum is within 7 of 2^-53. The first pattern of largest such score is the
// exact choice when every other pattern scores below it by more than those errors allow (2^-18 relative, ten times
// the bound); the lanes where the runner-up comes closer (ties, an all-zero tile), or holding a value the float32
// sums could overflow on or that the exact scores map (|x| > 2^124, inf, NaN), are returned (a lane mask) for the
// exact rule. So which of two equal float32 scores is kept does not matter: such lanes are unsure.
NMS_TARGET_AVX512 __mmask16 best_patterns_avx512(const float* x, int64_t stride, const PatternPairs& pp, int32_t* best) {
  // Column c of the 16 tiles: tile t's column c is element 4t + c of the row.
  __m512 v[4][4];
  const __m512i pick01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const __m512i pick23 = _mm512_add_epi32(pick01, _mm512_set1_epi32(2));
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  __m512i top = _mm512_setzero_si512();  // each tile's largest |x| bits
  for (int r = 0; r < 4; ++r) {
    __m512 q[4];
    for (int k = 0; k < 4; ++k)
      q[k] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(x + r * stride + 16 * k)), absmask));
    const __m512 a01 = _mm512_permutex2var_ps(q[0], pick01, q[1]), b01 = _mm512_permutex2var_ps(q[2], pick01, q[3]);
    const __m512 a23 = _mm512_permutex2var_ps(q[0], pick23, q[1]), b23 = _mm512_permutex2var_ps(q[2], pick23, q[3]);
    v[r][0] = _mm512_shuffle_f32x4(a01, b01, 0x44);
    v[r][1] = _mm512_shuffle_f32x4(a01, b01, 0xee);
    v[r][2] = _mm512_shuffle_f32x4(a23, b23, 0x44);
    v[r][3] = _mm512_shuffle_f32x4(a23, b23, 0xee);
    for (int c = 0; c < 4; ++c) top = _mm512_max_epu32(top, _mm512_castps_si512(v[r][c]));
  }
  __m512 pairs[4][6];
  for (int r = 0; r < 4; ++r)
    for (int i = 0, k = 0; i < 4; ++i)
      for (int j = i + 1; j < 4; ++j) pairs[r][k++] = _mm512_add_ps(v[r][i], v[r][j]);
  __m512 upper[36], lower[36];  // rows 0-1 and rows 2-3 of every pair choice
  for (int a = 0; a < 6; ++a)
    for (int b = 0; b < 6; ++b) {
      upper[a * 6 + b] = _mm512_add_ps(pairs[0][a], pairs[1][b]);
      lower[a * 6 + b] = _mm512_add_ps(pairs[2][a], pairs[3][b]);
    }
  // Three chains over the patterns (p mod 3), merged at the end: one chain's compare, max and blend per pattern
  // wait on the previous pattern's, which held the loop to that latency. A tie across chains makes the runner-up
  // equal the best, so such lanes are unsure whichever chain's pattern is kept.
  constexpr int kChains = 3;
  static_assert(kTransposablePatterns % kChains == 0, "whole rounds of chains");
  __m512 first[kChains], second[kChains];
  __m512i arg[kChains];  // the best pattern's pair indices (PatternPairs::pairs)
  for (int k = 0; k < kChains; ++k) {
    first[k] = second[k] = _mm512_set1_ps(-1.0f);
    arg[k] = _mm512_setzero_si512();
  }
  for (int p = 0; p < kTransposablePatterns; p += kChains)
    for (int k = 0; k < kChains; ++k) {
      const __m512 s = _mm512_add_ps(upper[pp.upper[p + k]], lower[pp.lower[p + k]]);
      const __mmask16 gt = _mm512_cmp_ps_mask(s, first[k], _CMP_GT_OQ);
      second[k] = _mm512_max_ps(second[k], _mm512_min_ps(s, first[k]));
      first[k] = _mm512_max_ps(first[k], s);
      arg[k] = _mm512_mask_blend_epi32(gt, arg[k], _mm512_set1_epi32(pp.pairs[p + k]));
    }
  for (int k = 1; k < kChains; ++k) {
    const __mmask16 gt = _mm512_cmp_ps_mask(first[k], first[0], _CMP_GT_OQ);
    second[0] = _mm512_max_ps(_mm512_max_ps(second[0], second[k]), _mm512_min_ps(first[0], first[k]));
    first[0] = _mm512_max_ps(first[0], first[k]);
    arg[0] = _mm512_mask_blend_epi32(gt, arg[0], arg[k]);
  }
  _mm512_storeu_si512(best, arg[0]);
  const __m512 near = _mm512_mul_ps(first[0], _mm512_set1_ps(1.0f - 0x1p-18f));
  return _mm512_cmp_ps_mask(second[0], near, _CMP_GE_OQ) | _mm512_cmpgt_epu32_mask(top, _mm512_set1_epi32(0x7d800000));
}

// Rows of 16 tiles' masks from their patterns' pair indices: row r of tile t, 4 bytes, at out + r·cols + 4t (the
// first `lanes`).
NMS_TARGET_AVX512 void store_patterns_avx512(const int32_t* best, int lanes, int64_t cols, uint8_t* out) {
  const __m512i pairs = _mm512_loadu_si512(best), bytes = _mm512_load_si512(kPairBytes);
  const __mmask16 keep = static_cast<__mmask16>((1u << lanes) - 1);
  for (int r = 0; r < 4; ++r) {
    const __m512i idx = _mm512_and_si512(_mm512_srli_epi32(pairs, 8 * r), _mm512_set1_epi32(0xff));
    _mm512_mask_storeu_epi32(out + r * cols, keep, _mm512_permutexvar_epi32(idx, bytes));
  }
}

NMS_TARGET_AVX2 void best_patterns_avx2(const double* sc, const KeptBits& kept, int* best) {
  __m256d best_score = _mm256_set1_pd(-1.0), best_p = _mm256_setzero_pd();
  for (int p = 0; p < kTransposablePatterns; ++p) {
    __m256d sum = _mm256_setzero_pd();
    for (int t = 0; t < 8; ++t) sum = _mm256_add_pd(sum, _mm256_loadu_pd(sc + kept.b[p][t] * 4));
    const __m256d gt = _mm256_cmp_pd(sum, best_score, _CMP_GT_OQ);
    best_score = _mm256_blendv_pd(best_score, sum, gt);
    best_p = _mm256_blendv_pd(best_p, _mm256_set1_pd(p), gt);
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(best), _mm256_cvtpd_epi32(best_p));
}
#endif

}  // namespace

void transposable_mask(const void* w, DType d, int64_t rows, int64_t cols, uint8_t* out) {
  const uint16_t* pats = transposable_patterns();
  const KeptBits& kept = kept_bits();
  const Isa isa = active_isa();
  const int64_t tile_rows = rows / 4, tile_cols = cols / 4;
  // The exact rule on one tile (its 16 scores, then the 90 sums), writing its mask.
  auto exact = [&](int64_t tr, int64_t tc) {
    double sc[16];
    for (int b = 0; b < 16; ++b) sc[b] = transposable_score(w, d, (tr * 4 + b / 4) * cols + tc * 4 + b % 4);
    const uint16_t pat = pats[best_pattern(sc, kept)];
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) out[(tr * 4 + r) * cols + tc * 4 + c] = (pat >> (r * 4 + c)) & 1u;
  };
#if NMS_X86
  if (isa == Isa::Avx512) {
    const PatternPairs& pp = pattern_pairs();
    parallel_for(tile_rows, 1, [&](int64_t t0, int64_t t1) {
      float buf[4 * 64];
      int32_t best[16];
      for (int64_t tr = t0; tr < t1; ++tr)
        for (int64_t tc = 0; tc < tile_cols; tc += 16) {
          const int lanes = static_cast<int>(std::min<int64_t>(16, tile_cols - tc));
          const float* x = static_cast<const float*>(w) + tr * 4 * cols + tc * 4;
          int64_t stride = cols;
          if (lanes < 16 || d != DType::F32) {  // a last partial group, or another dtype: as float32, zero-padded
            std::memset(buf, 0, sizeof buf);
            for (int r = 0; r < 4; ++r)
              for (int i = 0; i < lanes * 4; ++i) buf[r * 64 + i] = load_as_f32(w, d, (tr * 4 + r) * cols + tc * 4 + i);
            x = buf, stride = 64;
          }
          const unsigned unsure = best_patterns_avx512(x, stride, pp, best) & ((1u << lanes) - 1);
          store_patterns_avx512(best, lanes, cols, out + tr * 4 * cols + tc * 4);
          for (unsigned u = unsure; u; u &= u - 1) exact(tr, tc + __builtin_ctz(u));
        }
    });
    return;
  }
#endif
  parallel_for(tile_rows, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t tr = t0; tr < t1; ++tr) {
      int64_t tc = 0;
#if NMS_X86
      if (isa == Isa::Avx2)
        for (double sc[16 * 4]; tc + 4 <= tile_cols; tc += 4) {
          int best[4];
          for (int b = 0; b < 16; ++b)
            for (int t = 0; t < 4; ++t) sc[b * 4 + t] = transposable_score(w, d, (tr * 4 + b / 4) * cols + (tc + t) * 4 + b % 4);
          best_patterns_avx2(sc, kept, best);
          for (int t = 0; t < 4; ++t)
            for (int r = 0; r < 4; ++r)
              for (int c = 0; c < 4; ++c) out[(tr * 4 + r) * cols + (tc + t) * 4 + c] = (pats[best[t]] >> (r * 4 + c)) & 1u;
        }
#endif
      for (; tc < tile_cols; ++tc) exact(tr, tc);
    }
  });
}

namespace {
int64_t mask_sad_scalar(const uint8_t* a, const uint8_t* b, int64_t count) {
  int64_t changed = 0;
  for (int64_t i = 0; i < count; ++i) changed += (a[i] != 0) != (b[i] != 0);
  return changed;
}
#if NMS_X86
// The byte loop above does not vectorize (an int64 sum of bytes): it was a fifth of nmTrainPass at 4096².
__attribute__((target("avx512f,avx512bw,popcnt"))) int64_t mask_sad_avx512(const uint8_t* a, const uint8_t* b, int64_t count) {
  int64_t changed = 0, i = 0;
  for (; i + 64 <= count; i += 64) {
    const __m512i va = _mm512_loadu_si512(a + i), vb = _mm512_loadu_si512(b + i);
    changed += _mm_popcnt_u64(_mm512_test_epi8_mask(va, va) ^ _mm512_test_epi8_mask(vb, vb));
  }
  return changed + mask_sad_scalar(a + i, b + i, count - i);
}
__attribute__((target("avx2,popcnt"))) int64_t mask_sad_avx2(const uint8_t* a, const uint8_t* b, int64_t count) {
  const __m256i zero = _mm256_setzero_si256();
  int64_t changed = 0, i = 0;
  for (; i + 32 <= count; i += 32) {
    const __m256i za = _mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)), zero);
    const __m256i zb = _mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i)), zero);
    changed += _mm_popcnt_u32(static_cast<unsigned>(_mm256_movemask_epi8(_mm256_xor_si256(za, zb))));
  }
  return changed + mask_sad_scalar(a + i, b + i, count - i);
}
#endif
}  // namespace

int64_t mask_sad(const uint8_t* a, const uint8_t* b, int64_t count) {
#if NMS_X86
  const Isa isa = active_isa();
  if (isa == Isa::Avx512) return mask_sad_avx512(a, b, count);
  if (isa == Isa::Avx2) return mask_sad_avx2(a, b, count);
#endif
  return mask_sad_scalar(a, b, count);
}

}  // namespace nms::cpu
