// Epilogue activations of the products. The numeric values are part of the JS <-> native contract: lib/cuda.ts
// ACTIVATIONS lists the names by code, and test/native.test.ts compares it with enumTables().
#pragma once

namespace nms {

enum class Act : int { None = 0, Relu = 1, Gelu = 2 };  // gelu = x * Φ(x) (erf form, like torch's default)
constexpr int kNumActs = 3;

inline const char* act_name(Act a) {
  static const char* names[] = {"none", "relu", "gelu"};
  return names[static_cast<int>(a)];
}

}  // namespace nms
