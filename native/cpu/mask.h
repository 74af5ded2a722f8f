// N:M masks on the CPU (docs/design.md §5). A tensor is seen as [rows, cols] with groups of M consecutive elements
// along cols (the last dimension). Every function validates nothing: the N-API layer has checked the shapes.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/nm_select.h"

namespace nms::cpu {

// The selection itself (nm_group_keep, magnitude_key, is_nonzero) is core/nm_select.h, shared with the GPU.

// out[i] = 1 where w[i] is among the N largest |w| of its group (ties: lower index; NaN: largest), else 0.
void nm_mask(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, uint8_t* out);
// out = w where the mask keeps it, else 0 (same dtype as w; out may alias w).
void nm_prune(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, void* out);
// Index of the first group (row-major order) holding more than N non-zeros (NaN counts as non-zero), or -1.
// *nonzeros receives that group's count.
int64_t nm_check(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, int* nonzeros);
// 2:4 in every 4x4 tile along rows and columns, maximising the kept |w| (rows % 4 == 0, cols % 4 == 0).
void transposable_mask(const void* w, DType d, int64_t rows, int64_t cols, uint8_t* out);
// Number of positions whose kept state (non-zero) differs between two masks of `count` bytes.
int64_t mask_sad(const uint8_t* a, const uint8_t* b, int64_t count);

// The 90 4x4 patterns with two ones in every row and column, as 16-bit codes (bit r*4+c), ascending.
// Shared with the CUDA kernel so both pick the same pattern on ties.
const uint16_t* transposable_patterns();
constexpr int kTransposablePatterns = 90;

// Tile score of one element for the transposable search: |x| as double, inf and NaN mapped to large finite
// values (NaN above inf) so the sum of 8 stays finite and ordered.
inline double transposable_score(const void* w, DType d, int64_t i) {
  const float v = load_as_f32(w, d, i);
  if (v != v) return 1e300;
  const double a = v < 0 ? -static_cast<double>(v) : static_cast<double>(v);
  return a > 3.4e38 ? 1e299 : a;
}

}  // namespace nms::cpu
