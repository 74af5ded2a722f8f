// NMS_HD marks a small inline function that both the CPU code and CUDA kernels call (one definition, so the two
// backends compute the same bits by construction), in place of `inline`. Under nvcc it is __host__ __device__
// __forceinline__ (kernels keep the function's small arrays in registers); under a plain C++ compiler (the
// CPU-only node-gyp build has no CUDA) it is inline.
#pragma once

#ifdef __CUDACC__
#define NMS_HD __host__ __device__ __forceinline__
#else
#define NMS_HD inline
#endif

// NMS_UNROLL before a loop with a constant trip count: unrolled in device code (keeps small arrays in registers);
// nothing for a host compiler, which decides for itself.
#ifdef __CUDA_ARCH__
#define NMS_UNROLL _Pragma("unroll")
#else
#define NMS_UNROLL
#endif
