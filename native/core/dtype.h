// Element types shared by every backend, and the scalar conversions the CPU kernels use.
// The numeric values are part of the JS <-> native contract: lib/dtype.ts DTYPES lists the names by code, and
// test/native.test.ts compares it with enumTables().
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/error.h"

namespace nms {

enum class DType : int { F32 = 0, F16 = 1, BF16 = 2, I8 = 3, U8 = 4 };
constexpr int kNumDTypes = 5;

inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32: return 4;
    case DType::F16: case DType::BF16: return 2;
    default: return 1;
  }
}
inline const char* dtype_name(DType d) {
  static const char* names[] = {"float32", "float16", "bfloat16", "int8", "uint8"};
  return names[static_cast<int>(d)];
}

// Runs the statements with kD the compile-time DType equal to the runtime value `d` (kernel choice, CPU scalar code).
#define NMS_DISPATCH_DTYPE(d, ...)                                                       \
  switch (d) {                                                                           \
    case ::nms::DType::F32: { constexpr ::nms::DType kD = ::nms::DType::F32; __VA_ARGS__; break; } \
    case ::nms::DType::F16: { constexpr ::nms::DType kD = ::nms::DType::F16; __VA_ARGS__; break; } \
    case ::nms::DType::BF16: { constexpr ::nms::DType kD = ::nms::DType::BF16; __VA_ARGS__; break; } \
    case ::nms::DType::I8: { constexpr ::nms::DType kD = ::nms::DType::I8; __VA_ARGS__; break; } \
    case ::nms::DType::U8: { constexpr ::nms::DType kD = ::nms::DType::U8; __VA_ARGS__; break; } \
    default: ::nms::fail("E_DTYPE", "unknown dtype");                                     \
  }

inline bool is_float(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

inline float bits_to_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t f32_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

// IEEE binary16 -> binary32, exact (subnormals, inf, NaN preserved).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return bits_to_f32(sign);
    float v = std::ldexp(static_cast<float>(man), -24);
    return sign ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

// binary32 -> binary16 with round-to-nearest-even (the rounding CUDA's __float2half uses).
inline uint16_t f32_to_f16(float f) {
  uint32_t x = f32_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return sign | 0x7e00u;                 // NaN stays NaN
  if (x >= 0x477ff000u) return sign | 0x7c00u;                // rounds to >= 65520: inf
  if (x < 0x38800000u) {                                       // result is subnormal or zero
    if (x < 0x33000000u) return sign;                          // below half the smallest subnormal
    const uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u, shift = 126 - e;
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t r = ((x >> 13) - (112u << 10));
  const uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) ++r;
  return sign | static_cast<uint16_t>(r);
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
  const uint32_t x = f32_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// Reads element i of a buffer of type d as float32.
inline float load_as_f32(const void* p, DType d, int64_t i) {
  switch (d) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::I8: return static_cast<const int8_t*>(p)[i];
    default: return static_cast<const uint8_t*>(p)[i];
  }
}

// Writes v as element i of a buffer of type d (integers: round to nearest, saturate; NaN -> 0).
inline void store_from_f32(void* p, DType d, int64_t i, float v) {
  switch (d) {
    case DType::F32: static_cast<float*>(p)[i] = v; return;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); return;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); return;
    case DType::I8: {
      float r = std::isnan(v) ? 0.f : std::nearbyint(v);
      static_cast<int8_t*>(p)[i] = static_cast<int8_t>(r < -128.f ? -128.f : (r > 127.f ? 127.f : r));
      return;
    }
    default: {
      float r = std::isnan(v) ? 0.f : std::nearbyint(v);
      static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(r < 0.f ? 0.f : (r > 255.f ? 255.f : r));
      return;
    }
  }
}

}  // namespace nms
