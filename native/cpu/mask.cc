#include "cpu/mask.h"

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
// best_pattern for 8 (AVX-512) or 4 (AVX2) tiles at once, one per double lane: each lane does the scalar loop's
// adds in its order, so the choices are bit for bit the same. sc holds the scores lane-major: sc[bit·L + lane].
NMS_TARGET_AVX512 void best_patterns_avx512(const double* sc, const KeptBits& kept, int* best) {
  __m512d s[16];
  for (int b = 0; b < 16; ++b) s[b] = _mm512_loadu_pd(sc + b * 8);
  __m512d best_score = _mm512_set1_pd(-1.0);
  __m256i best_p = _mm256_setzero_si256();
  for (int p = 0; p < kTransposablePatterns; ++p) {
    __m512d sum = _mm512_setzero_pd();
    for (int t = 0; t < 8; ++t) sum = _mm512_add_pd(sum, s[kept.b[p][t]]);
    const __mmask8 gt = _mm512_cmp_pd_mask(sum, best_score, _CMP_GT_OQ);
    best_score = _mm512_mask_blend_pd(gt, best_score, sum);
    best_p = _mm256_mask_blend_epi32(gt, best_p, _mm256_set1_epi32(p));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(best), best_p);
}

// The lane-major scores of 8 tiles of float32 (w at their top-left corner, rows `cols` apart): transposable_score
// lane by lane (|w| as a double, NaN → 1e300, beyond 3.4e38 → 1e299).
NMS_TARGET_AVX512 void tile_scores_avx512(const float* w, int64_t cols, double* sc) {
  const __m512i col0 = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 28, 24, 20, 16, 12, 8, 4, 0);
  const __m512d big = _mm512_set1_pd(3.4e38);
  for (int r = 0; r < 4; ++r) {
    const __m512 x0 = _mm512_loadu_ps(w + r * cols), x1 = _mm512_loadu_ps(w + r * cols + 16);
    for (int c = 0; c < 4; ++c) {
      const __m512 v = _mm512_permutex2var_ps(x0, _mm512_add_epi32(col0, _mm512_set1_epi32(c)), x1);
      const __m512d x = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
      __m512d a = _mm512_abs_pd(x);
      a = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a, big, _CMP_GT_OQ), a, _mm512_set1_pd(1e299));
      a = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q), a, _mm512_set1_pd(1e300));
      _mm512_storeu_pd(sc + (r * 4 + c) * 8, a);
    }
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
  const int lanes = isa == Isa::Avx512 ? 8 : isa == Isa::Avx2 ? 4 : 1;
  const int64_t tile_rows = rows / 4, tile_cols = cols / 4;
  parallel_for(tile_rows, 1, [&](int64_t t0, int64_t t1) {
    double sc[16 * 8];
    int best[8];
    for (int64_t tr = t0; tr < t1; ++tr)
      for (int64_t tc = 0; tc < tile_cols;) {
        const int L = tile_cols - tc >= lanes ? lanes : 1;
#if NMS_X86
        if (L == 8 && d == DType::F32)
          tile_scores_avx512(static_cast<const float*>(w) + tr * 4 * cols + tc * 4, cols, sc);
        else
#endif
          for (int b = 0; b < 16; ++b)
            for (int t = 0; t < L; ++t)
              sc[b * L + t] = transposable_score(w, d, (tr * 4 + b / 4) * cols + (tc + t) * 4 + b % 4);
#if NMS_X86
        if (L == 8) best_patterns_avx512(sc, kept, best);
        else if (L == 4) best_patterns_avx2(sc, kept, best);
        else
#endif
          best[0] = best_pattern(sc, kept);
        for (int t = 0; t < L; ++t, ++tc)
          for (int r = 0; r < 4; ++r)
            for (int c = 0; c < 4; ++c) out[(tr * 4 + r) * cols + tc * 4 + c] = (pats[best[t]] >> (r * 4 + c)) & 1u;
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
