// Branch-free float math for the training kernels' streaming loops, so that a loop calling these vectorises for
// whatever ISA its function is compiled for (NMS_CLONES, target attributes), where std::exp / std::erf stay scalar
// library calls. Both arms are computed and one is picked on the bits (vselect): written as `c ? a : b`, GCC sinks
// each arm's arithmetic into a branch and then, under its default -ftrapping-math, neither if-converts nor vectorises.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#define NMS_INLINE inline __attribute__((always_inline))

namespace nms::cpu {

// c ? a : b, on the bits (also where a plain select feeds arithmetic, which GCC would otherwise sink into it).
NMS_INLINE float vselect(bool c, float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  const uint32_t r = (ua & m) | (ub & ~m);
  float f;
  std::memcpy(&f, &r, 4);
  return f;
}

// e^x to about 2 ulp for x <= 88 (0 below −87): x = k·ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor
// polynomial (error r⁷/7! < 1.3e-7 relative), 2^k placed in the exponent bits.
NMS_INLINE float vexp(float x) {
  const float xc = vselect(x < -87.0f, -87.0f, x);
  const float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (xc - k * 0.693145751953125f) - k * 1.42860682030941723e-6f;  // ln2 split: k·hi exact
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return vselect(x < -87.0f, 0.0f, p * scale);
}

// Φ(x), the standard normal CDF, as erfc(−x/√2)/2 with the Chebyshev erfc of Numerical Recipes (relative error
// below 1.2e-7 everywhere, so the tails keep their precision, unlike 1 + erf(x/√2) in float32).
NMS_INLINE float vnormal_cdf(float x) {
  const float z = std::fabs(x) * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  const float half = 0.5f * t * vexp(p * t - z * z - 1.26551223f);  // erfc(z)/2, z >= 0
  return vselect(x < 0.0f, half, 1.0f - half);
}

}  // namespace nms::cpu
