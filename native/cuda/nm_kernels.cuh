// Device-side helpers shared by the N:M kernels (mask.cu, compress.cu, elementwise.cu): raw-bits conversion to
// float and vector loads/stores of one group. The selection rule itself (magnitude key, top-N
// with its tie rule, non-zero test) is core/nm_select.h, the same functions the CPU calls; the M dispatch is
// core/nm_format.h's NMS_DISPATCH_M, the dtype dispatch core/dtype.h's NMS_DISPATCH_DTYPE.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"
#include "core/nm_format.h"
#include "core/nm_select.h"

namespace nms::cuda::kern {

using ::nms::Storage;  // core/nm_select.h, like magnitude_key, is_nonzero and nm_keep

// nms::load_as_f32 on raw bits.
template <DType D>
__device__ __forceinline__ float to_f32(typename Storage<D>::type v) {
  if constexpr (D == DType::F32) return __uint_as_float(v);
  else if constexpr (D == DType::F16) return __half2float(__ushort_as_half(v));
  else if constexpr (D == DType::BF16) return __uint_as_float(static_cast<uint32_t>(v) << 16);
  else if constexpr (D == DType::I8) return static_cast<float>(static_cast<int8_t>(v));
  else return static_cast<float>(v);
}

// Copies BYTES contiguous bytes, BYTES a power of two and the address aligned to min(BYTES, 16).
template <int BYTES>
__device__ __forceinline__ void copy_aligned(void* dst, const void* src) {
  if constexpr (BYTES >= 16) {
#pragma unroll
    for (int i = 0; i < BYTES / 16; ++i) static_cast<uint4*>(dst)[i] = static_cast<const uint4*>(src)[i];
  } else if constexpr (BYTES == 8) {
    *static_cast<uint2*>(dst) = *static_cast<const uint2*>(src);
  } else if constexpr (BYTES == 4) {
    *static_cast<uint32_t*>(dst) = *static_cast<const uint32_t*>(src);
  } else if constexpr (BYTES == 2) {
    *static_cast<uint16_t*>(dst) = *static_cast<const uint16_t*>(src);
  } else {
    *static_cast<uint8_t*>(dst) = *static_cast<const uint8_t*>(src);
  }
}

// One group of M elements in registers (aligned for vector access).
template <class T, int M>
struct alignas((M * sizeof(T)) < 16 ? (M * sizeof(T)) : 16) Group {
  T v[M];
};

template <class T, int M>
__device__ __forceinline__ void load_group(Group<T, M>& g, const T* src) {
  copy_aligned<M * sizeof(T)>(g.v, src);
}
template <class T, int M>
__device__ __forceinline__ void store_group(T* dst, const Group<T, M>& g) {
  copy_aligned<M * sizeof(T)>(dst, g.v);
}

}  // namespace nms::cuda::kern
