// The N:M selection rule (docs/design.md §5), written once for the CPU code and the CUDA kernels (NMS_HD), so the
// two backends keep the same elements by construction: the magnitude key that orders |x|, the top-N choice in a
// group with its tie rule, and what counts as non-zero. Kernels call the raw-bits forms; the CPU's scalar code
// calls the forms at the bottom that read element i of a buffer of a runtime dtype. The CPU's vector paths
// (cpu/elementwise.cc) keep their own code for the same rule; the tests check every ISA against a reference.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/hd.h"
#include "core/nm_format.h"

namespace nms {

// Storage type of each dtype: raw bits, so keys and copies never round.
template <DType D> struct Storage;
template <> struct Storage<DType::F32> { using type = uint32_t; };
template <> struct Storage<DType::F16> { using type = uint16_t; };
template <> struct Storage<DType::BF16> { using type = uint16_t; };
template <> struct Storage<DType::I8> { using type = uint8_t; };
template <> struct Storage<DType::U8> { using type = uint8_t; };

// Magnitude key: orders |x| exactly, with every NaN above +inf and equal to every other NaN, so "keep the N
// largest |w|, ties to the lower index, NaN largest" is a comparison of integers.
template <DType D>
NMS_HD uint32_t magnitude_key(typename Storage<D>::type v) {
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

// Non-zero for the N:M check: floats compare without the sign bit (−0 is zero, NaN is non-zero).
template <DType D>
NMS_HD bool is_nonzero(typename Storage<D>::type v) {
  if constexpr (D == DType::F32) return (v & 0x7fffffffu) != 0;
  else if constexpr (D == DType::F16 || D == DType::BF16) return (v & 0x7fffu) != 0;
  else return v != 0;
}

// The kept set of one group of M keys, bit i for element i: element i is kept when fewer than n elements rank
// above it, and j ranks above i when key[j] > key[i], or key[j] == key[i] and j < i (ties to the lower index).
template <int M>
NMS_HD uint32_t nm_keep(const uint32_t (&key)[M], int n) {
  uint32_t keep = 0;
  NMS_UNROLL
  for (int i = 0; i < M; ++i) {
    int beaten_by = 0;
    NMS_UNROLL
    for (int j = 0; j < M; ++j) beaten_by += (key[j] > key[i]) | ((key[j] == key[i]) & (j < i));
    if (beaten_by < n) keep |= 1u << i;
  }
  return keep;
}

// ---- the same on element i of a buffer of a runtime dtype (host code) ----

template <DType D>
inline typename Storage<D>::type load_bits(const void* p, int64_t i) {
  typename Storage<D>::type v;
  std::memcpy(&v, static_cast<const char*>(p) + i * sizeof v, sizeof v);
  return v;
}

inline uint32_t magnitude_key(const void* p, DType d, int64_t i) {
  NMS_DISPATCH_DTYPE(d, return magnitude_key<kD>(load_bits<kD>(p, i)));
}
inline bool is_nonzero(const void* p, DType d, int64_t i) {
  NMS_DISPATCH_DTYPE(d, return is_nonzero<kD>(load_bits<kD>(p, i)));
}

// nm_keep on the group of M elements starting at element `base`.
template <int M>
inline uint32_t nm_group_keep(const void* w, DType d, int64_t base, int n) {
  uint32_t key[M];
  for (int i = 0; i < M; ++i) key[i] = magnitude_key(w, d, base + i);
  return nm_keep<M>(key, n);
}
// The same for a runtime m in {4, 8, 16, 32}.
inline uint32_t nm_group_keep(const void* w, DType d, int64_t base, int n, int m) {
  NMS_DISPATCH_M(m, return nm_group_keep<kM>(w, d, base, n));
}

}  // namespace nms
