// A chain of Linear layers in one native call: y = layer_L(… layer_1(x)), each layer x·Wᵀ + bias, then ReLU when
// asked. The per-layer trip through JavaScript and N-API (argument checks, an options object read by name: about
// 30 µs a layer on Zen 4, as much as a 784x1024 product at one row) is paid once per forward instead.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace nms::cpu {

// One layer, float32, W [n, k] (the Linear layout). Dense (positions null): w is W and packed, optionally, W packed
// by gemm_pack_b for ISA packed_isa (used where gemm() would use it for a plain GemmArgs). N:M sparse (positions
// set): w is the compressed values, positions theirs (core/nm_format.h), nm_n:nm_m the pattern, and packed,
// optionally, spmm_pack's copy (packed_isa unused): the arguments nm.linear passes to spmm().
struct MlpLayer {
  const float* w;
  const float* packed; int packed_isa;  // packed may be null
  const float* bias;                    // n values, or null
  int64_t n, k;
  bool relu;
  const uint8_t* positions;             // null for a dense layer
  int nm_n, nm_m;
};

// out [m, layers[last-1].n] = layers [first, last) on x [m, layers[first].k] (layer i's k is layer i-1's n). The
// intermediate results live in per-thread scratch of the calling thread; each layer runs gemm() or spmm() (then
// relu_forward, as nm.linear's activation does) with exactly the arguments a per-layer call would pass, so the
// result is the per-layer calls' bit for bit.
void mlp_forward(const std::vector<MlpLayer>& layers, size_t first, size_t last, const float* x, int64_t m, float* out);

}  // namespace nms::cpu
