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
  bool relu;                           // C = max(0, C) at the end, in the epilogue (as relu_forward: -0, NaN -> 0)
  // Optional: op(B) as gemm_pack_b made it for ISA b_packed_isa (an Isa code). Used instead of packing B when that
  // ISA is the active one and C is float32 (the same sums as packing it per call). b may be null only where
  // gemm_packed_only(args) said so: then the packed path runs with that ISA's kernels whatever is active by then.
  const float* b_packed; int b_packed_isa;
};

// Whether gemm(args) reads op(B) only from args.b_packed under the active ISA (so an async caller need not hold or
// copy b, a weight of megabytes).
bool gemm_packed_only(const GemmArgs& args);

// Multi-threaded on the pool (core/threadpool.h), cache-blocked, with AVX-512 / AVX2 kernels chosen at run time.
void gemm(const GemmArgs& args);

// The float32 values a packed op(B) [k, n] takes for the kernels of ISA code `isa` (cpu::Isa, simd.h).
int64_t packed_b_floats(int isa, int64_t n, int64_t k);
// Packs op(B) (B stored [k, n], or [n, k] when trans_b, any float dtype) for the active ISA's kernels into
// `out` (packed_b_floats of it): once for a weight that many products share, instead of once per product.
void gemm_pack_b(const void* b, DType b_dtype, int64_t n, int64_t k, bool trans_b, float* out);

}  // namespace nms::cpu
