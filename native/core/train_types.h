// The argument and result structs of the training kernels, one definition for native/cpu and native/cuda (both
// backends take the same arguments with the same meaning; cpu/elementwise.h and cpu/optim.h state the formulas).
#pragma once
#include <cstdint>

namespace nms {

// ---- softmax cross-entropy (mean over the rows that have a label) ----
// A label of kIgnoreLabel marks a row without one (padding, as PyTorch's ignore_index): it adds nothing to the
// loss, to `correct` or to `counted`, and its gradient is zero.
constexpr int32_t kIgnoreLabel = -1;
struct XentResult {
  double loss_sum;   // Σ over labelled rows of −Σ_c q_c·log p_c
  int64_t correct;   // labelled rows whose argmax (first maximum) equals the label
  int64_t counted;   // labelled rows
};

// ---- images, NHWC ----
struct Window2d {
  int64_t batch, h, w, c;       // input [batch, h, w, c]
  int64_t kh, kw;               // window
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;         // zero padding (conv) / ignored positions (pool)
  int64_t oh, ow;               // output size = (h + 2·pad − k) / stride + 1
};

// ---- optimizers ----
struct SgdArgs {
  float lr = 0.01f, momentum = 0.0f, dampening = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
  bool first = false;  // the first step with this momentum buffer: buf = d (PyTorch's clone on first use)
};
struct AdamwArgs {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 1e-2f;
  int64_t step = 1;  // 1-based step count, for the bias corrections
};

}  // namespace nms
