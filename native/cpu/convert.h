// Element-type conversion and 2-D transposes on the CPU (Tensor.astype, Tensor.transpose, uploads of JS numbers).
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace nms::cpu {

// dst[i] = src[i] converted (floats round to nearest even; integers round and saturate, NaN -> 0).
void convert(const void* src, DType sd, void* dst, DType dd, int64_t count);
// dst [cols, rows] = transpose of src [rows, cols], for `batch` consecutive matrices; same dtype.
void transpose2d(const void* src, DType d, int64_t batch, int64_t rows, int64_t cols, void* dst);

}  // namespace nms::cpu
