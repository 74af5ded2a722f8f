#include "cpu/optim.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/threadpool.h"
#include "cpu/elementwise.h"  // NMS_CLONES


namespace nms::cpu {
namespace {
constexpr int64_t kGrain = 1 << 14;

NMS_CLONES void sgd_plain(float* p, const float* g, int64_t n, float lr, float wd) {
  for (int64_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + wd * p[i]);
}
// One momentum update; `first` and `nesterov` are constant per call.
template <bool First, bool Nesterov>
NMS_CLONES void sgd_momentum(float* p, const float* g, float* buf, int64_t n, float lr, float wd, float mu, float damp) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = g[i] + wd * p[i];
    const float b = First ? d : mu * buf[i] + damp * d;
    buf[i] = b;
    p[i] -= lr * (Nesterov ? d + mu * b : b);
  }
}
NMS_CLONES void adamw_range(float* p, const float* g, float* m, float* v, int64_t n, float b1, float b2, float decay,
                            float step_size, float bc2_sqrt, float eps) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
  }
}
NMS_CLONES void scale_range(float* x, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}
}  // namespace

void sgd_step(float* p, const float* g, float* buf, int64_t n, const SgdArgs& a) {
  const float lr = a.lr, mu = a.momentum, damp = 1.0f - a.dampening, wd = a.weight_decay;
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    float *pp = p + i0, *bb = buf ? buf + i0 : nullptr;
    const float* gg = g + i0;
    const int64_t len = i1 - i0;
    if (mu == 0.0f) sgd_plain(pp, gg, len, lr, wd);
    else if (a.first) a.nesterov ? sgd_momentum<true, true>(pp, gg, bb, len, lr, wd, mu, damp) : sgd_momentum<true, false>(pp, gg, bb, len, lr, wd, mu, damp);
    else a.nesterov ? sgd_momentum<false, true>(pp, gg, bb, len, lr, wd, mu, damp) : sgd_momentum<false, false>(pp, gg, bb, len, lr, wd, mu, damp);
  });
}

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamwArgs& a) {
  const double t = static_cast<double>(a.step);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta1), t));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(a.beta2), t)));
  const float step_size = a.lr / bc1, decay = 1.0f - a.lr * a.weight_decay;
  const float b1 = a.beta1, b2 = a.beta2, eps = a.eps;
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    adamw_range(p + i0, g + i0, m + i0, v + i0, i1 - i0, b1, b2, decay, step_size, bc2_sqrt, eps);
  });
}

double sum_squares(const float* x, int64_t n) {
  // Fixed-size blocks summed in order: the result does not depend on how the pool splits the work.
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(blocks));
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double s = 0;
      for (int64_t i = b * kBlock, e = std::min(n, i + kBlock); i < e; ++i) s += static_cast<double>(x[i]) * x[i];
      part[b] = s;
    }
  });
  double s = 0;
  for (double v : part) s += v;
  return s;
}

void scale_inplace(float* x, float s, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { scale_range(x + i0, s, i1 - i0); });
}

}  // namespace nms::cpu
