// N:M-sparse × dense products on the CPU, straight from the portable compressed form (core/nm_format.h).
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace nms::cpu {

// W̃ [rows, cols] in the portable compressed N:M form.
struct NmMatrix {
  const void* values;        // [rows, cols*n/m] in `dtype`
  const uint8_t* positions;  // rows × nm_pos_row_bytes(cols, n, m) bytes
  DType dtype;
  int64_t rows, cols;
  int n, m;
};

struct SpmmArgs {
  NmMatrix w;
  const void* b; DType b_dtype;  // op(B) is [cols, p]: B is stored [cols, p], or [p, cols] when trans_b
  int64_t p;
  void* out; DType out_dtype;    // Y = W̃·op(B) is [rows, p]; out holds Y, or Yᵀ [p, rows] when trans_out
  bool trans_b, trans_out;
  const void* bias; DType bias_dtype;  // nullptr, or `rows` values added to Y[r, :]
  const float* w_packed;               // optional: W̃ as spmm_pack wrote it (read by the small-batch path instead)
};

// nm.linear(x, S, bias) = spmm with b = x, trans_b = trans_out = true;  S.matmul(B) = spmm with both false.
// float32 math. Allocates nothing per call beyond reusable per-thread scratch.
void spmm(const SpmmArgs& args);

// A copy of a float32 N:4 W̃ laid out for x·W̃ᵀ at a few rows of x (spmm.cc, spmm_packed): blocks of 16 rows of W̃
// with the rows in the vector lanes. spmm_packed_floats: its size in floats, 0 where M is not 4 (no such form).
// spmm_pack: writes it (values float32; E_DTYPE otherwise).
int64_t spmm_packed_floats(int64_t rows, int64_t cols, int n, int m);
void spmm_pack(const NmMatrix& w, float* out);

}  // namespace nms::cpu

namespace nms::cpu {

// The transposed product: Y [cols, p] = W̃ᵀ · op(B), W̃ [rows, cols] float32 in the compressed form (the masked
// weight W ⊙ m of training, as nmTrainPass writes it; its kept zeros are skipped too, except at 1:4, whose pairs of
// groups multiply them: an inf or NaN in op(B) there gives NaN where the other patterns give 0), op(B) [rows, p] (B stored
// [rows, p], or [p, rows] when trans_b), out holds Y or Yᵀ [p, cols] when trans_out. The backward of y = x·W̃ᵀ to
// its input, dX = dY·W̃, is spmm_t with b = dY, trans_b = trans_out = true: N:M along `in` is N:M along this
// product's output, which the row-wise kernels above cannot use (see spmm.cc for how this one does).
struct SpmmTArgs {
  NmMatrix w;
  const void* b; DType b_dtype;
  int64_t p;
  void* out; DType out_dtype;
  bool trans_b, trans_out;
};
void spmm_t(const SpmmTArgs& args);

}  // namespace nms::cpu
