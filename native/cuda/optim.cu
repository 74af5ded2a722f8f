// Optimizer updates on the GPU: the CUDA twin of native/cpu/optim.cc (PyTorch's SGD and AdamW semantics). The
// per-step scalars (bias corrections, step size, decay) are computed on the host exactly as the CPU computes them.
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include "cuda/device.h"
#include "cuda/train.h"

namespace nms::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kSumBlocks = 1024;  // fixed partition: the sum is the same on every run

unsigned stride_grid(int64_t n) {
  unsigned g = grid_for(n, kBlock);
  return g > 65536 ? 65536 : g;
}

template <bool Momentum, bool First, bool Nesterov>
__global__ void sgd_kernel(float* p, const float* g, float* buf, int64_t n, float lr, float wd, float mu, float damp) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float d = __fadd_rn(g[i], __fmul_rn(wd, p[i]));
    if constexpr (!Momentum) {
      p[i] = __fsub_rn(p[i], __fmul_rn(lr, d));
    } else {
      const float b = First ? d : __fadd_rn(__fmul_rn(mu, buf[i]), __fmul_rn(damp, d));
      buf[i] = b;
      p[i] = __fsub_rn(p[i], __fmul_rn(lr, Nesterov ? __fadd_rn(d, __fmul_rn(mu, b)) : b));
    }
  }
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float b1, float b2, float decay,
                             float step_size, float bc2_sqrt, float eps) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(1.0f - b1, gi));
    const float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(1.0f - b2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
    p[i] = __fsub_rn(__fmul_rn(p[i], decay), __fdiv_rn(__fmul_rn(step_size, mi), denom));
  }
}

__global__ void sum_squares_kernel(const float* x, int64_t n, double* part) {
  __shared__ double s[kBlock];
  double acc = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    acc += static_cast<double>(x[i]) * x[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int step = kBlock / 2; step > 0; step >>= 1) {
    if (threadIdx.x < step) s[threadIdx.x] += s[threadIdx.x + step];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = s[0];
}

__global__ void scale_kernel(float* x, float s, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = __fmul_rn(x[i], s);
}

}  // namespace

void sgd_step(float* p, const float* g, float* buf, int64_t n, const SgdArgs& a) {
  activate();
  if (!n) return;
  const float lr = a.lr, mu = a.momentum, damp = 1.0f - a.dampening, wd = a.weight_decay;
  const unsigned blocks = stride_grid(n);
  if (mu == 0.0f) sgd_kernel<false, false, false><<<blocks, kBlock, 0, stream()>>>(p, g, buf, n, lr, wd, mu, damp);
  else if (a.first && a.nesterov) sgd_kernel<true, true, true><<<blocks, kBlock, 0, stream()>>>(p, g, buf, n, lr, wd, mu, damp);
  else if (a.first) sgd_kernel<true, true, false><<<blocks, kBlock, 0, stream()>>>(p, g, buf, n, lr, wd, mu, damp);
  else if (a.nesterov) sgd_kernel<true, false, true><<<blocks, kBlock, 0, stream()>>>(p, g, buf, n, lr, wd, mu, damp);
  else sgd_kernel<true, false, false><<<blocks, kBlock, 0, stream()>>>(p, g, buf, n, lr, wd, mu, damp);
  check_launch("sgd kernel");
}

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamwArgs& a) {
  activate();
  if (!n) return;
  const double t = static_cast<double>(a.step);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta1), t));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(a.beta2), t)));
  const float step_size = a.lr / bc1, decay = 1.0f - a.lr * a.weight_decay;
  adamw_kernel<<<stride_grid(n), kBlock, 0, stream()>>>(p, g, m, v, n, a.beta1, a.beta2, decay, step_size, bc2_sqrt, a.eps);
  check_launch("adamw kernel");
}

double sum_squares(const float* x, int64_t n) {
  activate();
  if (!n) return 0.0;
  DevPtr part = alloc(kSumBlocks * sizeof(double));
  sum_squares_kernel<<<kSumBlocks, kBlock, 0, stream()>>>(x, n, part->as<double>());
  check_launch("sum_squares kernel");
  std::vector<double> h(kSumBlocks);
  download(h.data(), part->ptr(), h.size() * sizeof(double));
  double s = 0;
  for (double v : h) s += v;
  return s;
}

void scale_inplace(float* x, float s, int64_t n) {
  activate();
  if (!n) return;
  scale_kernel<<<stride_grid(n), kBlock, 0, stream()>>>(x, s, n);
  check_launch("scale kernel");
}

}  // namespace nms::cuda
