#include "cpu/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/threadpool.h"

namespace nms::cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per chunk for streaming kernels

// Grain in rows so that a chunk holds about kGrain elements.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)); }

// Column blocks of 64 floats: column-wise sums run over blocks so each block's sum is computed by one thread in
// row order (deterministic, whatever the thread count) while reading contiguous 256-byte segments.
constexpr int64_t kColBlock = 64;

}  // namespace

void bias_add(float* y, const float* b, int64_t rows, int64_t cols) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* yr = y + r * cols;
      for (int64_t c = 0; c < cols; ++c) yr[c] += b[c];
    }
  });
}

void bias_grad(const float* dy, int64_t rows, int64_t cols, float* db) {
  const int64_t blocks = (cols + kColBlock - 1) / kColBlock;
  parallel_for(blocks, std::max<int64_t>(1, kGrain / std::max<int64_t>(rows * kColBlock, 1)), [&](int64_t b0, int64_t b1) {
    float acc[kColBlock];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * kColBlock, w = std::min(kColBlock, cols - c0);
      std::fill(acc, acc + w, 0.0f);
      for (int64_t r = 0; r < rows; ++r) {
        const float* d = dy + r * cols + c0;
        for (int64_t j = 0; j < w; ++j) acc[j] += d[j];
      }
      std::memcpy(db + c0, acc, static_cast<size_t>(w) * sizeof(float));
    }
  });
}

void relu_forward(const float* x, float* y, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
  });
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
  });
}

void gelu_forward(const float* x, float* y, int64_t n) {
  parallel_for(n, kGrain / 4, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float v = x[i];
      y[i] = 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
    }
  });
}

void gelu_backward(const float* dy, const float* x, float* dx, int64_t n) {
  parallel_for(n, kGrain / 4, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float v = x[i];
      const float cdf = 0.5f * (1.0f + std::erf(v * 0.70710678118654752f));
      const float pdf = 0.39894228040143268f * std::exp(-0.5f * v * v);
      dx[i] = dy[i] * (cdf + v * pdf);
    }
  });
}

void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t rows, int64_t cols, float eps) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += xr[c];
      const double mu = s / static_cast<double>(cols);
      double v = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double d = xr[c] - mu;
        v += d * d;
      }
      const float m = static_cast<float>(mu);
      const float rs = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(cols) + eps));
      mean[r] = m;
      rstd[r] = rs;
      float* yr = y + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        const float h = (xr[c] - m) * rs;
        yr[c] = gamma ? h * gamma[c] + (beta ? beta[c] : 0.0f) : h + (beta ? beta[c] : 0.0f);
      }
    }
  });
}

void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                        float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  // Parameter gradients first: dx may alias dy.
  if (dgamma || dbeta) {
    const int64_t blocks = (cols + kColBlock - 1) / kColBlock;
    parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
      float ag[kColBlock], ab[kColBlock];
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t c0 = b * kColBlock, w = std::min(kColBlock, cols - c0);
        std::fill(ag, ag + w, 0.0f);
        std::fill(ab, ab + w, 0.0f);
        for (int64_t r = 0; r < rows; ++r) {
          const float* d = dy + r * cols + c0;
          const float* xr = x + r * cols + c0;
          const float m = mean[r], rs = rstd[r];
          for (int64_t j = 0; j < w; ++j) {
            ag[j] += d[j] * (xr[j] - m) * rs;
            ab[j] += d[j];
          }
        }
        if (dgamma) std::memcpy(dgamma + c0, ag, static_cast<size_t>(w) * sizeof(float));
        if (dbeta) std::memcpy(dbeta + c0, ab, static_cast<size_t>(w) * sizeof(float));
      }
    });
  }
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* d = dy + r * cols;
      const float* xr = x + r * cols;
      const float m = mean[r], rs = rstd[r];
      double s1 = 0, s2 = 0;  // Σ dx̂ and Σ dx̂·x̂
      for (int64_t c = 0; c < cols; ++c) {
        const float g = gamma ? d[c] * gamma[c] : d[c];
        s1 += g;
        s2 += static_cast<double>(g) * ((xr[c] - m) * rs);
      }
      const float a = static_cast<float>(s1 / static_cast<double>(cols));
      const float b = static_cast<float>(s2 / static_cast<double>(cols));
      float* o = dx + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        const float g = gamma ? d[c] * gamma[c] : d[c];
        o[c] = rs * (g - a - (xr[c] - m) * rs * b);
      }
    }
  });
}

XentResult softmax_xent_forward(const float* logits, const int32_t* labels, float* probs, int64_t rows,
                                int64_t cols, float label_smoothing) {
  std::vector<double> loss(static_cast<size_t>(rows));
  std::vector<uint8_t> hit(static_cast<size_t>(rows));
  const double eps = label_smoothing;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* z = logits + r * cols;
      float* p = probs + r * cols;
      int64_t arg = 0;
      float mx = z[0];
      for (int64_t c = 1; c < cols; ++c)
        if (z[c] > mx || (z[c] != z[c] && mx == mx)) { mx = z[c]; arg = c; }
      double sum = 0, sumz = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const float e = std::exp(z[c] - mx);
        p[c] = e;
        sum += e;
        sumz += z[c];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t c = 0; c < cols; ++c) p[c] *= inv;
      const int32_t y = labels[r];
      const double lse = mx + std::log(sum);  // log Σ exp z
      // −Σ q·log p = (1−ε)(lse − z_y) + ε·(lse − mean z)
      loss[r] = (1.0 - eps) * (lse - z[y]) + eps * (lse - sumz / static_cast<double>(cols));
      hit[r] = arg == y;
    }
  });
  XentResult res{0.0, 0};
  for (int64_t r = 0; r < rows; ++r) {
    res.loss_sum += loss[r];
    res.correct += hit[r];
  }
  return res;
}

void softmax_xent_backward(const float* probs, const int32_t* labels, float* dlogits, int64_t rows, int64_t cols,
                           float label_smoothing, float scale) {
  const float off = label_smoothing / static_cast<float>(cols), on = 1.0f - label_smoothing + off;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* p = probs + r * cols;
      float* d = dlogits + r * cols;
      const int32_t y = labels[r];
      for (int64_t c = 0; c < cols; ++c) d[c] = (p[c] - (c == y ? on : off)) * scale;
    }
  });
}

void im2col(const float* x, const Window2d& g, float* cols) {
  const int64_t rows = g.batch * g.oh * g.ow, width = g.kh * g.kw * g.c;
  const size_t cbytes = static_cast<size_t>(g.c) * sizeof(float);
  parallel_for(rows, row_grain(width), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / (g.oh * g.ow), rem = r % (g.oh * g.ow), oy = rem / g.ow, ox = rem % g.ow;
      float* dst = cols + r * width;
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        const int64_t iy = oy * g.stride_h - g.pad_h + ky;
        for (int64_t kx = 0; kx < g.kw; ++kx, dst += g.c) {
          const int64_t ix = ox * g.stride_w - g.pad_w + kx;
          if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) std::memset(dst, 0, cbytes);
          else std::memcpy(dst, x + ((b * g.h + iy) * g.w + ix) * g.c, cbytes);
        }
      }
    }
  });
}

void col2im(const float* cols, const Window2d& g, float* dx) {
  const int64_t width = g.kh * g.kw * g.c, image = g.h * g.w * g.c;
  // One image per task: patches of different images never overlap, so there is no race.
  parallel_for(g.batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      float* img = dx + b * image;
      std::fill(img, img + image, 0.0f);
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const float* src = cols + ((b * g.oh + oy) * g.ow + ox) * width;
          for (int64_t ky = 0; ky < g.kh; ++ky) {
            const int64_t iy = oy * g.stride_h - g.pad_h + ky;
            for (int64_t kx = 0; kx < g.kw; ++kx, src += g.c) {
              const int64_t ix = ox * g.stride_w - g.pad_w + kx;
              if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
              float* d = img + (iy * g.w + ix) * g.c;
              for (int64_t c = 0; c < g.c; ++c) d[c] += src[c];
            }
          }
        }
    }
  });
}

void maxpool_forward(const float* x, const Window2d& g, float* y, int32_t* argmax) {
  const int64_t rows = g.batch * g.oh * g.ow;
  parallel_for(rows, row_grain(g.c * g.kh * g.kw), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / (g.oh * g.ow), rem = r % (g.oh * g.ow), oy = rem / g.ow, ox = rem % g.ow;
      float* yr = y + r * g.c;
      int32_t* ar = argmax + r * g.c;
      for (int64_t c = 0; c < g.c; ++c) { yr[c] = -INFINITY; ar[c] = -1; }
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        const int64_t iy = oy * g.stride_h - g.pad_h + ky;
        if (iy < 0 || iy >= g.h) continue;
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          const int64_t ix = ox * g.stride_w - g.pad_w + kx;
          if (ix < 0 || ix >= g.w) continue;
          const int64_t base = ((b * g.h + iy) * g.w + ix) * g.c;
          const float* xr = x + base;
          for (int64_t c = 0; c < g.c; ++c) {
            const float v = xr[c];
            // First maximum wins; NaN beats everything (and the first NaN stays).
            if (ar[c] < 0 || v > yr[c] || (v != v && yr[c] == yr[c])) {
              yr[c] = v;
              ar[c] = static_cast<int32_t>(base + c);
            }
          }
        }
      }
    }
  });
}

void maxpool_backward(const float* dy, const int32_t* argmax, const Window2d& g, float* dx) {
  const int64_t image = g.h * g.w * g.c, per_out = g.oh * g.ow * g.c;
  parallel_for(g.batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      std::fill(dx + b * image, dx + (b + 1) * image, 0.0f);
      const float* d = dy + b * per_out;
      const int32_t* a = argmax + b * per_out;
      // An index outside this image (never produced by maxpool_forward) is skipped, not written.
      for (int64_t i = 0; i < per_out; ++i)
        if (a[i] >= b * image && a[i] < (b + 1) * image) dx[a[i]] += d[i];
    }
  });
}

void dropout_apply(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t offset) {
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      y[i] = dropout_uniform(seed, offset + static_cast<uint64_t>(i)) >= p ? x[i] * scale : 0.0f;
  });
}

void masked_scale(const float* x, const uint8_t* mask, float alpha, float* y, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    if (alpha == 0.0f) {
      for (int64_t i = i0; i < i1; ++i) y[i] = mask[i] ? x[i] : 0.0f;
    } else {
      for (int64_t i = i0; i < i1; ++i) y[i] = mask[i] ? x[i] : alpha * x[i];
    }
  });
}

void masked_add(float* g, const float* w, const uint8_t* mask, float lambda, int64_t n) {
  if (lambda == 0.0f) return;  // exactly the unmodified gradient (no −0 + 0 or 0·inf surprises)
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      if (!mask[i]) g[i] += lambda * w[i];
  });
}

}  // namespace nms::cpu
