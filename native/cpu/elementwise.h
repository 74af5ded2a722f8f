// Training kernels on the CPU (docs/design.md §7): bias, activations, LayerNorm, softmax cross-entropy, im2col/col2im,
// max pooling, dropout and the recipes' masked terms. float32 throughout, row-major, multi-threaded on the pool
// (core/threadpool.h). Reductions are split by column block or by row, never by thread, so every result is
// the same whatever the thread count. Nothing here validates: the N-API layer has checked sizes and aliasing.
#pragma once
#include <cstdint>

#include "core/hd.h"
#include "core/train_types.h"

// Streaming loops of the training kernels (here and in optim.cc) are compiled for AVX-512, AVX2 and baseline
// x86-64 and picked at load time (GCC/clang function multi-versioning); elsewhere they are plain loops. They are
// written branch-free (selects, not conditional stores) so that every version vectorises.
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && defined(__linux__)
#define NMS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NMS_CLONES
#endif

namespace nms::cpu {

// ---- bias ----
// y[r, c] += b[c] for a [rows, cols] y.
void bias_add(float* y, const float* b, int64_t rows, int64_t cols);
// db[c] = Σ_r dy[r, c].
void bias_grad(const float* dy, int64_t rows, int64_t cols, float* db);

// ---- sums and embeddings ----
// y = a + b (the residual connections). y may alias a or b.
void add(const float* a, const float* b, float* y, int64_t n);
// out[r, :] = table[ids[r], :] (or += with accumulate) for rows r; ids are float32 holding integers in
// [0, vocab) (checked by the N-API layer), table [vocab, dim].
void embedding_forward(const float* ids, const float* table, float* out, int64_t rows, int64_t vocab, int64_t dim,
                       bool accumulate);
// dtable[v, :] = Σ_{r : ids[r] = v} dy[r, :] (rows in order; added to dtable's contents with accumulate, else
// dtable is overwritten, zero for ids that do not occur).
void embedding_backward(const float* dy, const float* ids, float* dtable, int64_t rows, int64_t vocab, int64_t dim,
                        bool accumulate);

// ---- activations (y may alias x, dx may alias dy) ----
void relu_forward(const float* x, float* y, int64_t n);
// dx = dy where y > 0 else 0 (y is the forward output; y > 0 exactly where x > 0).
void relu_backward(const float* dy, const float* y, float* dx, int64_t n);
// GELU with the exact erf form: y = x·Φ(x) = x/2·(1 + erf(x/√2)) (Φ to ~1e-7 relative, cpu/vmath.h).
void gelu_forward(const float* x, float* y, int64_t n);
// dx = dy·(Φ(x) + x·φ(x)), from the forward input x.
void gelu_backward(const float* dy, const float* x, float* dx, int64_t n);

// ---- LayerNorm over the last dimension ----
// y = (x − μ)·rstd·γ + β per row; saves μ and rstd = 1/√(σ² + eps) (biased variance, like PyTorch).
// gamma/beta may be null (no affine part). y may alias x.
void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t rows, int64_t cols, float eps);
// dx from dy and the saved statistics; dgamma/dbeta (when not null) are overwritten with Σ over rows.
void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                        float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols);

// ---- softmax cross-entropy (mean over the rows that have a label) ----
using ::nms::XentResult;  // core/train_types.h, shared with cuda/train.h
using ::nms::kIgnoreLabel;
// probs = softmax(logits) per row (every row); q = (1 − ε)·onehot(label) + ε/cols. Labels are in [0, cols) or
// kIgnoreLabel.
XentResult softmax_xent_forward(const float* logits, const int32_t* labels, float* probs, int64_t rows,
                                int64_t cols, float label_smoothing);
// dlogits = (probs − q)·scale (scale = 1/labelled rows for the mean loss), 0 on ignored rows. dlogits may alias probs.
void softmax_xent_backward(const float* probs, const int32_t* labels, float* dlogits, int64_t rows, int64_t cols,
                           float label_smoothing, float scale);

// ---- images, NHWC ----
using ::nms::Window2d;  // core/train_types.h, shared with cuda/train.h
// cols [batch·oh·ow, kh·kw·c]: row (b, oy, ox) holds the patch in (ky, kx, ci) order, ci fastest, zeros where
// the window leaves the image. With a weight stored [co, kh, kw, ci], conv = cols · Wᵀ → [batch·oh·ow, co] NHWC.
void im2col(const float* x, const Window2d& g, float* cols);
// dx = the sum of each patch gradient back into its input positions (dx fully overwritten).
void col2im(const float* cols, const Window2d& g, float* dx);
// y [batch, oh, ow, c] = max over the window (positions outside the image are skipped); argmax holds the flat
// input index of the first maximum (NaN wins, so it propagates), relative to the whole input.
void maxpool_forward(const float* x, const Window2d& g, float* y, int32_t* argmax);
// dx = 0, then dx[argmax[i]] += dy[i].
void maxpool_backward(const float* dy, const int32_t* argmax, const Window2d& g, float* dx);

// ---- dropout ----
// Counter-based: element i is kept iff dropout_uniform(seed, offset + i) >= p, so the backward pass recomputes
// the same mask from (seed, offset) and nothing is stored. y = kept ? x/(1 − p) : 0. The same function is the
// backward (apply it to dy). y may alias x.
void dropout_apply(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t offset);
// The uniform in [0, 1) used for element `counter`: the top 24 bits of splitmix64(seed ⊕ splitmix64(counter)),
// times 2⁻²⁴. Host and device code (cuda/elementwise.cu) both call these, so the masks are bit-identical.
NMS_HD uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
NMS_HD float dropout_uniform(uint64_t seed, uint64_t counter) {
  return static_cast<float>(splitmix64(seed ^ splitmix64(counter)) >> 40) * (1.0f / 16777216.0f);
}

// ---- the recipes' masked terms (docs/design.md §6); mask bytes: non-zero = kept ----
// y = m ? x : α·x, i.e. x ⊙ (m + (1 − m)·α). α = 0 gives x ⊙ m. y may alias x.
void masked_scale(const float* x, const uint8_t* mask, float alpha, float* y, int64_t n);
// g += λ·(1 − m) ⊙ w (the SR-STE sparse-refined term).
void masked_add(float* g, const float* w, const uint8_t* mask, float lambda, int64_t n);
// The recipes' mask refresh in one pass over a float32 [rows, cols] weight: mask = the N:M mask of w (the same
// selection as nm_mask: top-N |w| per group of m along cols, ties to the lower index, NaN largest; m in {4, 8,
// 16, 32}, cols % m == 0) and eff = w ⊙ (mask + (1 − mask)·α). eff must not alias w.
void nm_mask_scale(const float* w, int64_t rows, int64_t cols, int n, int m, float alpha, uint8_t* mask, float* eff);
// The training step's one pass over a weight whose forward is exactly N:M (α = 0): the mask and eff = w ⊙ m as
// nm_mask_scale (or, without `select`, the mask as given: exactly n kept per group), the compressed form of eff
// (values [rows, cols·n/m], positions: core/nm_format.h) for the N:M products, and, when selecting with
// count_sad, the number of mask entries that changed from what `mask` held before (the step's SAD), returned.
// eff may be null: then only the mask and the compressed form are written.
int64_t nm_train_pass(const float* w, int64_t rows, int64_t cols, int n, int m, uint8_t* mask, bool select,
                      bool count_sad, float* eff, float* values, uint8_t* positions);

}  // namespace nms::cpu
