// Compressed N:M on the GPU. Two forms live side by side in a cuda SparseTensor (ops.h SparseMatrix):
//   * the portable form of core/nm_format.h (values + packed positions), bit-identical to the CPU's; it is what
//     decompress() reads and what .to('cpu') downloads, and it works for every N:M and dtype;
//   * the cuSPARSELt compressed buffer (opaque, per GPU and library version) of the same pruned weight, made
//     where cuSPARSELt can take it, for sparse GEMM.
// Why not keep the pruned dense copy for decompress(): the portable form is ~0.56x dense for 2:4 16-bit, so the
// two forms together hold ~1.1x the dense bytes instead of ~1.6x, and decompress stays exact by construction.
#include <cuda_runtime.h>

#include <mutex>

#include "core/nm_format.h"
#include "cuda/internal.h"
#include "cuda/nm_kernels.cuh"
#include "cuda/ops.h"

namespace nms::cuda {
namespace {

constexpr int kBlock = 256;

// One thread per group: writes all M outputs (zeros and the kept values), so `out` needs no clearing.
template <class T, int M>
__global__ void __launch_bounds__(kBlock) decompress_kernel(const T* __restrict__ values, const uint8_t* __restrict__ positions,
                                                            int64_t groups, int64_t groups_per_row, int n, int bits,
                                                            int64_t pos_row_bytes, T* __restrict__ out) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  const int64_t row = g / groups_per_row, gi = g - row * groups_per_row;
  const uint8_t* prow = positions + row * pos_row_bytes;
  kern::Group<T, M> grp;
#pragma unroll
  for (int i = 0; i < M; ++i) grp.v[i] = 0;
  for (int j = 0; j < n; ++j) {
    const int64_t field = gi * n + j;
    const int64_t bit = field * bits;
    const uint8_t* p = prow + (bit >> 3);
    const int sh = static_cast<int>(bit & 7);
    uint32_t word = p[0];
    if (sh + bits > 8) word |= static_cast<uint32_t>(p[1]) << 8;
    const int pos = static_cast<int>((word >> sh) & ((1u << bits) - 1));
    const T v = values[g * n + j];
    // Dynamic index into a register array: unrolled compare-select keeps it in registers.
#pragma unroll
    for (int i = 0; i < M; ++i)
      if (i == pos) grp.v[i] = v;
  }
  kern::store_group<T, M>(out + g * M, grp);
}

template <class T>
void launch_decompress(const void* values, const uint8_t* positions, int64_t rows, int64_t cols, int n, int m,
                       void* out) {
  const int64_t groups = rows * (cols / m);
  const int bits = nm_pos_bits(m);
  const int64_t prow = nm_pos_row_bytes(cols, n, m);
  NMS_DISPATCH_M(m, {
    decompress_kernel<T, kM><<<grid_for(groups, kBlock), kBlock, 0, stream()>>>(
        static_cast<const T*>(values), positions, groups, cols / m, n, bits, prow, static_cast<T*>(out));
  });
  check_launch("nm_decompress kernel");
}

// A new SparseMatrix of a [rows, cols] N:M weight of d, with no buffers yet (compress / from_portable fill them).
SparsePtr sparse_header(DType d, int64_t rows, int64_t cols, int n, int m) {
  auto s = std::make_shared<SparseMatrix>();
  s->dtype = d;
  s->rows = rows;
  s->cols = cols;
  s->n = n;
  s->m = m;
  return s;
}

}  // namespace

void nm_decompress(const void* values, const uint8_t* positions, DType d, int64_t rows, int64_t cols, int n, int m,
                   void* out) {
  activate();
  switch (dtype_size(d)) {
    case 4: launch_decompress<uint32_t>(values, positions, rows, cols, n, m, out); break;
    case 2: launch_decompress<uint16_t>(values, positions, rows, cols, n, m, out); break;
    default: launch_decompress<uint8_t>(values, positions, rows, cols, n, m, out); break;
  }
}

int64_t SparseMatrix::bytes() const {
  int64_t b = 0;
  for (const DevPtr* p : {&values, &positions, &slt_compressed, &dense_cache})
    if (*p) b += static_cast<int64_t>((*p)->bytes());
  return b;
}

DevPtr pad_matrix(const void* src, size_t es, int64_t rows, int64_t cols, int64_t rows_pad, int64_t cols_pad) {
  DevPtr dst = alloc_zeroed(static_cast<size_t>(rows_pad * cols_pad) * es);
  NMS_CUDA(cudaMemcpy2DAsync(dst->ptr(), cols_pad * es, src, cols * es, cols * es, rows, cudaMemcpyDeviceToDevice,
                             stream()));
  return dst;
}

SparsePtr compress(const void* w, DType d, int64_t rows, int64_t cols, int n, int m) {
  activate();
  SparsePtr s = sparse_header(d, rows, cols, n, m);
  s->values = alloc(static_cast<size_t>(rows * nm_kept_per_row(cols, n, m)) * dtype_size(d));
  s->positions = alloc_zeroed(static_cast<size_t>(rows * nm_pos_row_bytes(cols, n, m)));
  const SltRules rules = slt_rules(d);
  DevPtr pruned;
  SelectOut out;
  out.values = s->values->ptr();
  out.positions = s->positions->as<uint8_t>();
  if (rules.supported) {
    pruned = alloc(static_cast<size_t>(rows * cols) * dtype_size(d));
    out.pruned = pruned->ptr();
  }
  nm_select(w, d, rows, cols, n, m, out);  // one pass: portable form and the pruned dense weight
  if (rules.supported) build_slt_form(*s, pruned->ptr());
  else s->slt_reason = rules.why;
  return s;  // `pruned` is released here, stream-ordered after the compression that reads it
}

SparsePtr from_portable(DevPtr values, DevPtr positions, DType d, int64_t rows, int64_t cols, int n, int m) {
  activate();
  SparsePtr s = sparse_header(d, rows, cols, n, m);
  s->values = std::move(values);
  s->positions = std::move(positions);
  const SltRules rules = slt_rules(d);
  if (rules.supported) {
    DevPtr dense = alloc(static_cast<size_t>(rows * cols) * dtype_size(d));
    nm_decompress(s->values->ptr(), s->positions->as<uint8_t>(), d, rows, cols, n, m, dense->ptr());
    build_slt_form(*s, dense->ptr());
  } else {
    s->slt_reason = rules.why;
  }
  return s;
}

namespace {
std::mutex g_dense_mu;
}

void drop_dense(SparseMatrix& s) {
  std::lock_guard<std::mutex> lock(g_dense_mu);
  s.dense_cache.reset();
}

const void* dense_of(SparseMatrix& s) {
  std::lock_guard<std::mutex> lock(g_dense_mu);
  if (!s.dense_cache) {
    DevPtr dense = alloc(static_cast<size_t>(s.rows * s.cols) * dtype_size(s.dtype));
    nm_decompress(s.values->ptr(), s.positions->as<uint8_t>(), s.dtype, s.rows, s.cols, s.n, s.m, dense->ptr());
    s.dense_cache = std::move(dense);
  }
  return s.dense_cache->ptr();
}

}  // namespace nms::cuda
