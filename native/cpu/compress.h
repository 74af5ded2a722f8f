// The portable compressed N:M form (core/nm_format.h) on the CPU.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace nms::cpu {

// values [rows, cols*n/m] and positions (rows × nm_pos_row_bytes) from the N:M mask of w: exactly N values per
// group, in ascending position (pruned zeros included when a group has fewer than N non-zeros).
void nm_compress(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, void* values, uint8_t* positions);
// Dense [rows, cols] with the kept values in place and zeros elsewhere.
void nm_decompress(const void* values, const uint8_t* positions, DType d, int64_t rows, int64_t cols, int n, int m,
                   void* out);

}  // namespace nms::cpu
