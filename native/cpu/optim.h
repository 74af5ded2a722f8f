// Optimizer updates on the CPU (docs/design.md §7): SGD with momentum / Nesterov / weight decay and AdamW, with the
// semantics of PyTorch's torch.optim.SGD and torch.optim.AdamW (foreach=False), in float32, in place,
// multi-threaded on the pool. Nothing here validates: the N-API layer has checked the sizes.
#pragma once
#include <cstdint>

#include "core/train_types.h"

namespace nms::cpu {

using ::nms::SgdArgs;  // core/train_types.h, shared with cuda/train.h
using ::nms::AdamwArgs;

// d = g + wd·p; with momentum: buf = first ? d : μ·buf + (1 − dampening)·d, then d = nesterov ? d + μ·buf : buf;
// p −= lr·d. buf may be null when momentum == 0.
// With a mask (uint8, 1 = kept) and λ ≠ 0, g is read as SR-STE's g + λ·(1 − m)⊙p (p before this step): the term
// fused into the step instead of a separate pass over g (cpu::masked_add, with which it agrees bit for bit).
void sgd_step(float* p, const float* g, float* buf, int64_t n, const SgdArgs& a, const uint8_t* mask = nullptr,
              float lambda = 0.0f);

// p ·= 1 − lr·wd; m = β1·m + (1 − β1)·g; v = β2·v + (1 − β2)·g²;
// p −= lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + eps).
// mask and λ as sgd_step's.
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamwArgs& a,
                const uint8_t* mask = nullptr, float lambda = 0.0f);

// Σ x² in double (for gradient-norm clipping); deterministic whatever the thread count.
double sum_squares(const float* x, int64_t n);
// x ·= s.
void scale_inplace(float* x, float s, int64_t n);

}  // namespace nms::cpu
