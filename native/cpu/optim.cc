#include "cpu/optim.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/threadpool.h"

namespace nms::cpu {
namespace {
constexpr int64_t kGrain = 1 << 14;
}  // namespace

void sgd_step(float* p, const float* g, float* buf, int64_t n, const SgdArgs& a) {
  const float lr = a.lr, mu = a.momentum, damp = 1.0f - a.dampening, wd = a.weight_decay;
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float d = g[i];
      if (wd != 0.0f) d += wd * p[i];
      if (mu != 0.0f) {
        const float b = a.first ? d : mu * buf[i] + damp * d;
        buf[i] = b;
        d = a.nesterov ? d + mu * b : b;
      }
      p[i] -= lr * d;
    }
  });
}

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamwArgs& a) {
  const double t = static_cast<double>(a.step);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta1), t));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(a.beta2), t)));
  const float step_size = a.lr / bc1, decay = 1.0f - a.lr * a.weight_decay;
  const float b1 = a.beta1, b2 = a.beta2, eps = a.eps;
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float gi = g[i];
      const float mi = b1 * m[i] + (1.0f - b1) * gi;
      const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
    }
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
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) x[i] *= s;
  });
}

}  // namespace nms::cpu
