// Device-side helpers shared by the N:M kernels (mask.cu, compress.cu, elementwise.cu): raw-bits conversion to
// float, vector loads/stores of one group and the packing of its positions. The selection rule itself (magnitude
// key, top-N with its tie rule, non-zero test) is core/nm_select.h, the same functions the CPU calls; the M dispatch is
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

// Writes the positions of one group's kept entries (bit i of `keep` = entry i kept) into the packed portable form
// (core/nm_format.h): N fields of `bits` bits at bit row * pos_row_bytes * 8 + index_in_row * N * bits, into
// pos_words zeroed beforehand and 4-byte padded. Every lane of the warp must call it (warp collectives); `valid`
// is false for lanes past the last group. Used by the selection (mask.cu) and the training pass (elementwise.cu).
template <int M>
__device__ __forceinline__ void store_positions(uint32_t keep, bool valid, int64_t g, int64_t groups_per_row, int n,
                                                int bits, int64_t pos_row_bytes, uint32_t* pos_words) {
  const int64_t row = valid ? g / groups_per_row : 0;
  const int64_t bit0 = valid ? (row * pos_row_bytes * 8 + (g - row * groups_per_row) * n * bits) : 0;
  if (n * bits <= 32) {
    uint64_t field = 0;
    int j = 0;
#pragma unroll
    for (int i = 0; i < M; ++i)
      if ((keep >> i) & 1u) field |= static_cast<uint64_t>(i) << (bits * j++);
    const uint64_t word = static_cast<uint64_t>(bit0 >> 5);
    const uint64_t shifted = field << (bit0 & 31);
    const unsigned lane = threadIdx.x & 31;
    // Neighbouring groups share words: OR them together inside the warp, then one atomic per word.
    const unsigned long long key0 = valid ? word : ~0ull;
    unsigned peers = __match_any_sync(0xffffffffu, key0);
    uint32_t agg = __reduce_or_sync(peers, static_cast<uint32_t>(shifted));
    if (valid && (__ffs(peers) - 1) == static_cast<int>(lane) && agg) atomicOr(pos_words + word, agg);
    const unsigned long long key1 = valid ? word + 1 : ~0ull;
    peers = __match_any_sync(0xffffffffu, key1);
    agg = __reduce_or_sync(peers, static_cast<uint32_t>(shifted >> 32));
    if (valid && (__ffs(peers) - 1) == static_cast<int>(lane) && agg) atomicOr(pos_words + word + 1, agg);
  } else if (valid) {
    int j = 0;
    for (int i = 0; i < M; ++i) {
      if (!((keep >> i) & 1u)) continue;
      const int64_t bit = bit0 + static_cast<int64_t>(j++) * bits;
      const int sh = static_cast<int>(bit & 31);
      atomicOr(pos_words + (bit >> 5), static_cast<uint32_t>(i) << sh);
      if (sh + bits > 32) atomicOr(pos_words + (bit >> 5) + 1, static_cast<uint32_t>(i) >> (32 - sh));
    }
  }
}

}  // namespace nms::cuda::kern
