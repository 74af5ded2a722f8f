#include "cpu/compress.h"

#include <cstring>

#include "core/nm_format.h"
#include "core/threadpool.h"
#include "cpu/mask.h"

namespace nms::cpu {

void nm_compress(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, void* values, uint8_t* positions) {
  const size_t es = dtype_size(d);
  const int bits = nm_pos_bits(m);
  const int64_t kept = nm_kept_per_row(cols, n, m), prow = nm_pos_row_bytes(cols, n, m);
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      uint8_t* pos = positions + r * prow;
      std::memset(pos, 0, prow);
      char* vals = static_cast<char*>(values) + r * kept * es;
      int64_t j = 0;
      for (int64_t g = 0; g < cols; g += m) {
        const uint32_t keep = nm_group_keep(w, d, r * cols + g, n, m);
        for (int i = 0; i < m; ++i)
          if ((keep >> i) & 1u) {
            std::memcpy(vals + j * es, static_cast<const char*>(w) + (r * cols + g + i) * es, es);
            nm_put_pos(pos, j++, bits, i);
          }
      }
    }
  });
}

void nm_decompress(const void* values, const uint8_t* positions, DType d, int64_t rows, int64_t cols, int n, int m,
                   void* out) {
  const size_t es = dtype_size(d);
  const int bits = nm_pos_bits(m);
  const int64_t kept = nm_kept_per_row(cols, n, m), prow = nm_pos_row_bytes(cols, n, m);
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      char* dst = static_cast<char*>(out) + r * cols * es;
      std::memset(dst, 0, cols * es);
      const uint8_t* pos = positions + r * prow;
      const char* vals = static_cast<const char*>(values) + r * kept * es;
      for (int64_t j = 0; j < kept; ++j) {
        const int64_t col = (j / n) * m + nm_get_pos(pos, j, bits);
        std::memcpy(dst + col * es, vals + j * es, es);
      }
    }
  });
}

}  // namespace nms::cpu
