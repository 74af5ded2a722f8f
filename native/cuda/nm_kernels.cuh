// Device-side helpers shared by the N:M kernels (mask.cu, compress.cu): the magnitude key of core/dtype.h, the
// group selection of cpu/mask.h (nm_group_keep), vector loads/stores of one group, and dtype dispatch.
// Everything here must give bit-identical answers to the CPU code it mirrors.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"

namespace nms::cuda::kern {

// Storage type of each dtype: raw bits, so keys and copies never round.
template <DType D> struct Storage;
template <> struct Storage<DType::F32> { using type = uint32_t; };
template <> struct Storage<DType::F16> { using type = uint16_t; };
template <> struct Storage<DType::BF16> { using type = uint16_t; };
template <> struct Storage<DType::I8> { using type = uint8_t; };
template <> struct Storage<DType::U8> { using type = uint8_t; };

// nms::magnitude_key on raw bits: |x| ordered exactly, every NaN above +inf and equal to every other NaN.
template <DType D>
__device__ __forceinline__ uint32_t magnitude_key(typename Storage<D>::type v) {
  if constexpr (D == DType::F32) {
    const uint32_t u = v & 0x7fffffffu;
    return u > 0x7f800000u ? 0x7fc00000u : u;
  } else if constexpr (D == DType::F16) {
    const uint32_t u = v & 0x7fffu;
    return u > 0x7c00u ? 0x7e00u : u;
  } else if constexpr (D == DType::BF16) {
    const uint32_t u = v & 0x7fffu;
    return u > 0x7f80u ? 0x7fc0u : u;
  } else if constexpr (D == DType::I8) {
    const int s = static_cast<int8_t>(v);
    return static_cast<uint32_t>(s < 0 ? -s : s);
  } else {
    return v;
  }
}

// cpu::mask.cc is_nonzero: floats compare without the sign bit (so -0 is zero, NaN is non-zero).
template <DType D>
__device__ __forceinline__ bool is_nonzero(typename Storage<D>::type v) {
  if constexpr (D == DType::F32) return (v & 0x7fffffffu) != 0;
  else if constexpr (D == DType::F16 || D == DType::BF16) return (v & 0x7fffu) != 0;
  else return v != 0;
}

// nms::load_as_f32 on raw bits.
template <DType D>
__device__ __forceinline__ float to_f32(typename Storage<D>::type v) {
  if constexpr (D == DType::F32) return __uint_as_float(v);
  else if constexpr (D == DType::F16) return __half2float(__ushort_as_half(v));
  else if constexpr (D == DType::BF16) return __uint_as_float(static_cast<uint32_t>(v) << 16);
  else if constexpr (D == DType::I8) return static_cast<float>(static_cast<int8_t>(v));
  else return static_cast<float>(v);
}

// cpu::nm_group_keep: bit i set when element i is among the N largest keys (ties: lower index).
template <int M>
__device__ __forceinline__ uint32_t group_keep(const uint32_t (&key)[M], int n) {
  uint32_t keep = 0;
#pragma unroll
  for (int i = 0; i < M; ++i) {
    int beaten_by = 0;
#pragma unroll
    for (int j = 0; j < M; ++j) beaten_by += (key[j] > key[i]) | ((key[j] == key[i]) & (j < i));
    if (beaten_by < n) keep |= 1u << i;
  }
  return keep;
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

// Calls F.template operator()<D>() with D the DType value of `d` (a runtime value).
#define NMS_DISPATCH_DTYPE(d, ...)                                                       \
  switch (d) {                                                                           \
    case ::nms::DType::F32: { constexpr ::nms::DType kD = ::nms::DType::F32; __VA_ARGS__; break; } \
    case ::nms::DType::F16: { constexpr ::nms::DType kD = ::nms::DType::F16; __VA_ARGS__; break; } \
    case ::nms::DType::BF16: { constexpr ::nms::DType kD = ::nms::DType::BF16; __VA_ARGS__; break; } \
    case ::nms::DType::I8: { constexpr ::nms::DType kD = ::nms::DType::I8; __VA_ARGS__; break; } \
    case ::nms::DType::U8: { constexpr ::nms::DType kD = ::nms::DType::U8; __VA_ARGS__; break; } \
    default: ::nms::fail("E_DTYPE", "unknown dtype");                                     \
  }

#define NMS_DISPATCH_M(m, ...)                                                   \
  switch (m) {                                                                   \
    case 4: { constexpr int kM = 4; __VA_ARGS__; break; }                        \
    case 8: { constexpr int kM = 8; __VA_ARGS__; break; }                        \
    case 16: { constexpr int kM = 16; __VA_ARGS__; break; }                      \
    case 32: { constexpr int kM = 32; __VA_ARGS__; break; }                      \
    default: ::nms::fail("E_PATTERN", "m must be 4, 8, 16 or 32");               \
  }
