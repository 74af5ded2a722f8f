// The CUDA ops, as plain C++ over device pointers (native/napi/cuda_*.cc binds them to JavaScript).
// Every function enqueues on cuda::stream() and returns; those that return a host value synchronize.
// Shapes are already validated by the caller (nm_validate and friends); the semantics are those of native/cpu.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/activation.h"
#include "core/dtype.h"
#include "cuda/device.h"

namespace nms::cuda {

// ---- mask.cu ---------------------------------------------------------------------------------------------------
// One pass over the groups of M along cols, producing any of: the uint8 mask, the pruned tensor (may alias w),
// the portable compressed form (values + positions; positions must be zeroed, 4-byte padded: alloc() does both
// when the caller used alloc_zeroed()).
struct SelectOut {
  uint8_t* mask = nullptr;
  void* pruned = nullptr;
  void* values = nullptr;
  uint8_t* positions = nullptr;
};
void nm_select(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, const SelectOut& out);
// First group (row-major) with more than n non-zeros, or -1; *nonzeros gets its count. Synchronizes.
// m may also be 2 (used for cuSPARSELt's 1:2 float32 rule).
int64_t nm_check(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, int* nonzeros);
// Same test without waiting: writes (group << 8 | nonzeros), or UINT64_MAX when none, to *d_result (device).
void nm_check_async(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, unsigned long long* d_result);
void transposable_mask(const void* w, DType d, int64_t rows, int64_t cols, uint8_t* out);
// Positions whose kept state differs between two masks. Synchronizes.
int64_t mask_sad(const uint8_t* a, const uint8_t* b, int64_t count);

// ---- compress.cu -----------------------------------------------------------------------------------------------
void nm_decompress(const void* values, const uint8_t* positions, DType d, int64_t rows, int64_t cols, int n, int m,
                   void* out);

// A weight [rows, cols] pruned to N:M, on the GPU: the portable form (always) and, where cuSPARSELt can take it,
// its compressed buffer for sparse GEMM. Immutable once built; shared by the JS handle and in-flight work.
struct SparseMatrix {
  DType dtype;
  int64_t rows, cols;
  int n, m;
  DevPtr values, positions;  // portable form (core/nm_format.h)
  // cuSPARSELt form, of the weight zero-padded to [rows_pad, cols_pad] (exact: padding adds zero products).
  bool has_slt = false;
  std::string slt_reason;  // why there is no cuSPARSELt form (when has_slt is false)
  int64_t rows_pad = 0, cols_pad = 0;
  DevPtr slt_compressed;
  // Dense pruned copy, made on demand for the dense side of the dispatch and kept (guarded by its own mutex).
  DevPtr dense_cache;
  int64_t bytes() const;
};
using SparsePtr = std::shared_ptr<SparseMatrix>;

// compress: prune + portable form + cuSPARSELt form, from a dense tensor on the GPU.
SparsePtr compress(const void* w, DType d, int64_t rows, int64_t cols, int n, int m);
// From a portable form already on the GPU (an uploaded CPU SparseTensor): adds the cuSPARSELt form.
SparsePtr from_portable(DevPtr values, DevPtr positions, DType d, int64_t rows, int64_t cols, int n, int m);
// The training pass's weight (train.h nm_train_pass): its portable form and eff = w ⊙ m, both of dtype d, eff
// serving as the dense copy; the cuSPARSELt form is added where the pattern meets cuSPARSELt's rule for d by
// construction (float32: 1:M; float16/bfloat16: 2:4, 1:4 and sparser), so nothing waits for the GPU. eff must stay
// unchanged while the matrix is in use (the next step's pass rewrites it stream-ordered, after the products that
// read it).
SparsePtr from_train_pass(DevPtr values, DevPtr positions, const DevPtr& eff, int64_t rows, int64_t cols, int n,
                          int m, DType d = DType::F32);
// W̃ᵀ of a training pass's 16-bit weight eff [rows, cols] whose mask is transposable 2:4 (2:4 along rows and columns,
// so W̃ᵀ [cols, rows] is 2:4 along its rows): transposed on the device, compressed (portable and cuSPARSELt forms),
// its pruned dense form (what the cuSPARSELt form holds) kept as its dense copy. The input gradient dY·W̃ = dY·(W̃ᵀ)ᵀ then runs as a sparse product.
SparsePtr transposed_train_form(const void* eff, DType d, int64_t rows, int64_t cols);
// The dense pruned weight [rows, cols] (cached on the matrix).
const void* dense_of(SparseMatrix& s);

// ---- convert.cu -------------------------------------------------------------------------------------------------
// dst[i] = src[i] converted between float32, float16 and bfloat16 (round to nearest even), bit for bit as cpu::convert.
void convert(const void* src, DType sd, void* dst, DType dd, int64_t n);

// ---- gemm.cu: dense GEMM through cuBLASLt ------------------------------------------------------------------------
using ::nms::Act;  // core/activation.h

// C[m, n] = op(A) · op(B) (+ bias[n] per row of C) then act; A [m,k] or [k,m] (trans_a), B [k,n] or [n,k]
// (trans_b); row-major. Float dtypes: C has the input dtype; int8: C is `out_dtype` (int32 accumulation).
// tf32: float32 inputs use TF32 tensor cores (the sparse path's math) instead of full float32.
struct DenseGemm {
  const void* a; const void* b; void* c;
  DType dtype, out_dtype;
  int64_t m, n, k;
  bool trans_a = false, trans_b = false;
  const void* bias = nullptr;  // out_dtype elements (float32 for int8 inputs): n per row of C, or m (bias_per_row)
  bool bias_per_row = false;
  Act act = Act::None;
  bool tf32 = false;
};
void dense_gemm(const DenseGemm& g);

// Elementwise epilogue: dst[r, c] = act(float(src[r * src_ld + c]) + bias) converted to out_dtype, for a
// row-major [rows, cols] dst; bias[c] (per column) or bias[r] (bias_per_row). src_kind is a DType code, or
// kSrcInt32 for int32 accumulators. In place when src == dst and src_ld == cols.
constexpr int kSrcInt32 = -1;
struct EpilogueArgs {
  const void* src; int src_kind; int64_t src_ld;
  void* dst; DType out_dtype;
  int64_t rows, cols;
  const void* bias = nullptr; DType bias_dtype = DType::F32; bool bias_per_row = false;
  Act act = Act::None;
};
void epilogue(const EpilogueArgs& e);
// dst [cols, rows] = srcᵀ, elements of `es` bytes.
void transpose2d(const void* src, size_t es, int64_t rows, int64_t cols, void* dst);

// ---- spmm.cu: sparse GEMM through cuSPARSELt -------------------------------------------------------------------
// linear: Y[tokens, out] = X[tokens, in] · W̃ᵀ (+ bias[out]) then act;  W̃ = s [out, in].
// matmul: Y[rows, p] = W̃ [rows, cols] · B [cols, p].
struct SparseGemm {
  SparseMatrix* s;
  const void* b;  // linear: X [p, cols]; matmul: B [cols, p]
  void* out;      // linear: [p, rows]; matmul: [rows, p]
  int64_t p;
  bool linear;
  DType out_dtype;
  const void* bias = nullptr;  // rows elements (out_dtype, or float32 for int8)
  Act act = Act::None;
};
void sparse_gemm(const SparseGemm& g);

// What the plan cache holds, for planInfo() and the benchmarks (cuda/bench.h).
struct PlanInfo {
  std::string key;
  std::string path;    // "sparse" or "dense"
  std::string reason;  // why dense, or notes
  int alg_id = -1, split_k = 0, split_k_mode = 0, max_alg_id = -1;
  bool searched = false, verified = false;
  double sparse_ms = -1, dense_ms = -1;
  size_t workspace = 0;
};
std::vector<PlanInfo> plan_info();
void clear_plans();

}  // namespace nms::cuda
