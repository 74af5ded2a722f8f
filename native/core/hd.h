// NMS_HD marks a small inline function that both the CPU code and CUDA kernels call (one definition, so the two
// backends compute the same bits by construction). Under nvcc it is __host__ __device__; under a plain C++
// compiler (the CPU-only node-gyp build has no CUDA) it is nothing.
#pragma once

#ifdef __CUDACC__
#define NMS_HD __host__ __device__
#else
#define NMS_HD
#endif

// NMS_UNROLL before a loop with a constant trip count: unrolled in device code (keeps small arrays in registers);
// nothing for a host compiler, which decides for itself.
#ifdef __CUDA_ARCH__
#define NMS_UNROLL _Pragma("unroll")
#else
#define NMS_UNROLL
#endif
