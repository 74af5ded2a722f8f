#include "cpu/mask.h"

#include <cstring>

#include "core/threadpool.h"

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

void transposable_mask(const void* w, DType d, int64_t rows, int64_t cols, uint8_t* out) {
  const uint16_t* pats = transposable_patterns();
  // The 8 kept positions of each pattern in increasing bit order: the scores are summed in that order without a
  // test per bit (the same sums, bit for bit, as the CUDA kernel's loop over the 16 bits).
  static const auto kept = [pats] {
    struct K { uint8_t b[kTransposablePatterns][8]; } k{};
    for (int p = 0; p < kTransposablePatterns; ++p)
      for (int b = 0, t = 0; b < 16; ++b)
        if ((pats[p] >> b) & 1u) k.b[p][t++] = static_cast<uint8_t>(b);
    return k;
  }();
  const int64_t tile_rows = rows / 4, tile_cols = cols / 4;
  parallel_for(tile_rows, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t tr = t0; tr < t1; ++tr)
      for (int64_t tc = 0; tc < tile_cols; ++tc) {
        double s[16];
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4; ++c) s[r * 4 + c] = transposable_score(w, d, (tr * 4 + r) * cols + tc * 4 + c);
        int best = 0;
        double best_score = -1;
        for (int p = 0; p < kTransposablePatterns; ++p) {
          double sum = 0;  // summed in increasing bit order: the CUDA kernel does the same, so ties agree
          for (int t = 0; t < 8; ++t) sum += s[kept.b[p][t]];
          if (sum > best_score) { best_score = sum; best = p; }
        }
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4; ++c) out[(tr * 4 + r) * cols + tc * 4 + c] = (pats[best] >> (r * 4 + c)) & 1u;
      }
  });
}

int64_t mask_sad(const uint8_t* a, const uint8_t* b, int64_t count) {
  int64_t changed = 0;
  for (int64_t i = 0; i < count; ++i) changed += (a[i] != 0) != (b[i] != 0);
  return changed;
}

}  // namespace nms::cpu
