// One cuSPARSELt matmul plan: its objects and the library calls that make, tune and run it, in the order of
// NVIDIA's matmul_example.cpp (docs/design.md §10): structured descriptor A, dense descriptors B and C (= D),
// matmul descriptor and its epilogue attributes, algorithm selection, plan, workspace size; then (elsewhere:
// compress.cu) compression; then search; then matmul; destruction in reverse. Shared by the plan cache
// (spmm.cu), the compression fallback (compress.cu) and the benchmarks (spmm_bench.cu). No locks: callers
// serialise access to a plan (spmm.cu states the lock order).
#pragma once
#include <cstdint>
#include <string>

#include "cuda/internal.h"

namespace nms::cuda {

// Bytes per element of a cuSPARSELt / cuBLASLt data type.
size_t type_size(cudaDataType t);

// D[m, n] = A[m, k] (structured, row-major, op N) · op(B) [k, n].
struct SltProblem {
  cudaDataType ab = CUDA_R_16F, cd = CUDA_R_16F;
  slt::ComputeType compute = slt::COMPUTE_32F;
  int64_t m = 0, n = 0, k = 0;
  bool b_nk = false;  // B stored [n, k] row-major (op T); else [k, n] row-major (op N)
  bool d_col = false; // D column-major (memory: [n, m] row-major); else row-major [m, n]
  bool bias = false, relu = false;  // fused epilogue
};

// Owns every cuSPARSELt object of one plan, each at a fixed heap address, destroyed in reverse order.
// The methods return the library's status and, on failure, name the call in *where.
class SltPlan {
 public:
  SltProblem pr;
  slt::Boxed<slt::MatDescriptor> a, b, c;
  slt::Boxed<slt::MatmulDescriptor> mm;
  slt::Boxed<slt::AlgSelection> alg;
  slt::Boxed<slt::Plan> plan;
  bool a_ok = false, b_ok = false, c_ok = false, mm_ok = false, alg_ok = false, plan_ok = false;
  size_t ws = 0;
  int max_alg_id = -1;

  SltPlan() = default;
  SltPlan(const SltPlan&) = delete;
  SltPlan& operator=(const SltPlan&) = delete;
  ~SltPlan();

  // Descriptors → matmul descriptor (+ ReLU / bias pointer when pr asks) → default algorithm → plan → workspace.
  slt::Status build(const SltProblem& problem, const void* bias, std::string* where);
  // Points the fused bias at `bias` (the plan's descriptor holds the pointer, so every call with a bias sets it).
  slt::Status set_bias(const void* bias);
  // cusparseLtMatmulSearch once on these operands (blocking; D is written, beta = 0), then the winner's workspace.
  // On failure the plan is left as the search left it: call use_default_algorithm().
  slt::Status search(const void* a_compressed, const void* b_op, void* d);
  // Re-plans with cuSPARSELt's default algorithm. The selection is made afresh: a search leaves its split-K mode
  // and buffer count in it, which setting CONFIG_ID / SPLIT_K back would not undo.
  slt::Status use_default_algorithm(std::string* where);
  void read_algorithm(int* config, int* split_k, int* split_k_mode) const;
  // D = A·op(B) (+ bias, ReLU as planned), enqueued on stream().
  slt::Status run(const void* a_compressed, const void* b_op, void* d, const void* bias);
};

}  // namespace nms::cuda
