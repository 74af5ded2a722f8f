// Argument checks shared by the CPU product bindings (gemm.cc, spmm.cc, blas_peer.cc).
#pragma once
#include <string>

#include "napi/args.h"

namespace nms::napi {

// a·b as an element count, E_SHAPE when it would not fit comfortably in memory arithmetic.
inline int64_t elems(int64_t a, int64_t b, const char* what) {
  if (a < 0 || b < 0 || (a > 0 && b > (int64_t{1} << 50) / a))
    fail("E_SHAPE", std::string(what) + ": " + std::to_string(a) + " x " + std::to_string(b) + " elements is out of range");
  return a * b;
}

// An output must not share bytes with an input (the kernels read inputs while writing the output).
inline void require_apart(const Buf& out, const Buf& in, const char* out_name, const char* in_name) {
  require_disjoint(out.data, static_cast<int64_t>(out.bytes), in.data, static_cast<int64_t>(in.bytes),
                   (std::string(out_name) + " and " + in_name).c_str());
}

// options.bias (null/undefined/absent: none) and, only with a bias, options.biasDtype.
inline Buf bias_option(Options& o, DType* dtype) {
  Buf b = o.optional_buffer("bias");
  if (b.data) *dtype = o.dtype("biasDtype");
  return b;
}

}  // namespace nms::napi
