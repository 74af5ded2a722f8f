#include "cpu/optim.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/threadpool.h"
#include "cpu/elementwise.h"  // NMS_CLONES


namespace nms::cpu {
namespace {
constexpr int64_t kGrain = 1 << 14;

// The gradient the update uses: g, or with Term SR-STE's g + λ·(1 − m)⊙p read on the fly (the same arithmetic as
// masked_add in elementwise.cc, so that the fused step matches the separate pass bit for bit).
template <bool Term>
inline float grad_at(const float* g, const float* p, const uint8_t* m, float lambda, int64_t i) {
  if (!Term) return g[i];
  const float add = g[i] + lambda * p[i];
  return m[i] ? g[i] : add;
}
template <bool Term>
NMS_CLONES void sgd_plain(float* p, const float* g, const uint8_t* m, float lambda, int64_t n, float lr, float wd) {
  for (int64_t i = 0; i < n; ++i) p[i] -= lr * (grad_at<Term>(g, p, m, lambda, i) + wd * p[i]);
}
// One momentum update; `first` and `nesterov` are constant per call.
template <bool Term, bool First, bool Nesterov>
NMS_CLONES void sgd_momentum(float* p, const float* g, const uint8_t* m, float lambda, float* buf, int64_t n, float lr,
                             float wd, float mu, float damp) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = grad_at<Term>(g, p, m, lambda, i) + wd * p[i];
    const float b = First ? d : mu * buf[i] + damp * d;
    buf[i] = b;
    p[i] -= lr * (Nesterov ? d + mu * b : b);
  }
}
template <bool Term>
NMS_CLONES void adamw_range(float* p, const float* g, const uint8_t* mask, float lambda, float* m, float* v, int64_t n,
                            float b1, float b2, float decay, float step_size, float bc2_sqrt, float eps) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = grad_at<Term>(g, p, mask, lambda, i);
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
  }
}
template <bool Term>
void sgd_span(float* p, const float* g, const uint8_t* m, float lambda, float* buf, int64_t n, float lr, float wd,
              float mu, float damp, bool first, bool nesterov) {
  if (mu == 0.0f) sgd_plain<Term>(p, g, m, lambda, n, lr, wd);
  else if (first) nesterov ? sgd_momentum<Term, true, true>(p, g, m, lambda, buf, n, lr, wd, mu, damp) : sgd_momentum<Term, true, false>(p, g, m, lambda, buf, n, lr, wd, mu, damp);
  else nesterov ? sgd_momentum<Term, false, true>(p, g, m, lambda, buf, n, lr, wd, mu, damp) : sgd_momentum<Term, false, false>(p, g, m, lambda, buf, n, lr, wd, mu, damp);
}
NMS_CLONES void scale_range(float* x, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}
}  // namespace

void sgd_step(float* p, const float* g, float* buf, int64_t n, const SgdArgs& a, const uint8_t* mask, float lambda) {
  const float lr = a.lr, mu = a.momentum, damp = 1.0f - a.dampening, wd = a.weight_decay;
  const bool term = mask && lambda != 0.0f;  // as masked_add: λ = 0 leaves g exactly as it is
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    float *pp = p + i0, *bb = buf ? buf + i0 : nullptr;
    const float* gg = g + i0;
    const uint8_t* mm = term ? mask + i0 : nullptr;
    if (term) sgd_span<true>(pp, gg, mm, lambda, bb, i1 - i0, lr, wd, mu, damp, a.first, a.nesterov);
    else sgd_span<false>(pp, gg, mm, lambda, bb, i1 - i0, lr, wd, mu, damp, a.first, a.nesterov);
  });
}

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamwArgs& a, const uint8_t* mask,
                float lambda) {
  const double t = static_cast<double>(a.step);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta1), t));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(a.beta2), t)));
  const float step_size = a.lr / bc1, decay = 1.0f - a.lr * a.weight_decay;
  const float b1 = a.beta1, b2 = a.beta2, eps = a.eps;
  const bool term = mask && lambda != 0.0f;
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    if (term) adamw_range<true>(p + i0, g + i0, mask + i0, lambda, m + i0, v + i0, i1 - i0, b1, b2, decay, step_size, bc2_sqrt, eps);
    else adamw_range<false>(p + i0, g + i0, nullptr, lambda, m + i0, v + i0, i1 - i0, b1, b2, decay, step_size, bc2_sqrt, eps);
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
