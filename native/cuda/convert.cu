// Float dtype conversion on the GPU: the CUDA twin of cpu::convert for the float dtypes (float32, float16,
// bfloat16; bit for bit like the CPU's core/dtype.h: round to nearest even, NaN by its rule below, not the
// canonical NaN of CUDA's cvt). Mixed-precision training (lib/nn/amp.ts) casts a product's operands to 16 bits and
// its result back to float32 with it: one kernel each way.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/device.h"
#include "cuda/ops.h"

namespace nms::cuda {
namespace {

constexpr int kBlock = 256;

template <class S>
__device__ __forceinline__ float load(const S* p, int64_t i);
template <>
__device__ __forceinline__ float load<float>(const float* p, int64_t i) { return p[i]; }
// NaN (docs/design.md §7, core/dtype.h): widening keeps the bits (sign, payload); float32 -> float16 keeps the
// sign (sign | 0x7e00); float32 -> bfloat16 keeps the sign and the payload's top bits and sets the quiet bit.
template <>
__device__ __forceinline__ float load<__half>(const __half* p, int64_t i) {
  const unsigned h = __half_as_ushort(p[i]);
  if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) return __uint_as_float(((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13));
  return __half2float(p[i]);
}
template <>
__device__ __forceinline__ float load<__nv_bfloat16>(const __nv_bfloat16* p, int64_t i) {
  return __uint_as_float(static_cast<unsigned>(__bfloat16_as_ushort(p[i])) << 16);  // exact for every value
}

template <class D>
__device__ __forceinline__ void store(D* p, int64_t i, float v);
template <>
__device__ __forceinline__ void store<float>(float* p, int64_t i, float v) { p[i] = v; }
template <>
__device__ __forceinline__ void store<__half>(__half* p, int64_t i, float v) {
  const unsigned x = __float_as_uint(v);
  p[i] = (x & 0x7fffffffu) > 0x7f800000u ? __ushort_as_half(static_cast<unsigned short>(((x >> 16) & 0x8000u) | 0x7e00u)) : __float2half_rn(v);
}
template <>
__device__ __forceinline__ void store<__nv_bfloat16>(__nv_bfloat16* p, int64_t i, float v) {
  const unsigned x = __float_as_uint(v);
  p[i] = (x & 0x7fffffffu) > 0x7f800000u ? __ushort_as_bfloat16(static_cast<unsigned short>((x >> 16) | 0x40u)) : __float2bfloat16_rn(v);
}

template <class S, class D>
__global__ void __launch_bounds__(kBlock) convert_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store<D>(dst, i, load<S>(src, i));
}

template <class S, class D>
void launch(const void* src, void* dst, int64_t n) {
  unsigned g = grid_for(n, kBlock);
  if (g > 65536) g = 65536;
  convert_kernel<S, D><<<g, kBlock, 0, stream()>>>(static_cast<const S*>(src), static_cast<D*>(dst), n);
  check_launch("convert kernel");
}

template <class S>
void launch_to(const void* src, DType dd, void* dst, int64_t n) {
  switch (dd) {
    case DType::F32: launch<S, float>(src, dst, n); break;
    case DType::F16: launch<S, __half>(src, dst, n); break;
    default: launch<S, __nv_bfloat16>(src, dst, n); break;
  }
}

}  // namespace

void convert(const void* src, DType sd, void* dst, DType dd, int64_t n) {
  if (!is_float(sd) || !is_float(dd)) fail("E_UNSUPPORTED", "cudaConvert: float32, float16 and bfloat16 only");
  if (n == 0) return;
  activate();
  switch (sd) {
    case DType::F32: launch_to<float>(src, dd, dst, n); break;
    case DType::F16: launch_to<__half>(src, dd, dst, n); break;
    default: launch_to<__nv_bfloat16>(src, dd, dst, n); break;
  }
}

}  // namespace nms::cuda
