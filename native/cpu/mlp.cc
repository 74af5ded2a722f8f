#include "cpu/mlp.h"

#include <algorithm>
#include <memory>

#include "cpu/elementwise.h"
#include "cpu/gemm.h"
#include "cpu/simd.h"
#include "cpu/spmm.h"

namespace nms::cpu {

// Intermediates up to this many floats (8 MB) stay in the thread's scratch from call to call (a fresh 1 MB result
// per layer costs its page faults at 256 rows); a larger one is allocated for the call alone, so the scratch of a
// thread that once ran a huge batch stays bounded.
constexpr size_t kKeepFloats = size_t{1} << 21;

void mlp_forward(const std::vector<MlpLayer>& layers, size_t first, size_t last, const float* x, int64_t m, float* out) {
  thread_local Scratch s_h[2];
  std::unique_ptr<float[]> big[2];
  const float* in = x;
  for (size_t i = first; i < last; ++i) {
    const MlpLayer& l = layers[i];
    float* c = out;
    if (i + 1 < last) {
      const size_t need = static_cast<size_t>(m * l.n);
      if (need <= kKeepFloats) c = s_h[i % 2].floats(need);
      else c = (big[i % 2] = std::make_unique<float[]>(need)).get();
    }
    if (l.positions) {
      SpmmArgs s{};
      s.w = NmMatrix{l.w, l.positions, DType::F32, l.n, l.k, l.nm_n, l.nm_m};
      s.b = in; s.b_dtype = DType::F32;
      s.p = m;
      s.out = c; s.out_dtype = DType::F32;
      s.trans_b = s.trans_out = true;
      s.bias = l.bias; s.bias_dtype = DType::F32;
      s.w_packed = l.packed;
      spmm(s);
      if (l.relu) relu_forward(c, c, m * l.n);
      in = c;
      continue;
    }
    GemmArgs g{};
    g.a = in; g.a_dtype = DType::F32;
    g.b = l.w; g.b_dtype = DType::F32;
    g.c = c; g.c_dtype = DType::F32;
    g.m = m; g.n = l.n; g.k = l.k;
    g.trans_b = true;
    g.bias = l.bias; g.bias_dtype = DType::F32;
    g.relu = l.relu;
    g.b_packed = l.packed; g.b_packed_isa = l.packed_isa;
    gemm(g);
    in = c;
  }
}

}  // namespace nms::cpu
