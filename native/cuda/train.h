// Training kernels on the GPU (docs/design.md §7): the CUDA twins of native/cpu/elementwise.h and native/cpu/optim.h, with
// the same formulas and argument meanings (see those headers for each contract). float32, device pointers,
// enqueued on cuda::stream(). Column sums (bias / LayerNorm parameter gradients) and col2im / max-pool backward
// add in the CPU's order (rows ascending, output positions ascending), so those results match the CPU bit for bit;
// row reductions (LayerNorm, softmax) use float64 tree sums and match it to rounding.
#pragma once
#include <cstdint>

#include "core/train_types.h"

namespace nms::cuda {

// The argument and result structs are the CPU's (core/train_types.h).
using ::nms::AdamwArgs;
using ::nms::SgdArgs;
using ::nms::Window2d;
using ::nms::XentResult;

void bias_add(float* y, const float* b, int64_t rows, int64_t cols);
void bias_grad(const float* dy, int64_t rows, int64_t cols, float* db);
void add(const float* a, const float* b, float* y, int64_t n);
// A bad id gives a NaN row (forward) or is skipped (backward); repeated ids sum with atomics, in no fixed order.
void embedding_forward(const float* ids, const float* table, float* out, int64_t rows, int64_t vocab, int64_t dim,
                       bool accumulate);
void embedding_backward(const float* dy, const float* ids, float* dtable, int64_t rows, int64_t vocab, int64_t dim,
                        bool accumulate);
void relu_forward(const float* x, float* y, int64_t n);
void relu_backward(const float* dy, const float* y, float* dx, int64_t n);
void gelu_forward(const float* x, float* y, int64_t n);
void gelu_backward(const float* dy, const float* x, float* dx, int64_t n);
void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t rows, int64_t cols, float eps);
void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                        float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols);
// Writes per-row losses (float64) and hits into device scratch and returns their sums (synchronizes).
XentResult softmax_xent_forward(const float* logits, const int32_t* labels, float* probs, int64_t rows, int64_t cols,
                                float label_smoothing);
void softmax_xent_backward(const float* probs, const int32_t* labels, float* dlogits, int64_t rows, int64_t cols,
                           float label_smoothing, float scale);

void im2col(const float* x, const Window2d& g, float* cols);
void col2im(const float* cols, const Window2d& g, float* dx);
void maxpool_forward(const float* x, const Window2d& g, float* y, int32_t* argmax);
void maxpool_backward(const float* dy, const int32_t* argmax, const Window2d& g, float* dx);

void dropout_apply(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t offset);
void masked_scale(const float* x, const uint8_t* mask, float alpha, float* y, int64_t n);
void masked_add(float* g, const float* w, const uint8_t* mask, float lambda, int64_t n);
void nm_mask_scale(const float* w, int64_t rows, int64_t cols, int n, int m, float alpha, uint8_t* mask, float* eff);
// cpu::nm_train_pass on the device, with the same mask, eff and portable form (values, positions: zeroed by the
// caller and 4-byte padded, as alloc_zeroed() gives). The SAD is not returned (that would wait for the GPU): when
// selecting with `sad` non-null, the changed mask entries are added to the device counter *sad (zeroed by the
// caller); without selection *sad is untouched.
void nm_train_pass(const float* w, int64_t rows, int64_t cols, int n, int m, uint8_t* mask, bool select, float* eff,
                   float* values, uint8_t* positions, unsigned long long* sad);

// ---- optim.cu ----
void sgd_step(float* p, const float* g, float* buf, int64_t n, const SgdArgs& a);
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamwArgs& a);
// Σ x² in float64, deterministic (fixed partition); synchronizes.
double sum_squares(const float* x, int64_t n);
void scale_inplace(float* x, float s, int64_t n);

// ---- attention.cu: causal self-attention, the contract of cpu/attention.h ----
struct AttentionShape {
  int64_t batch, t, heads, hd;
  float p;
  uint64_t seed, offset;
};
void attention_forward(const float* qkv, const AttentionShape& s, float* out, float* probs);
void attention_backward(const float* dout, const float* qkv, const AttentionShape& s, float* probs, float* dqkv);

}  // namespace nms::cuda
