// N:M masks on the GPU: mask / prune / portable compress (one selection pass), check, transposable 2:4 mask and
// SAD. The CUDA twin of native/cpu/mask.cc, bit-identical to it: same keys, same tie rule, same pattern order.
#include <cuda_runtime.h>

#include "core/nm_format.h"
#include "cpu/mask.h"
#include "cuda/nm_kernels.cuh"
#include "cuda/ops.h"

namespace nms::cuda {
namespace {

constexpr int kBlock = 256;

// One thread per group of M. All lanes of a warp reach the warp collectives (no early return).
template <DType D, int M>
__global__ void __launch_bounds__(kBlock) select_kernel(const typename kern::Storage<D>::type* __restrict__ w,
                                                        int64_t groups, int64_t groups_per_row, int n, int bits,
                                                        int64_t pos_row_bytes, uint8_t* __restrict__ mask,
                                                        typename kern::Storage<D>::type* pruned,
                                                        typename kern::Storage<D>::type* __restrict__ values,
                                                        uint32_t* __restrict__ pos_words) {
  using T = typename kern::Storage<D>::type;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool valid = g < groups;
  kern::Group<T, M> grp;
  uint32_t keep = 0;
  if (valid) {
    kern::load_group<T, M>(grp, w + g * M);
    uint32_t key[M];
#pragma unroll
    for (int i = 0; i < M; ++i) key[i] = nms::magnitude_key<D>(grp.v[i]);
    keep = nms::nm_keep<M>(key, n);
    if (mask) {
      kern::Group<uint8_t, M> mg;
#pragma unroll
      for (int i = 0; i < M; ++i) mg.v[i] = (keep >> i) & 1u;
      kern::store_group<uint8_t, M>(mask + g * M, mg);
    }
    if (values) {
      T* dst = values + g * n;
      int j = 0;
#pragma unroll
      for (int i = 0; i < M; ++i)
        if ((keep >> i) & 1u) dst[j++] = grp.v[i];
    }
    if (pruned) {
#pragma unroll
      for (int i = 0; i < M; ++i)
        if (!((keep >> i) & 1u)) grp.v[i] = 0;
      kern::store_group<T, M>(pruned + g * M, grp);
    }
  }
  if (!pos_words) return;  // uniform across the grid
  kern::store_positions<M>(keep, valid, g, groups_per_row, n, bits, pos_row_bytes, pos_words);
}

template <DType D, int M>
__global__ void __launch_bounds__(kBlock) check_kernel(const typename kern::Storage<D>::type* __restrict__ w,
                                                       int64_t groups, int n, unsigned long long* result) {
  using T = typename kern::Storage<D>::type;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned long long v = ~0ull;
  if (g < groups) {
    kern::Group<T, M> grp;
    kern::load_group<T, M>(grp, w + g * M);
    int nz = 0;
#pragma unroll
    for (int i = 0; i < M; ++i) nz += nms::is_nonzero<D>(grp.v[i]);
    if (nz > n) v = (static_cast<unsigned long long>(g) << 8) | static_cast<unsigned>(nz);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const unsigned long long o = __shfl_down_sync(0xffffffffu, v, off);
    v = o < v ? o : v;
  }
  if ((threadIdx.x & 31) == 0 && v != ~0ull) atomicMin(result, v);
}

// The 90 transposable 4x4 patterns, made at compile time in cpu::transposable_patterns()'s ascending order: each
// row one of the six 2-of-4 masks, rows 3..0 from most to least significant nibble, columns checked. A constant
// initialiser, so no copy to the device that kernels on our stream would have to be ordered after.
struct PatternTable {
  uint16_t p[cpu::kTransposablePatterns] = {};
  int count = 0;
};
constexpr PatternTable make_patterns() {
  constexpr uint16_t two_of_four[6] = {0x3, 0x5, 0x6, 0x9, 0xa, 0xc};
  PatternTable t;
  for (int r3 = 0; r3 < 6; ++r3)
    for (int r2 = 0; r2 < 6; ++r2)
      for (int r1 = 0; r1 < 6; ++r1)
        for (int r0 = 0; r0 < 6; ++r0) {
          const uint32_t code = two_of_four[r0] | two_of_four[r1] << 4 | two_of_four[r2] << 8 | two_of_four[r3] << 12;
          bool ok = true;
          for (int c = 0; c < 4; ++c) {
            int ones = 0;
            for (int r = 0; r < 4; ++r) ones += (code >> (4 * r + c)) & 1u;
            ok = ok && ones == 2;
          }
          if (ok && t.count < cpu::kTransposablePatterns) t.p[t.count++] = static_cast<uint16_t>(code);
        }
  return t;
}
constexpr PatternTable kPatterns = make_patterns();
constexpr bool ascending(const PatternTable& t) {
  for (int i = 1; i < t.count; ++i)
    if (t.p[i - 1] >= t.p[i]) return false;
  return true;
}
static_assert(kPatterns.count == cpu::kTransposablePatterns && ascending(kPatterns),
              "the transposable table must match cpu::transposable_patterns() (90 codes, ascending)");
__constant__ const PatternTable c_table = kPatterns;

// cpu::transposable_score on raw bits.
template <DType D>
__device__ __forceinline__ double tile_score(typename kern::Storage<D>::type bits) {
  const float v = kern::to_f32<D>(bits);
  if (v != v) return 1e300;
  const double a = v < 0 ? -static_cast<double>(v) : static_cast<double>(v);
  return a > 3.4e38 ? 1e299 : a;
}

// One thread per 4x4 tile; the patterns are tried in the CPU's order and summed in increasing bit order, in
// double, so the choice (and every tie) matches native/cpu/mask.cc exactly.
template <DType D>
__global__ void __launch_bounds__(kBlock) transposable_kernel(const typename kern::Storage<D>::type* __restrict__ w,
                                                              int64_t tile_rows, int64_t tile_cols, int64_t cols,
                                                              uint8_t* __restrict__ out) {
  using T = typename kern::Storage<D>::type;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= tile_rows * tile_cols) return;
  const int64_t tr = t / tile_cols, tc = t - tr * tile_cols;
  double s[16];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    kern::Group<T, 4> row;
    kern::load_group<T, 4>(row, w + (tr * 4 + r) * cols + tc * 4);
#pragma unroll
    for (int c = 0; c < 4; ++c) s[r * 4 + c] = tile_score<D>(row.v[c]);
  }
  int best = 0;
  double best_score = -1;
  for (int p = 0; p < cpu::kTransposablePatterns; ++p) {
    const uint32_t code = c_table.p[p];
    double sum = 0;
#pragma unroll
    for (int b = 0; b < 16; ++b)
      if ((code >> b) & 1u) sum = __dadd_rn(sum, s[b]);
    if (sum > best_score) {
      best_score = sum;
      best = p;
    }
  }
  const uint32_t code = c_table.p[best];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    kern::Group<uint8_t, 4> mrow;
#pragma unroll
    for (int c = 0; c < 4; ++c) mrow.v[c] = (code >> (r * 4 + c)) & 1u;
    kern::store_group<uint8_t, 4>(out + (tr * 4 + r) * cols + tc * 4, mrow);
  }
}

__global__ void __launch_bounds__(kBlock) sad_kernel(const uint8_t* __restrict__ a, const uint8_t* __restrict__ b,
                                                     int64_t count, unsigned long long* result) {
  unsigned local = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t vec = count / 16;
  const uint4* a4 = reinterpret_cast<const uint4*>(a);
  const uint4* b4 = reinterpret_cast<const uint4*>(b);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vec; i += stride) {
    const uint4 x = a4[i], y = b4[i];
    const uint32_t xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
    for (int k = 0; k < 4; ++k)
#pragma unroll
      for (int byte = 0; byte < 4; ++byte)
        local += (((xs[k] >> (8 * byte)) & 0xffu) != 0) != (((ys[k] >> (8 * byte)) & 0xffu) != 0);
  }
  for (int64_t i = vec * 16 + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride)
    local += (a[i] != 0) != (b[i] != 0);
  local = __reduce_add_sync(0xffffffffu, local);
  if ((threadIdx.x & 31) == 0 && local) atomicAdd(result, static_cast<unsigned long long>(local));
}

// A small device scratch for results read back by the host (one per call: calls may overlap across threads).
struct HostResult {
  DevPtr d = alloc(sizeof(unsigned long long));
  unsigned long long* ptr() const { return d->as<unsigned long long>(); }
  void fill(unsigned char byte) { NMS_CUDA(cudaMemsetAsync(ptr(), byte, sizeof(unsigned long long), stream())); }
  unsigned long long read() {
    unsigned long long v = 0;
    download(&v, ptr(), sizeof v);
    return v;
  }
};

}  // namespace

void nm_select(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, const SelectOut& out) {
  activate();
  const int64_t groups = rows * (cols / m);
  const int bits = nm_pos_bits(m);
  const int64_t prow = nm_pos_row_bytes(cols, n, m);
  NMS_DISPATCH_DTYPE(d, NMS_DISPATCH_M(m, {
    using T = typename kern::Storage<kD>::type;
    select_kernel<kD, kM><<<grid_for(groups, kBlock), kBlock, 0, stream()>>>(
        static_cast<const T*>(w), groups, cols / m, n, bits, prow, out.mask, static_cast<T*>(out.pruned),
        static_cast<T*>(out.values), reinterpret_cast<uint32_t*>(out.positions));
  }));
  check_launch("nm_select kernel");
}

void nm_check_async(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, unsigned long long* d_result) {
  activate();
  NMS_CUDA(cudaMemsetAsync(d_result, 0xff, sizeof(unsigned long long), stream()));
  const int64_t groups = rows * (cols / m);
  if (m == 2) {
    NMS_DISPATCH_DTYPE(d, {
      using T = typename kern::Storage<kD>::type;
      check_kernel<kD, 2><<<grid_for(groups, kBlock), kBlock, 0, stream()>>>(static_cast<const T*>(w), groups, n, d_result);
    });
  } else {
    NMS_DISPATCH_DTYPE(d, NMS_DISPATCH_M(m, {
      using T = typename kern::Storage<kD>::type;
      check_kernel<kD, kM><<<grid_for(groups, kBlock), kBlock, 0, stream()>>>(static_cast<const T*>(w), groups, n, d_result);
    }));
  }
  check_launch("nm_check kernel");
}

int64_t nm_check(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, int* nonzeros) {
  HostResult r;
  nm_check_async(w, d, rows, cols, n, m, r.ptr());
  const unsigned long long v = r.read();
  if (v == ~0ull) return -1;
  if (nonzeros) *nonzeros = static_cast<int>(v & 0xffu);
  return static_cast<int64_t>(v >> 8);
}

void transposable_mask(const void* w, DType d, int64_t rows, int64_t cols, uint8_t* out) {
  activate();
  const int64_t tiles = (rows / 4) * (cols / 4);
  NMS_DISPATCH_DTYPE(d, {
    using T = typename kern::Storage<kD>::type;
    transposable_kernel<kD><<<grid_for(tiles, kBlock), kBlock, 0, stream()>>>(static_cast<const T*>(w), rows / 4,
                                                                             cols / 4, cols, out);
  });
  check_launch("transposable_mask kernel");
}

int64_t mask_sad(const uint8_t* a, const uint8_t* b, int64_t count) {
  activate();
  HostResult r;
  r.fill(0);
  const int64_t work = count / 16 > 0 ? count / 16 : count;
  unsigned blocks = grid_for(work, kBlock);
  if (blocks > 4096) blocks = 4096;
  sad_kernel<<<blocks, kBlock, 0, stream()>>>(a, b, count, r.ptr());
  check_launch("mask_sad kernel");
  return static_cast<int64_t>(r.read());
}

}  // namespace nms::cuda
