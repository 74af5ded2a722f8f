// Benchmark helpers (bench/gpu; spmm_bench.cu), apart from the ops: time the cached cuSPARSELt plan driven from a
// native loop, and raw GEMMs on synthetic data of any supported type (including float8 e4m3, which has no Tensor
// dtype). native/napi/cuda_gemm.cc binds them as cudaBenchNativeLoop and cudaBenchGemm.
#pragma once
#include <cstdint>
#include <string>

#include "cuda/ops.h"

namespace nms::cuda {

struct NativeLoopResult { double ms_per_call_gpu = 0, us_per_call_host = 0; int iters = 0; std::string path; };
NativeLoopResult bench_native_loop(const SparseGemm& g, int iters);

struct GemmBench {
  std::string dtype;  // "float16" | "bfloat16" | "float32" | "int8" | "e4m3"
  int64_t m, n, k;    // linear form: Y[n, m] = X[n, k] · W[m, k]ᵀ  (m = out, n = tokens, k = in)
  int warmup = 5, iters = 20;  // warm-up calls per candidate; interleaved timing rounds
  bool search = true;
};
struct GemmBenchResult {
  double sparse_ms = -1, dense_ms = -1;  // medians
  std::string sparse_error, dense_error;
  int alg_id = -1, split_k = 0;
  double max_rel_err = -1;  // sparse vs dense on the same pruned weight
  double compress_ms = -1, prune_ms = -1, copy_ms = -1;  // prune (ours) + compress (cuSPARSELt) vs a D2D copy
  int64_t weight_bytes = 0;
  int dense_heuristic = -1, dense_heuristics = 0;  // the fastest of the cuBLASLt heuristics timed, and how many
  int batch = 0, rounds = 0;                       // calls per event pair; interleaved rounds (samples per median)
};
GemmBenchResult bench_gemm(const GemmBench& b);

}  // namespace nms::cuda
