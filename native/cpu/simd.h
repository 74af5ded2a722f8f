// Run-time ISA selection and the packing helpers shared by the dense GEMM (gemm.cc) and the N:M sparse product
// (spmm.cc). No -march flag is used anywhere: ISA-specific code is compiled with target attributes and chosen at
// run time, so one binary runs on any x86-64 (and, through the scalar path, on any CPU at all).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define NMS_X86 1
#define NMS_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma,f16c")))
#define NMS_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define NMS_X86 0
#endif

namespace nms::cpu {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

Isa best_isa();              // the best kernels this CPU can run
Isa active_isa();            // what gemm/spmm use now: best_isa(), or NMSPARSE_CPU_ISA / set_isa() when lower
void set_isa(Isa isa);       // fails E_UNSUPPORTED when the CPU lacks it
const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512"
bool cpu_is_intel();         // the CPU's vendor, where a kernel's choice depends on its cores (cpu/spmm.cc)
bool parse_isa(const char* name, Isa* out);  // accepts the names above

// A growable 64-byte-aligned float buffer. Kernels keep these thread_local so that steady-state calls allocate
// nothing: the buffer only grows, and is reused by every later call on the same thread.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch();
  float* floats(size_t n);  // at least n floats (+ 64 bytes of slack), contents unspecified
  template <class T>
  T* as(size_t n) { return reinterpret_cast<T*>(floats((n * sizeof(T) + 3) / 4)); }

 private:
  float* p_ = nullptr;
  size_t cap_ = 0;
};

// The 2-D operand X(o, q) of a pack, read from a row-major buffer of any float dtype:
//   X(o, q) = p[q*ld + o] when outer_contig, else p[o*ld + q].
struct PackSrc {
  const void* p;
  DType dt;
  int64_t ld;
  bool outer_contig;
};

// Packs an (olen ≤ w) × qlen block into the panel layout the kernels read: dst[q*ld + o] = X(o0 + o, q0 + q) as
// float32 for o < w, zeros where olen ≤ o; ld is w unless given. `isa` picks the vector code (AVX-512: 16×16
// transposes, converting loads).
void pack_panel(Isa isa, const PackSrc& s, int64_t o0, int64_t olen, int64_t q0, int64_t qlen, int w, float* dst,
                int64_t ld = 0);

// dst[i] = src[i] as float32 for i < n.
void convert_to_f32(Isa isa, const void* src, DType dt, int64_t n, float* dst);

#if NMS_X86
// GCC 12 reports the _mm512_undefined_*() placeholders inside AVX-512 intrinsics as (maybe-)uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// The sum of the 8 lanes (the end of a dot product kept in one vector).
NMS_TARGET_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
// In-register 16×16 transpose: r[i] (row i, 16 columns) becomes column i.
NMS_TARGET_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // r[4i + j], 128-bit lane L, now holds rows 4i..4i+3 of column 4L + j.
  __m512 out[16];
  for (int j = 0; j < 4; ++j) {
    const __m512 u0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    const __m512 u1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    const __m512 u3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    out[j] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    out[8 + j] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
    out[4 + j] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    out[12 + j] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
  }
  for (int i = 0; i < 16; ++i) r[i] = out[i];
}
#pragma GCC diagnostic pop
#endif

}  // namespace nms::cpu
