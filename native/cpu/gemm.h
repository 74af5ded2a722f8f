// Dense GEMM on the CPU: C = op(A) · op(B) (+ bias), float32 math whatever the storage dtype.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace nms::cpu {

struct GemmArgs {
  const void* a;  DType a_dtype;  // op(A) is [m, k]: A is stored [m, k], or [k, m] when trans_a
  const void* b;  DType b_dtype;  // op(B) is [k, n]: B is stored [k, n], or [n, k] when trans_b
  void* c;        DType c_dtype;  // C is [m, n], row-major, fully overwritten
  int64_t m, n, k;
  bool trans_a, trans_b;
  const void* bias; DType bias_dtype;  // nullptr, or n values added to every row of C
};

// Multi-threaded on the pool (core/threadpool.h), cache-blocked, with AVX-512 / AVX2 kernels chosen at run time.
void gemm(const GemmArgs& args);

}  // namespace nms::cpu
