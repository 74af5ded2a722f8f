// The portable compressed N:M format (docs/design.md §5), shared by the CPU and CUDA backends:
//   values    [rows, cols*N/M] in the tensor's dtype, the kept values of each group in ascending position;
//   positions one log2(M)-bit field per kept value (the value's index inside its group), packed little-endian
//             into a bit stream per row; each row starts on a byte boundary (pos_row_bytes).
#pragma once
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/hd.h"

namespace nms {

// The supported M, written once: nm_supported_m, and NMS_DISPATCH_M for code that makes M a compile-time
// constant (kM) — the CPU's group selection and the CUDA kernels.
inline bool nm_supported_m(int64_t m) { return m == 4 || m == 8 || m == 16 || m == 32; }
#define NMS_DISPATCH_M(m, ...)                                                   \
  switch (m) {                                                                   \
    case 4: { constexpr int kM = 4; __VA_ARGS__; break; }                        \
    case 8: { constexpr int kM = 8; __VA_ARGS__; break; }                        \
    case 16: { constexpr int kM = 16; __VA_ARGS__; break; }                      \
    case 32: { constexpr int kM = 32; __VA_ARGS__; break; }                      \
    default: ::nms::fail("E_PATTERN", "m must be 4, 8, 16 or 32");               \
  }

// Throws E_PATTERN unless 1 <= n < m with m in {4, 8, 16, 32}, and E_SHAPE unless cols is a multiple of m.
inline void nm_validate(int64_t rows, int64_t cols, int64_t n, int64_t m) {
  if (!nm_supported_m(m))
    fail("E_PATTERN", "m: got " + std::to_string(m) + ", expected one of 4, 8, 16, 32");
  if (n < 1 || n >= m) fail("E_PATTERN", "n: got " + std::to_string(n) + ", expected 1 <= n < m = " + std::to_string(m));
  if (rows < 1 || cols < 1)
    fail("E_SHAPE", "shape: got [" + std::to_string(rows) + ", " + std::to_string(cols) + "], expected a non-empty tensor");
  if (cols % m != 0)
    fail("E_SHAPE", "last dimension: got " + std::to_string(cols) + ", expected a multiple of m = " + std::to_string(m));
}
NMS_HD int nm_pos_bits(int m) { return m == 4 ? 2 : m == 8 ? 3 : m == 16 ? 4 : 5; }
inline int64_t nm_kept_per_row(int64_t cols, int n, int m) { return cols / m * n; }
inline int64_t nm_pos_row_bytes(int64_t cols, int n, int m) {
  return (nm_kept_per_row(cols, n, m) * nm_pos_bits(m) + 7) / 8;
}

// Field j of a row's bit stream (host and device). Reads byte by byte so it never touches memory past the row.
NMS_HD int nm_get_pos(const uint8_t* row, int64_t j, int bits) {
  const int64_t bit = j * bits;
  const uint8_t* p = row + (bit >> 3);
  const int sh = static_cast<int>(bit & 7);
  uint32_t w = p[0];
  if (sh + bits > 8) w |= static_cast<uint32_t>(p[1]) << 8;
  return static_cast<int>((w >> sh) & ((1u << bits) - 1));
}
inline void nm_put_pos(uint8_t* row, int64_t j, int bits, int value) {
  const int64_t bit = j * bits;
  uint8_t* p = row + (bit >> 3);
  const int sh = static_cast<int>(bit & 7);
  const uint32_t v = static_cast<uint32_t>(value) << sh;
  p[0] = static_cast<uint8_t>(p[0] | (v & 0xffu));
  if (sh + bits > 8) p[1] = static_cast<uint8_t>(p[1] | (v >> 8));
}

}  // namespace nms
