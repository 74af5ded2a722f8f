// Training kernels on the GPU: the CUDA twin of native/cpu/elementwise.cc (see cuda/train.h for the contracts).
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include "cpu/elementwise.h"  // dropout_uniform, shared with the CPU so both draw the same mask
#include "cuda/device.h"
#include "cuda/nm_kernels.cuh"
#include "cuda/train.h"

namespace nms::cuda {
namespace {

constexpr int kBlock = 256;

unsigned stride_grid(int64_t n) {
  unsigned g = grid_for(n, kBlock);
  return g > 65536 ? 65536 : g;
}

#define NMS_GRID_STRIDE(i, n) \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Sum over a block of kBlock threads (float64); every thread gets the result.
__device__ double block_sum(double v) {
  __shared__ double part[kBlock / 32];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  __syncthreads();  // `part` may still be read by a previous call
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  double s = 0;
  for (int w = 0; w < kBlock / 32; ++w) s += part[w];  // the same order in every thread
  return s;
}

__global__ void bias_add_kernel(float* y, const float* b, int64_t rows, int64_t cols) {
  NMS_GRID_STRIDE(i, rows * cols) y[i] = __fadd_rn(y[i], b[i % cols]);
}

// One thread per column, rows in order: the CPU's summation order (bit-identical).
__global__ void column_sum_kernel(const float* dy, int64_t rows, int64_t cols, float* db) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float acc = 0.0f;
  for (int64_t r = 0; r < rows; ++r) acc = __fadd_rn(acc, dy[r * cols + c]);
  db[c] = acc;
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  NMS_GRID_STRIDE(i, n) y[i] = __fadd_rn(a[i], b[i]);
}

// A float32 token id as a row index, or −1 when it is not an integer in [0, vocab).
__device__ __forceinline__ int64_t row_of(float id, int64_t vocab) {
  return id >= 0.0f && id < static_cast<float>(vocab) && id == floorf(id) ? static_cast<int64_t>(id) : -1;
}

// A bad id (the CPU rejects it up front; here ids are already on the device) gives a NaN row, not a stray read.
__global__ void embedding_fwd_kernel(const float* ids, const float* table, float* out, int64_t rows, int64_t vocab,
                                     int64_t dim, bool accumulate) {
  NMS_GRID_STRIDE(i, rows * dim) {
    const int64_t r = i / dim, c = i - r * dim, v = row_of(ids[r], vocab);
    const float e = v < 0 ? __int_as_float(0x7fc00000) : table[v * dim + c];
    out[i] = accumulate ? __fadd_rn(out[i], e) : e;
  }
}

// Atomic adds: repeated ids sum in no fixed order (equal to the CPU's ordered sums to rounding).
__global__ void embedding_back_kernel(const float* dy, const float* ids, float* dtable, int64_t rows, int64_t vocab,
                                      int64_t dim) {
  NMS_GRID_STRIDE(i, rows * dim) {
    const int64_t r = i / dim, c = i - r * dim, v = row_of(ids[r], vocab);
    if (v >= 0) atomicAdd(dtable + v * dim + c, dy[i]);
  }
}

__global__ void relu_kernel(const float* x, float* y, int64_t n) {
  NMS_GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
__global__ void relu_back_kernel(const float* dy, const float* y, float* dx, int64_t n) {
  NMS_GRID_STRIDE(i, n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
__global__ void gelu_kernel(const float* x, float* y, int64_t n) {
  NMS_GRID_STRIDE(i, n) {
    const float v = x[i];
    y[i] = __fmul_rn(__fmul_rn(0.5f, v), 1.0f + erff(__fmul_rn(v, 0.70710678118654752f)));
  }
}
__global__ void gelu_back_kernel(const float* dy, const float* x, float* dx, int64_t n) {
  NMS_GRID_STRIDE(i, n) {
    const float v = x[i];
    const float cdf = __fmul_rn(0.5f, 1.0f + erff(__fmul_rn(v, 0.70710678118654752f)));
    const float pdf = __fmul_rn(0.39894228040143268f, expf(__fmul_rn(__fmul_rn(-0.5f, v), v)));
    dx[i] = __fmul_rn(dy[i], __fadd_rn(cdf, __fmul_rn(v, pdf)));
  }
}

// One block per row.
__global__ void __launch_bounds__(kBlock) layernorm_fwd_kernel(const float* x, const float* gamma, const float* beta,
                                                              float* y, float* mean, float* rstd, int64_t cols,
                                                              float eps) {
  const int64_t r = blockIdx.x;
  const float* xr = x + r * cols;
  double s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kBlock) s += xr[c];
  const double mu = block_sum(s) / static_cast<double>(cols);
  double v = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kBlock) {
    const double d = xr[c] - mu;
    v += d * d;
  }
  const double var = block_sum(v) / static_cast<double>(cols);
  const float m = static_cast<float>(mu);
  const float rs = static_cast<float>(1.0 / sqrt(var + eps));
  if (threadIdx.x == 0) {
    mean[r] = m;
    rstd[r] = rs;
  }
  float* yr = y + r * cols;
  for (int64_t c = threadIdx.x; c < cols; c += kBlock) {
    const float h = __fmul_rn(__fsub_rn(xr[c], m), rs);
    const float bb = beta ? beta[c] : 0.0f;
    yr[c] = gamma ? __fadd_rn(__fmul_rn(h, gamma[c]), bb) : __fadd_rn(h, bb);
  }
}

// dgamma / dbeta: one thread per column, rows in order (the CPU's order).
__global__ void layernorm_param_kernel(const float* dy, const float* x, const float* mean, const float* rstd,
                                       float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float ag = 0.0f, ab = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float d = dy[r * cols + c];
    ag = __fadd_rn(ag, __fmul_rn(__fmul_rn(d, __fsub_rn(x[r * cols + c], mean[r])), rstd[r]));
    ab = __fadd_rn(ab, d);
  }
  if (dgamma) dgamma[c] = ag;
  if (dbeta) dbeta[c] = ab;
}

__global__ void __launch_bounds__(kBlock) layernorm_dx_kernel(const float* dy, const float* x, const float* gamma,
                                                             const float* mean, const float* rstd, float* dx,
                                                             int64_t cols) {
  const int64_t r = blockIdx.x;
  const float* d = dy + r * cols;
  const float* xr = x + r * cols;
  const float m = mean[r], rs = rstd[r];
  double s1 = 0, s2 = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kBlock) {
    const float g = gamma ? __fmul_rn(d[c], gamma[c]) : d[c];
    s1 += g;
    s2 += static_cast<double>(g) * __fmul_rn(__fsub_rn(xr[c], m), rs);
  }
  const float a = static_cast<float>(block_sum(s1) / static_cast<double>(cols));
  const float b = static_cast<float>(block_sum(s2) / static_cast<double>(cols));
  __syncthreads();  // every thread has read its d[] before anyone overwrites dx (dx may alias dy)
  float* o = dx + r * cols;
  for (int64_t c = threadIdx.x; c < cols; c += kBlock) {
    const float g = gamma ? __fmul_rn(d[c], gamma[c]) : d[c];
    o[c] = __fmul_rn(rs, __fsub_rn(__fsub_rn(g, a), __fmul_rn(__fmul_rn(__fsub_rn(xr[c], m), rs), b)));
  }
}

// The CPU's argmax rule as an order: NaN above everything (the first NaN wins), otherwise the larger value, ties
// (==, so -0 and +0 tie) to the lower index.
__device__ __forceinline__ bool better(float av, int64_t ai, float bv, int64_t bi) {
  const bool an = av != av, bn = bv != bv;
  if (an != bn) return an;
  if (!an && av != bv) return av > bv;
  return ai < bi;
}

// One block per row: probs (softmax), the row's loss (float64) and whether its argmax is the label.
__global__ void __launch_bounds__(kBlock) xent_fwd_kernel(const float* logits, const int32_t* labels, float* probs,
                                                          int64_t cols, float eps, double* row_loss, int* row_hit) {
  __shared__ float sv[kBlock];
  __shared__ int64_t si[kBlock];
  const int64_t r = blockIdx.x;
  const float* z = logits + r * cols;
  float* p = probs + r * cols;
  float bv = z[0];
  int64_t bi = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kBlock)
    if (better(z[c], c, bv, bi)) {
      bv = z[c];
      bi = c;
    }
  sv[threadIdx.x] = bv;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int step = kBlock / 2; step > 0; step >>= 1) {
    if (threadIdx.x < step && better(sv[threadIdx.x + step], si[threadIdx.x + step], sv[threadIdx.x], si[threadIdx.x])) {
      sv[threadIdx.x] = sv[threadIdx.x + step];
      si[threadIdx.x] = si[threadIdx.x + step];
    }
    __syncthreads();
  }
  const float mx = sv[0];
  const int64_t arg = si[0];
  double sum = 0, sumz = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kBlock) {
    const float e = expf(__fsub_rn(z[c], mx));
    p[c] = e;
    sum += e;
    sumz += z[c];
  }
  sum = block_sum(sum);
  sumz = block_sum(sumz);
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t c = threadIdx.x; c < cols; c += kBlock) p[c] = __fmul_rn(p[c], inv);
  if (threadIdx.x == 0) {
    const int32_t y = labels[r];
    if (y < 0) {  // ignored row
      row_loss[r] = 0;
      row_hit[r] = -1;
      return;
    }
    const double lse = mx + log(sum);
    row_loss[r] = (1.0 - eps) * (lse - z[y]) + eps * (lse - sumz / static_cast<double>(cols));
    row_hit[r] = arg == y;
  }
}

__global__ void xent_back_kernel(const float* probs, const int32_t* labels, float* d, int64_t rows, int64_t cols,
                                 float on, float off, float scale) {
  NMS_GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i - r * cols;
    d[i] = labels[r] < 0 ? 0.0f : __fmul_rn(__fsub_rn(probs[i], c == labels[r] ? on : off), scale);
  }
}

__global__ void im2col_kernel(const float* x, Window2d g, float* out) {
  const int64_t width = g.kh * g.kw * g.c, rows = g.batch * g.oh * g.ow;
  NMS_GRID_STRIDE(i, rows * width) {
    const int64_t r = i / width, rem = i - r * width;
    const int64_t b = r / (g.oh * g.ow), pos = r - b * (g.oh * g.ow), oy = pos / g.ow, ox = pos - oy * g.ow;
    const int64_t ky = rem / (g.kw * g.c), kx = (rem / g.c) % g.kw, c = rem % g.c;
    const int64_t iy = oy * g.stride_h - g.pad_h + ky, ix = ox * g.stride_w - g.pad_w + kx;
    out[i] = (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) ? 0.0f : x[((b * g.h + iy) * g.w + ix) * g.c + c];
  }
}

// The windows (oy ascending, then ox) that contain input row iy / column ix.
__device__ __forceinline__ void covering(int64_t i, int64_t pad, int64_t k, int64_t stride, int64_t o, int64_t* lo,
                                         int64_t* hi) {
  // oy·stride − pad + ky = i with 0 <= ky < k  ⇔  (i + pad − k + 1)/stride <= oy <= (i + pad)/stride
  const int64_t a = i + pad - k + 1;
  *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  *hi = (i + pad) / stride;
  if (*hi > o - 1) *hi = o - 1;
}

// Gather form of col2im: each input element sums the patch entries that cover it, patches in the CPU's order.
__global__ void col2im_kernel(const float* cols, Window2d g, float* dx) {
  const int64_t width = g.kh * g.kw * g.c;
  NMS_GRID_STRIDE(i, g.batch * g.h * g.w * g.c) {
    const int64_t c = i % g.c, t = i / g.c, ix = t % g.w, t2 = t / g.w, iy = t2 % g.h, b = t2 / g.h;
    int64_t y0, y1, x0, x1;
    covering(iy, g.pad_h, g.kh, g.stride_h, g.oh, &y0, &y1);
    covering(ix, g.pad_w, g.kw, g.stride_w, g.ow, &x0, &x1);
    float acc = 0.0f;
    for (int64_t oy = y0; oy <= y1; ++oy) {
      const int64_t ky = iy + g.pad_h - oy * g.stride_h;
      for (int64_t ox = x0; ox <= x1; ++ox) {
        const int64_t kx = ix + g.pad_w - ox * g.stride_w;
        acc = __fadd_rn(acc, cols[((b * g.oh + oy) * g.ow + ox) * width + (ky * g.kw + kx) * g.c + c]);
      }
    }
    dx[i] = acc;
  }
}

__global__ void maxpool_fwd_kernel(const float* x, Window2d g, float* y, int32_t* argmax) {
  NMS_GRID_STRIDE(i, g.batch * g.oh * g.ow * g.c) {
    const int64_t c = i % g.c, r = i / g.c;
    const int64_t b = r / (g.oh * g.ow), pos = r - b * (g.oh * g.ow), oy = pos / g.ow, ox = pos - oy * g.ow;
    float best = -INFINITY;
    int32_t arg = -1;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t iy = oy * g.stride_h - g.pad_h + ky;
      if (iy < 0 || iy >= g.h) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t ix = ox * g.stride_w - g.pad_w + kx;
        if (ix < 0 || ix >= g.w) continue;
        const int64_t at = ((b * g.h + iy) * g.w + ix) * g.c + c;
        const float v = x[at];
        if (arg < 0 || v > best || (v != v && best == best)) {
          best = v;
          arg = static_cast<int32_t>(at);
        }
      }
    }
    y[i] = best;
    argmax[i] = arg;
  }
}

// Gather form of the scatter dx[argmax[i]] += dy[i]: outputs in ascending order, as the CPU adds them.
__global__ void maxpool_bwd_kernel(const float* dy, const int32_t* argmax, Window2d g, float* dx) {
  NMS_GRID_STRIDE(i, g.batch * g.h * g.w * g.c) {
    const int64_t c = i % g.c, t = i / g.c, ix = t % g.w, t2 = t / g.w, iy = t2 % g.h, b = t2 / g.h;
    int64_t y0, y1, x0, x1;
    covering(iy, g.pad_h, g.kh, g.stride_h, g.oh, &y0, &y1);
    covering(ix, g.pad_w, g.kw, g.stride_w, g.ow, &x0, &x1);
    float acc = 0.0f;
    for (int64_t oy = y0; oy <= y1; ++oy)
      for (int64_t ox = x0; ox <= x1; ++ox) {
        const int64_t o = ((b * g.oh + oy) * g.ow + ox) * g.c + c;
        if (argmax[o] == i) acc = __fadd_rn(acc, dy[o]);
      }
    dx[i] = acc;
  }
}

__global__ void dropout_kernel(const float* x, float* y, int64_t n, float p, float scale, uint64_t seed,
                               uint64_t offset) {
  NMS_GRID_STRIDE(i, n) {
    const float u = cpu::dropout_uniform(seed, offset + static_cast<uint64_t>(i));
    y[i] = u >= p ? __fmul_rn(x[i], scale) : 0.0f;
  }
}

__global__ void masked_scale_kernel(const float* x, const uint8_t* m, float alpha, float* y, int64_t n) {
  NMS_GRID_STRIDE(i, n) {
    const float v = x[i];
    y[i] = m[i] ? v : (alpha == 0.0f ? 0.0f : __fmul_rn(alpha, v));
  }
}

__global__ void masked_add_kernel(float* g, const float* w, const uint8_t* m, float lambda, int64_t n) {
  NMS_GRID_STRIDE(i, n) {
    const float gi = g[i];
    g[i] = m[i] ? gi : __fadd_rn(gi, __fmul_rn(lambda, w[i]));
  }
}

template <int M>
__global__ void nm_mask_scale_kernel(const float* w, int64_t groups, int n, float alpha, uint8_t* mask, float* eff) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  kern::Group<uint32_t, M> grp;
  kern::load_group<uint32_t, M>(grp, reinterpret_cast<const uint32_t*>(w) + g * M);
  uint32_t key[M];
#pragma unroll
  for (int i = 0; i < M; ++i) key[i] = nms::magnitude_key<DType::F32>(grp.v[i]);
  const uint32_t keep = nms::nm_keep<M>(key, n);
#pragma unroll
  for (int i = 0; i < M; ++i) {
    const bool k = (keep >> i) & 1u;
    const float v = __uint_as_float(grp.v[i]);
    mask[g * M + i] = k;
    eff[g * M + i] = k ? v : (alpha == 0.0f ? 0.0f : __fmul_rn(alpha, v));
  }
}

// cpu::nm_train_pass: one thread per group of M. Every lane reaches the warp collectives (no early return).
template <int M>
__global__ void __launch_bounds__(kBlock) nm_train_pass_kernel(const float* __restrict__ w, int64_t groups,
                                                               int64_t groups_per_row, int n, int bits,
                                                               int64_t pos_row_bytes, uint8_t* __restrict__ mask,
                                                               bool select, float* __restrict__ eff,
                                                               float* __restrict__ values, uint32_t* pos_words,
                                                               unsigned long long* sad) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool valid = g < groups;
  uint32_t keep = 0, stored = 0;
  unsigned changed = 0;
  if (valid) {
    kern::Group<uint32_t, M> grp;
    kern::load_group<uint32_t, M>(grp, reinterpret_cast<const uint32_t*>(w) + g * M);
    kern::Group<uint8_t, M> mg;
    if (select) {
      uint32_t key[M];
#pragma unroll
      for (int i = 0; i < M; ++i) key[i] = nms::magnitude_key<DType::F32>(grp.v[i]);
      keep = nms::nm_keep<M>(key, n);
      if (sad) {
        kern::load_group<uint8_t, M>(mg, mask + g * M);
#pragma unroll
        for (int i = 0; i < M; ++i) changed += (mg.v[i] != 0) != (((keep >> i) & 1u) != 0);
      }
#pragma unroll
      for (int i = 0; i < M; ++i) mg.v[i] = (keep >> i) & 1u;
      kern::store_group<uint8_t, M>(mask + g * M, mg);
    } else {
      kern::load_group<uint8_t, M>(mg, mask + g * M);
#pragma unroll
      for (int i = 0; i < M; ++i) keep |= static_cast<uint32_t>(mg.v[i] != 0) << i;
    }
    // A given mask keeps exactly n per group; should one keep more, only its first n reach the compressed form,
    // which has room for n (eff still follows the mask).
    stored = keep;
    int c = 0;
#pragma unroll
    for (int i = 0; i < M; ++i)
      if (((stored >> i) & 1u) && ++c > n) stored &= ~(1u << i);
    uint32_t* dst = reinterpret_cast<uint32_t*>(values) + g * n;
    int j = 0;
#pragma unroll
    for (int i = 0; i < M; ++i)
      if ((stored >> i) & 1u) dst[j++] = grp.v[i];
#pragma unroll
    for (int i = 0; i < M; ++i)
      if (!((keep >> i) & 1u)) grp.v[i] = 0;
    kern::store_group<uint32_t, M>(reinterpret_cast<uint32_t*>(eff) + g * M, grp);
  }
  kern::store_positions<M>(stored, valid, g, groups_per_row, n, bits, pos_row_bytes, pos_words);
  if (!sad) return;  // uniform across the grid
  changed = __reduce_add_sync(0xffffffffu, changed);
  if ((threadIdx.x & 31) == 0 && changed) atomicAdd(sad, static_cast<unsigned long long>(changed));
}

void launched(const char* what) { check_launch(what); }

// activate(), then `kernel` on the grid-stride grid for n elements (nothing when n is 0), then the launch check.
template <class... Params, class... Args>
void launch_stride(void (*kernel)(Params...), int64_t n, const char* what, Args... args) {
  activate();
  if (!n) return;
  kernel<<<stride_grid(n), kBlock, 0, stream()>>>(args...);
  launched(what);
}

}  // namespace

void bias_add(float* y, const float* b, int64_t rows, int64_t cols) {
  activate();
  if (rows * cols == 0) return;
  bias_add_kernel<<<stride_grid(rows * cols), kBlock, 0, stream()>>>(y, b, rows, cols);
  launched("bias_add kernel");
}

void add(const float* a, const float* b, float* y, int64_t n) { launch_stride(add_kernel, n, "add kernel", a, b, y, n); }

void embedding_forward(const float* ids, const float* table, float* out, int64_t rows, int64_t vocab, int64_t dim,
                       bool accumulate) {
  launch_stride(embedding_fwd_kernel, rows * dim, "embedding kernel", ids, table, out, rows, vocab, dim, accumulate);
}

void embedding_backward(const float* dy, const float* ids, float* dtable, int64_t rows, int64_t vocab, int64_t dim,
                        bool accumulate) {
  activate();
  if (!accumulate) NMS_CUDA(cudaMemsetAsync(dtable, 0, static_cast<size_t>(vocab * dim) * sizeof(float), stream()));
  launch_stride(embedding_back_kernel, rows * dim, "embedding backward kernel", dy, ids, dtable, rows, vocab, dim);
}

void bias_grad(const float* dy, int64_t rows, int64_t cols, float* db) {
  activate();
  if (cols == 0) return;
  column_sum_kernel<<<grid_for(cols, kBlock), kBlock, 0, stream()>>>(dy, rows, cols, db);
  launched("bias_grad kernel");
}

void relu_forward(const float* x, float* y, int64_t n) { launch_stride(relu_kernel, n, "relu kernel", x, y, n); }
void relu_backward(const float* dy, const float* y, float* dx, int64_t n) {
  launch_stride(relu_back_kernel, n, "relu backward kernel", dy, y, dx, n);
}
void gelu_forward(const float* x, float* y, int64_t n) { launch_stride(gelu_kernel, n, "gelu kernel", x, y, n); }
void gelu_backward(const float* dy, const float* x, float* dx, int64_t n) {
  launch_stride(gelu_back_kernel, n, "gelu backward kernel", dy, x, dx, n);
}

void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t rows, int64_t cols, float eps) {
  activate();
  if (rows == 0 || cols == 0) return;
  if (rows > 0x7fffffff) fail("E_SHAPE", "layerNorm on 'cuda': more than 2^31 rows");
  layernorm_fwd_kernel<<<static_cast<unsigned>(rows), kBlock, 0, stream()>>>(x, gamma, beta, y, mean, rstd, cols, eps);
  launched("layernorm forward kernel");
}

void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                        float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  activate();
  if (rows == 0 || cols == 0) return;
  if (rows > 0x7fffffff) fail("E_SHAPE", "layerNorm on 'cuda': more than 2^31 rows");
  // Parameter gradients first: dx may alias dy (same stream, so the next kernel sees them done).
  if (dgamma || dbeta)
    layernorm_param_kernel<<<grid_for(cols, kBlock), kBlock, 0, stream()>>>(dy, x, mean, rstd, dgamma, dbeta, rows, cols);
  layernorm_dx_kernel<<<static_cast<unsigned>(rows), kBlock, 0, stream()>>>(dy, x, gamma, mean, rstd, dx, cols);
  launched("layernorm backward kernels");
}

XentResult softmax_xent_forward(const float* logits, const int32_t* labels, float* probs, int64_t rows, int64_t cols,
                                float label_smoothing) {
  activate();
  if (rows > 0x7fffffff) fail("E_SHAPE", "softmax cross-entropy on 'cuda': more than 2^31 rows");
  DevPtr loss = alloc(static_cast<size_t>(rows) * sizeof(double)), hit = alloc(static_cast<size_t>(rows) * sizeof(int));
  xent_fwd_kernel<<<static_cast<unsigned>(rows), kBlock, 0, stream()>>>(logits, labels, probs, cols, label_smoothing,
                                                                        loss->as<double>(), hit->as<int>());
  launched("softmax cross-entropy kernel");
  std::vector<double> l(static_cast<size_t>(rows));
  std::vector<int> h(static_cast<size_t>(rows));
  download(l.data(), loss->ptr(), l.size() * sizeof(double));
  download(h.data(), hit->ptr(), h.size() * sizeof(int));
  XentResult s{0.0, 0, 0};
  for (int64_t r = 0; r < rows; ++r) {  // in row order, as the CPU sums them
    s.loss_sum += l[static_cast<size_t>(r)];
    s.correct += h[static_cast<size_t>(r)] == 1;
    s.counted += h[static_cast<size_t>(r)] >= 0;
  }
  return s;
}

void softmax_xent_backward(const float* probs, const int32_t* labels, float* dlogits, int64_t rows, int64_t cols,
                           float label_smoothing, float scale) {
  activate();
  if (rows * cols == 0) return;
  const float off = label_smoothing / static_cast<float>(cols), on = 1.0f - label_smoothing + off;
  xent_back_kernel<<<stride_grid(rows * cols), kBlock, 0, stream()>>>(probs, labels, dlogits, rows, cols, on, off, scale);
  launched("softmax cross-entropy backward kernel");
}

void im2col(const float* x, const Window2d& g, float* cols) {
  activate();
  const int64_t total = g.batch * g.oh * g.ow * g.kh * g.kw * g.c;
  if (!total) return;
  im2col_kernel<<<stride_grid(total), kBlock, 0, stream()>>>(x, g, cols);
  launched("im2col kernel");
}

void col2im(const float* cols, const Window2d& g, float* dx) {
  activate();
  const int64_t total = g.batch * g.h * g.w * g.c;
  if (!total) return;
  col2im_kernel<<<stride_grid(total), kBlock, 0, stream()>>>(cols, g, dx);
  launched("col2im kernel");
}

void maxpool_forward(const float* x, const Window2d& g, float* y, int32_t* argmax) {
  activate();
  const int64_t total = g.batch * g.oh * g.ow * g.c;
  if (!total) return;
  maxpool_fwd_kernel<<<stride_grid(total), kBlock, 0, stream()>>>(x, g, y, argmax);
  launched("max-pool kernel");
}

void maxpool_backward(const float* dy, const int32_t* argmax, const Window2d& g, float* dx) {
  activate();
  const int64_t total = g.batch * g.h * g.w * g.c;
  if (!total) return;
  maxpool_bwd_kernel<<<stride_grid(total), kBlock, 0, stream()>>>(dy, argmax, g, dx);
  launched("max-pool backward kernel");
}

void dropout_apply(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t offset) {
  activate();
  if (!n) return;
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  dropout_kernel<<<stride_grid(n), kBlock, 0, stream()>>>(x, y, n, p, scale, seed, offset);
  launched("dropout kernel");
}

void masked_scale(const float* x, const uint8_t* mask, float alpha, float* y, int64_t n) {
  launch_stride(masked_scale_kernel, n, "masked_scale kernel", x, mask, alpha, y, n);
}

void masked_add(float* g, const float* w, const uint8_t* mask, float lambda, int64_t n) {
  activate();
  if (!n || lambda == 0.0f) return;  // λ = 0: the gradient bit for bit unchanged, as on the CPU
  masked_add_kernel<<<stride_grid(n), kBlock, 0, stream()>>>(g, w, mask, lambda, n);
  launched("masked_add kernel");
}

void nm_mask_scale(const float* w, int64_t rows, int64_t cols, int n, int m, float alpha, uint8_t* mask, float* eff) {
  activate();
  const int64_t groups = rows * (cols / m);
  if (!groups) return;
  NMS_DISPATCH_M(m, { nm_mask_scale_kernel<kM><<<grid_for(groups, kBlock), kBlock, 0, stream()>>>(w, groups, n, alpha, mask, eff); });
  launched("nm_mask_scale kernel");
}

void nm_train_pass(const float* w, int64_t rows, int64_t cols, int n, int m, uint8_t* mask, bool select, float* eff,
                   float* values, uint8_t* positions, unsigned long long* sad) {
  activate();
  const int64_t groups = rows * (cols / m);
  if (!groups) return;
  NMS_DISPATCH_M(m, {
    nm_train_pass_kernel<kM><<<grid_for(groups, kBlock), kBlock, 0, stream()>>>(
        w, groups, cols / m, n, nm_pos_bits(m), nm_pos_row_bytes(cols, n, m), mask, select, eff, values,
        reinterpret_cast<uint32_t*>(positions), select ? sad : nullptr);
  });
  launched("nm_train_pass kernel");
}

}  // namespace nms::cuda
