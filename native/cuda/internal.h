// Declarations shared between the CUDA source files only (not part of the ops API).
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "cuda/cublaslt.h"
#include "cuda/cusparselt.h"
#include "cuda/ops.h"

namespace nms::cuda {

// cuSPARSELt's per-dtype shape rules (docs/design.md §10) and our padding of them.
struct SltRules {
  bool supported = false;
  std::string why;             // when not supported
  cudaDataType type{};         // CUDA_R_16F, …
  int sparse_align = 16;       // structured matrix rows/cols multiple
  int dense_align = 8;         // dense matrix rows/cols/ld multiple
  int64_t max_elems = 0;       // per matrix
  bool pair_rule = false;      // float32: 1:2 (pairs) instead of 2:4
  // The hardware pattern along K: at most hw_n() non-zeros in each group of hw_m() (2:4, float32 1:2).
  int hw_n() const { return pair_rule ? 1 : 2; }
  int hw_m() const { return pair_rule ? 2 : 4; }
};
SltRules slt_rules(DType d);
// The cudaDataType of a dtype (E_UNSUPPORTED for uint8, which neither library multiplies).
inline cudaDataType cuda_data_type(DType d) {
  switch (d) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::I8: return CUDA_R_8I;
    default: fail("E_UNSUPPORTED", std::string("GEMM on 'cuda' does not support ") + dtype_name(d) + " tensors");
  }
}
inline int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

// The structured descriptor of a [rows, cols] row-major weight of type t (cached, at a fixed address, never
// destroyed).
const slt::MatDescriptor* structured_descriptor(cudaDataType t, int64_t rows, int64_t cols);
// cuSPARSELt's compressed form of a dense [rows, cols] matrix that already follows its rules (2:4 / 1:2 along
// rows, shape multiples). check_as: a type name to run cuSPARSELt's own prune check once per type, or nullptr.
DevPtr slt_compress(cudaDataType t, int64_t rows, int64_t cols, int dense_align, const void* dense, const char* check_as);

// Adds the cuSPARSELt form to `s` from its dense pruned weight [rows, cols] on the device (not padded): scratch
// of the caller's, whose −0.0 become +0.0. Leaves s.has_slt false with s.slt_reason when cuSPARSELt is missing
// or refuses it. Throws only on real failures (E_OOM, E_CUDA).
void build_slt_form(SparseMatrix& s, void* dense_pruned);

// Frees the dense copy dense_of() made (under the same lock).
void drop_dense(SparseMatrix& s);

// ---- the sparse products (spmm*.cu) --------------------------------------------------------------------------
class SltPlan;  // spmm_plan.h
// The dense operand of g as plan P takes it: padded to [n, k] / [k, n], transposed first for int8 matmul (into
// the caller's scratch bt, bp).
const void* prepare_b(const SltPlan& P, const SparseGemm& g, DevPtr& bt, DevPtr& bp);
// Makes (or finds) g's cache entry, then runs `use` on its sparse plan under the cache lock; false, and nothing
// run, when the key runs dense.
bool with_cached_plan(const SparseGemm& g, const std::function<void(SltPlan&)>& use);
// Checks g.out (already computed) against a float64 reference from the dense pruned weight w_dense, at sampled
// points. Returns an empty string when it matches, else what differs.
std::string verify_output(const SparseGemm& g, const void* w_dense);
// max |a − b| / max |b| over `count` elements of type t (NaN in a counts as a huge difference). Synchronizes.
double max_rel_diff(const void* a, const void* b, cudaDataType t, int64_t count);

// Median time of `fn` in milliseconds, with CUDA events, after `warmup` runs.
template <class F>
double time_ms(F&& fn, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) NMS_CUDA(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    NMS_CUDA(cudaEventRecord(ev[2 * i], stream()));
    fn();
    NMS_CUDA(cudaEventRecord(ev[2 * i + 1], stream()));
  }
  NMS_CUDA(cudaEventSynchronize(ev.back()));
  std::vector<float> t(iters);
  for (int i = 0; i < iters; ++i) cudaEventElapsedTime(&t[i], ev[2 * i], ev[2 * i + 1]);
  for (auto& e : ev) cudaEventDestroy(e);
  std::sort(t.begin(), t.end());
  return t[iters / 2];
}

// Copies a row-major [rows, cols] matrix into the top-left of a zeroed [rows_pad, cols_pad] one (element size es).
DevPtr pad_matrix(const void* src, size_t es, int64_t rows, int64_t cols, int64_t rows_pad, int64_t cols_pad);

// A raw cuBLASLt product in column-major terms: D[mm, nn] = op1(X1) · op2(X2), X1 [mm, kk] after op1, X2 [kk, nn]
// after op2, every matrix packed (ld = its row count as stored). Plans are cached per shape and types.
constexpr int kDenseHeuristics = 4;  // cuBLASLt heuristic answers asked for
struct RawDense {
  cudaDataType in_t = CUDA_R_32F, out_t = CUDA_R_32F, scale_t = CUDA_R_32F, bias_t = CUDA_R_32F;
  blt::ComputeType compute = blt::COMPUTE_32F;
  bool op1_t = false, op2_t = false;
  int64_t mm = 0, nn = 0, kk = 0;
  blt::Epilogue epilogue = blt::EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  const void* x1 = nullptr;
  const void* x2 = nullptr;
  void* d = nullptr;
  int heuristic = 0;  // which of cuBLASLt's heuristic answers, best first (< kDenseHeuristics); the bench tries several
};
void dense_raw(const RawDense& r);
void clear_dense_plans();

}  // namespace nms::cuda
