#include "cpu/convert.h"

#include <cstring>

#include "core/threadpool.h"

namespace nms::cpu {

void convert(const void* src, DType sd, void* dst, DType dd, int64_t count) {
  if (sd == dd) {
    if (src != dst) std::memcpy(dst, src, count * dtype_size(sd));
    return;
  }
  parallel_for(count, 1 << 16, [&](int64_t b, int64_t e) {
    if (sd == DType::F32 && dd == DType::F16) {
      const float* s = static_cast<const float*>(src);
      uint16_t* o = static_cast<uint16_t*>(dst);
      for (int64_t i = b; i < e; ++i) o[i] = f32_to_f16(s[i]);
    } else if (sd == DType::F16 && dd == DType::F32) {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      float* o = static_cast<float*>(dst);
      for (int64_t i = b; i < e; ++i) o[i] = f16_to_f32(s[i]);
    } else {
      for (int64_t i = b; i < e; ++i) store_from_f32(dst, dd, i, load_as_f32(src, sd, i));
    }
  });
}

namespace {
template <typename T>
void transpose_typed(const T* src, int64_t batch, int64_t rows, int64_t cols, T* dst) {
  constexpr int64_t B = 32;  // tile edge: a tile of both matrices stays in L1
  const int64_t tiles_r = (rows + B - 1) / B;
  parallel_for(batch * tiles_r, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t bi = t / tiles_r, r0 = (t % tiles_r) * B, r1 = r0 + B < rows ? r0 + B : rows;
      const T* s = src + bi * rows * cols;
      T* o = dst + bi * rows * cols;
      for (int64_t c0 = 0; c0 < cols; c0 += B) {
        const int64_t c1 = c0 + B < cols ? c0 + B : cols;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) o[c * rows + r] = s[r * cols + c];
      }
    }
  });
}
}  // namespace

void transpose2d(const void* src, DType d, int64_t batch, int64_t rows, int64_t cols, void* dst) {
  switch (dtype_size(d)) {
    case 4: return transpose_typed(static_cast<const uint32_t*>(src), batch, rows, cols, static_cast<uint32_t*>(dst));
    case 2: return transpose_typed(static_cast<const uint16_t*>(src), batch, rows, cols, static_cast<uint16_t*>(dst));
    default: return transpose_typed(static_cast<const uint8_t*>(src), batch, rows, cols, static_cast<uint8_t*>(dst));
  }
}

}  // namespace nms::cpu
