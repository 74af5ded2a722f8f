#include "cpu/simd.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "core/error.h"

#if NMS_X86
#include <immintrin.h>
// GCC 12 reports the _mm512_undefined_*() placeholders inside AVX-512 intrinsics as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace nms::cpu {

// ---------------------------------------------------------------------------------------------------------------
// ISA selection

Isa best_isa() {
#if NMS_X86
  static const Isa best = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
      return Isa::Avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
    return Isa::Scalar;
  }();
  return best;
#else
  return Isa::Scalar;
#endif
}

bool cpu_is_intel() {
#if NMS_X86
  static const bool intel = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") != 0;
  }();
  return intel;
#else
  return false;
#endif
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

bool parse_isa(const char* name, Isa* out) {
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if (std::strcmp(name, isa_name(i)) == 0) {
      *out = i;
      return true;
    }
  return false;
}

namespace {
std::atomic<int> g_isa{-1};

int initial_isa() {
  Isa want = best_isa();
  if (const char* env = std::getenv("NMSPARSE_CPU_ISA")) {
    Isa e;
    if (parse_isa(env, &e) && static_cast<int>(e) < static_cast<int>(want)) want = e;
  }
  return static_cast<int>(want);
}
}  // namespace

Isa active_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    int expected = -1;
    g_isa.compare_exchange_strong(expected, initial_isa());
    v = g_isa.load();
  }
  return static_cast<Isa>(v);
}

void set_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_isa()))
    fail("E_UNSUPPORTED", std::string("cpu isa: this CPU cannot run ") + isa_name(isa) + " kernels (best: " +
                              isa_name(best_isa()) + ")");
  g_isa.store(static_cast<int>(isa));
}

// ---------------------------------------------------------------------------------------------------------------
// Scratch

Scratch::~Scratch() { std::free(p_); }

float* Scratch::floats(size_t n) {
  if (n > cap_) {
    size_t want = n + n / 4 + 16;
    size_t bytes = (want * sizeof(float) + 64 + 63) / 64 * 64;
    void* q = std::aligned_alloc(64, bytes);
    if (!q) throw std::bad_alloc();
    std::free(p_);
    p_ = static_cast<float*>(q);
    cap_ = want;
  }
  return p_;
}

// ---------------------------------------------------------------------------------------------------------------
// Portable packing

namespace {

template <DType D>
inline float ld1(const void* p, int64_t i) {
  if constexpr (D == DType::F32) return static_cast<const float*>(p)[i];
  else if constexpr (D == DType::F16) return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  else return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

template <DType D>
void pack_scalar(const PackSrc& s, int64_t o0, int64_t olen, int64_t q0, int64_t qlen, int w, float* dst,
                 int64_t ld) {
  if (s.outer_contig) {
    for (int64_t q = 0; q < qlen; ++q) {
      const int64_t base = (q0 + q) * s.ld + o0;
      float* d = dst + q * ld;
      for (int64_t o = 0; o < olen; ++o) d[o] = ld1<D>(s.p, base + o);
      for (int64_t o = olen; o < w; ++o) d[o] = 0.f;
    }
  } else {
    // Blocks of 8 along q keep the reads of each source row sequential while the writes stay in a few lines.
    for (int64_t qb = 0; qb < qlen; qb += 8) {
      const int64_t qe = qb + 8 < qlen ? qb + 8 : qlen;
      for (int64_t o = 0; o < olen; ++o) {
        const int64_t base = (o0 + o) * s.ld + q0;
        for (int64_t q = qb; q < qe; ++q) dst[q * ld + o] = ld1<D>(s.p, base + q);
      }
      for (int64_t q = qb; q < qe; ++q)
        for (int64_t o = olen; o < w; ++o) dst[q * ld + o] = 0.f;
    }
  }
}

template <DType D>
void convert_scalar(const void* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = ld1<D>(src, i);
}

// ---------------------------------------------------------------------------------------------------------------
// AVX-512 packing: converting masked loads and 16×16 in-register transposes.

#if NMS_X86
NMS_TARGET_AVX512 inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n < 0 ? 0 : n)) - 1);
}

template <DType D>
NMS_TARGET_AVX512 inline __m512 load16(const void* p, int64_t i, __mmask16 m) {
  if constexpr (D == DType::F32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + i);
  } else if constexpr (D == DType::F16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i));
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

template <DType D>
NMS_TARGET_AVX512 void pack_avx512(const PackSrc& s, int64_t o0, int64_t olen, int64_t q0, int64_t qlen, int w,
                                   float* dst, int64_t ld) {
  if (s.outer_contig) {
    if constexpr (D == DType::F32)
      if (olen >= w) {  // whole rows: plain copies (a masked load + store per short row stalled the pack on Zen 5)
        for (int64_t q = 0; q < qlen; ++q) {
          const float* src = static_cast<const float*>(s.p) + (q0 + q) * s.ld + o0;
          float* d = dst + q * ld;
          int o = 0;
          for (; o + 16 <= w; o += 16) _mm512_storeu_ps(d + o, _mm512_loadu_ps(src + o));
          if (o + 8 <= w) _mm256_storeu_ps(d + o, _mm256_loadu_ps(src + o)), o += 8;
          if (o + 4 <= w) _mm_storeu_ps(d + o, _mm_loadu_ps(src + o)), o += 4;
          for (; o < w; ++o) d[o] = src[o];
        }
        return;
      }
    for (int64_t q = 0; q < qlen; ++q) {
      const int64_t base = (q0 + q) * s.ld + o0;
      float* d = dst + q * ld;
      for (int o = 0; o < w; o += 16) {
        const __m512 v = load16<D>(s.p, base + o, lanes(olen - o));
        if (w - o >= 16) _mm512_storeu_ps(d + o, v);
        else _mm512_mask_storeu_ps(d + o, lanes(w - o), v);
      }
    }
    return;
  }
  for (int o = 0; o < w; o += 16) {
    const int64_t rows = olen - o < 0 ? 0 : (olen - o < 16 ? olen - o : 16);
    const __mmask16 out_mask = lanes(w - o);
    for (int64_t q = 0; q < qlen; q += 16) {
      const int64_t qb = qlen - q < 16 ? qlen - q : 16;
      const __mmask16 in_mask = lanes(qb);
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? load16<D>(s.p, (o0 + o + i) * s.ld + q0 + q, in_mask) : _mm512_setzero_ps();
      transpose16(r);
      for (int i = 0; i < qb; ++i) _mm512_mask_storeu_ps(dst + (q + i) * ld + o, out_mask, r[i]);
    }
  }
}

template <DType D>
NMS_TARGET_AVX512 void convert_avx512(const void* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; i += 16) _mm512_mask_storeu_ps(dst + i, lanes(n - i), load16<D>(src, i, lanes(n - i)));
}
#endif

template <template <DType> class F, class... A>
void by_dtype(DType d, A&&... a) {
  switch (d) {
    case DType::F32: F<DType::F32>::run(a...); return;
    case DType::F16: F<DType::F16>::run(a...); return;
    case DType::BF16: F<DType::BF16>::run(a...); return;
    default: fail("E_DTYPE", std::string("expected a float dtype, got ") + dtype_name(d));
  }
}

template <DType D>
struct PackOp {
  static void run(Isa isa, const PackSrc& s, int64_t o0, int64_t olen, int64_t q0, int64_t qlen, int w, float* dst,
                  int64_t ld) {
#if NMS_X86
    if (isa == Isa::Avx512) return pack_avx512<D>(s, o0, olen, q0, qlen, w, dst, ld);
#endif
    pack_scalar<D>(s, o0, olen, q0, qlen, w, dst, ld);
  }
};

template <DType D>
struct ConvertOp {
  static void run(Isa isa, const void* src, int64_t n, float* dst) {
#if NMS_X86
    if (isa == Isa::Avx512) return convert_avx512<D>(src, n, dst);
#endif
    convert_scalar<D>(src, n, dst);
  }
};

}  // namespace

void pack_panel(Isa isa, const PackSrc& s, int64_t o0, int64_t olen, int64_t q0, int64_t qlen, int w, float* dst,
                int64_t ld) {
  by_dtype<PackOp>(s.dt, isa, s, o0, olen, q0, qlen, w, dst, ld > 0 ? ld : w);
}

void convert_to_f32(Isa isa, const void* src, DType dt, int64_t n, float* dst) {
  by_dtype<ConvertOp>(dt, isa, src, n, dst);
}

}  // namespace nms::cpu
