// Causal multi-head self-attention on the CPU (docs/design.md §7), the op between a Transformer block's fused
// c_attn projection and its c_proj: float32, row-major, threaded over (batch, head) on the pool
// (core/threadpool.h). Every (batch, head) is computed by one thread in a fixed order, so results do not depend
// on the thread count. Nothing here validates: napi/attention.cc has checked sizes and aliasing.
#pragma once
#include <cstdint>

namespace nms::cpu {

// Shapes: qkv [batch·t, 3·d] (row r = (b, i): q, then k, then v, each d = heads·hd wide, head h at columns
// h·hd…), out [batch·t, d] (heads concatenated), probs [batch, heads, t, t].
struct AttentionShape {
  int64_t batch, t, heads, hd;
  float p;          // dropout probability on the attention probabilities (0: none)
  uint64_t seed;    // dropout: probability (b, h, i, j) is kept iff dropout_uniform(seed, offset + ((b·H + h)·t + i)·t + j) >= p
  uint64_t offset;
};

// probs[b, h, i, j] = softmax_j(q_i·k_j / √hd) for j <= i, 0 for j > i; out_i = Σ_j drop(probs)_ij·v_j, where
// drop() zeroes the dropped probabilities and scales the kept ones by 1/(1 − p).
void attention_forward(const float* qkv, const AttentionShape& s, float* out, float* probs);

// dqkv from dout and the forward's qkv and probs. probs is overwritten with the gradient of the scores
// (before the 1/√hd scale is applied to q·k), which backward needs no more after reading it.
void attention_backward(const float* dout, const float* qkv, const AttentionShape& s, float* probs, float* dqkv);

}  // namespace nms::cpu
