// Dense GEMM, BLIS-style: C[m,n] = op(A)[m,k] · op(B)[k,n] (+ bias).
//
//   for jc in n by NC:                        C columns
//     for pc in k by KC:                      reduction
//       pack B[pc:+KC, jc:+NC] into NR-wide panels (shared, packed in parallel)
//       parallel over (MC row block × group of NR panels):
//         pack A[ic:+MC, pc:+KC] into MR-tall panels (per-thread scratch)
//         for each NR panel, for each MR panel: microkernel MR×NR over KC, in registers
//
// The packs convert f16/bf16 to float32 and absorb the transposes, so the microkernels only ever see float32
// panels: A panel [KC][MR] (one broadcast per row), B panel [KC][NR] (NR/16 vector loads). The first KC block
// writes C (adding the bias), later ones accumulate into it. A float16/bfloat16 C is accumulated in a float32
// scratch block and converted once at the end. All scratch is thread_local and only grows: a steady stream of
// calls allocates nothing.
#include "cpu/gemm.h"

#include <algorithm>
#include <string>

#include "core/error.h"
#include "core/threadpool.h"
#include "cpu/simd.h"

#if NMS_X86
#include <immintrin.h>
// GCC 12 reports the _mm512_undefined_*() placeholders inside AVX-512 intrinsics as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace nms::cpu {
namespace {

// GemmArgs::relu, as relu_forward computes it (-0 and NaN give +0).
inline float relu_of(float v) { return v > 0.f ? v : 0.f; }

// C[0:MR, 0:NR] (ldc) = acc ? C + A·B : A·B + bias (bias may be null), over kc steps of the packed panels.
using Ukr = void (*)(int64_t kc, const float* A, const float* B, float* C, int64_t ldc, bool acc, const float* bias);

constexpr int kMaxMr = 12;  // the tallest microkernel of any kernel set

struct KernelSet {
  int mr, nr;      // microkernel tile
  int kc, mc, nc;  // cache blocks: B micro-panel KC×NR in L1, A block MC×KC in L2, B block KC×NC in L3
  // rows[r]: the microkernel for the first r rows of an A panel (rows[mr]: the full tile), so that a short last
  // panel (m = 1 against MR = 12) does only its own rows' FMAs; each row's sums are the same in all of them.
  Ukr rows[kMaxMr + 1];
};

// ---------------------------------------------------------------------------------------------------------------
// Portable microkernel: plain loops the compiler vectorises for the baseline ISA.

constexpr int kScalarMr = 4, kScalarNr = 16;

template <int R>
void ukr_scalar(int64_t kc, const float* A, const float* B, float* C, int64_t ldc, bool acc, const float* bias) {
  float c[R][kScalarNr] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const float* b = B + p * kScalarNr;
    for (int i = 0; i < R; ++i) {
      const float a = A[p * kScalarMr + i];
      for (int j = 0; j < kScalarNr; ++j) c[i][j] += a * b[j];
    }
  }
  for (int i = 0; i < R; ++i) {
    float* cp = C + i * ldc;
    for (int j = 0; j < kScalarNr; ++j) cp[j] = acc ? cp[j] + c[i][j] : c[i][j] + (bias ? bias[j] : 0.f);
  }
}

#if NMS_X86
// ---------------------------------------------------------------------------------------------------------------
// AVX2 microkernel: 6×16 (12 ymm accumulators).

constexpr int kAvx2Mr = 6, kAvx2Nv = 2;

template <int MR>
NMS_TARGET_AVX2 void ukr_avx2(int64_t kc, const float* __restrict A, const float* __restrict B, float* C,
                              int64_t ldc, bool acc, const float* bias) {
  constexpr int LDA = kAvx2Mr, NV = kAvx2Nv, NR = 8 * NV;
  __m256 c[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[i][v] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p) {
    __m256 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm256_loadu_ps(B + p * NR + 8 * v);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(A + p * LDA + i);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[i][v] = _mm256_fmadd_ps(a, b[v], c[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* cp = C + i * ldc + 8 * v;
      __m256 x = c[i][v];
      if (acc) x = _mm256_add_ps(x, _mm256_loadu_ps(cp));
      else if (bias) x = _mm256_add_ps(x, _mm256_loadu_ps(bias + 8 * v));
      _mm256_storeu_ps(cp, x);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Small-m kernel: out[i][j] = A row i · B row j for IB rows of A and JB rows of B (B stored [n, k], the Linear
// layout), each B vector loaded once for all IB rows.
template <int IB, int JB>
NMS_TARGET_AVX2 void dots_avx2(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* out,
                               int64_t ldo) {
  __m256 acc[IB][JB];
#pragma GCC unroll 4
  for (int i = 0; i < IB; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < JB; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + 8 <= k; p += 8) {
    __m256 bv[JB];
#pragma GCC unroll 4
    for (int j = 0; j < JB; ++j) bv[j] = _mm256_loadu_ps(b + j * ldb + p);
#pragma GCC unroll 4
    for (int i = 0; i < IB; ++i) {
      const __m256 av = _mm256_loadu_ps(a + i * lda + p);
#pragma GCC unroll 4
      for (int j = 0; j < JB; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < IB; ++i)
    for (int j = 0; j < JB; ++j) {
      float s = hsum8(acc[i][j]);
      for (int64_t q = p; q < k; ++q) s += a[i * lda + q] * b[j * ldb + q];
      out[i * ldo + j] = s;
    }
}

// dots_avx2 in zmm registers: half the loads and FMAs per weight row.
template <int IB, int JB>
NMS_TARGET_AVX512 void dots_avx512(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* out,
                                   int64_t ldo) {
  __m512 acc[IB][JB];
#pragma GCC unroll 4
  for (int i = 0; i < IB; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < JB; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    __m512 bv[JB];
#pragma GCC unroll 4
    for (int j = 0; j < JB; ++j) bv[j] = _mm512_loadu_ps(b + j * ldb + p);
#pragma GCC unroll 4
    for (int i = 0; i < IB; ++i) {
      const __m512 av = _mm512_loadu_ps(a + i * lda + p);
#pragma GCC unroll 4
      for (int j = 0; j < JB; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < IB; ++i)
    for (int j = 0; j < JB; ++j) {
      float s = _mm512_reduce_add_ps(acc[i][j]);
      for (int64_t q = p; q < k; ++q) s += a[i * lda + q] * b[j * ldb + q];
      out[i * ldo + j] = s;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX-512 microkernel: MR×(16·NV), MR·NV zmm accumulators.

constexpr int kAvx512Mr = 12, kAvx512Nv = 2;
// How far ahead of its loads the AVX-512 microkernel prefetches B (floats: 4 KB, the next panels of a packed B
// streamed from memory; 4096² at 8-256 rows 1.05-1.4x, measured against none).
constexpr int kPrefetch = 1024;

template <int MR, int NV, int LDA = MR>
NMS_TARGET_AVX512 void ukr_avx512(int64_t kc, const float* __restrict A, const float* __restrict B, float* C,
                                  int64_t ldc, bool acc, const float* bias) {
  constexpr int NR = 16 * NV;
  __m512 c[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      _mm_prefetch(reinterpret_cast<const char*>(B + p * NR + 16 * v + kPrefetch), _MM_HINT_T0);
      b[v] = _mm512_loadu_ps(B + p * NR + 16 * v);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(A[p * LDA + i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[i][v] = _mm512_fmadd_ps(a, b[v], c[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* cp = C + i * ldc + 16 * v;
      __m512 x = c[i][v];
      if (acc) x = _mm512_add_ps(x, _mm512_loadu_ps(cp));
      else if (bias) x = _mm512_add_ps(x, _mm512_loadu_ps(bias + 16 * v));
      _mm512_storeu_ps(cp, x);
    }
}
#endif

const KernelSet& kernels(Isa isa) {
  static const KernelSet scalar{kScalarMr, kScalarNr, 256, 128, 2048,
                                {nullptr, ukr_scalar<1>, ukr_scalar<2>, ukr_scalar<3>, ukr_scalar<4>}};
#if NMS_X86
  static const KernelSet avx2{kAvx2Mr, 8 * kAvx2Nv, 256, 144, 2048,
                              {nullptr, ukr_avx2<1>, ukr_avx2<2>, ukr_avx2<3>, ukr_avx2<4>, ukr_avx2<5>, ukr_avx2<6>}};
  constexpr int V = kAvx512Nv, L = kAvx512Mr;
  static const KernelSet avx512{kAvx512Mr, 16 * kAvx512Nv, 256, 144, 2048,
                                {nullptr, ukr_avx512<1, V, L>, ukr_avx512<2, V, L>, ukr_avx512<3, V, L>, ukr_avx512<4, V, L>,
                                 ukr_avx512<5, V, L>, ukr_avx512<6, V, L>, ukr_avx512<7, V, L>, ukr_avx512<8, V, L>,
                                 ukr_avx512<9, V, L>, ukr_avx512<10, V, L>, ukr_avx512<11, V, L>, ukr_avx512<12, V, L>}};
  if (isa == Isa::Avx512) return avx512;
  if (isa == Isa::Avx2) return avx2;
#endif
  return scalar;
}
constexpr int kMaxTile = 16 * 64;  // largest MR·NR of any kernel set (edge tiles go through a buffer this big)

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check(const GemmArgs& g) {
  if (g.m < 1 || g.n < 1 || g.k < 1)
    fail("E_SHAPE", "gemm: expected m, n, k >= 1, got m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) +
                        " k=" + std::to_string(g.k));
  const struct { DType d; const char* what; } ds[] = {{g.a_dtype, "a"}, {g.b_dtype, "b"}, {g.c_dtype, "c"}};
  for (const auto& x : ds)
    if (!is_float(x.d)) fail("E_DTYPE", std::string("gemm: ") + x.what + " must be float32, float16 or bfloat16, got " +
                                            dtype_name(x.d));
  if (g.bias && !is_float(g.bias_dtype))
    fail("E_DTYPE", std::string("gemm: bias must be float32, float16 or bfloat16, got ") + dtype_name(g.bias_dtype));
}

#if NMS_X86
// A service's batch of a few rows times a Linear weight (A [m, k] with small m, B stored [n, k], all float32).
// Packing B would read and write all of it for a handful of rows, so each row of B is streamed once straight from
// memory and dotted with every row of A, which stays in cache; the threads split the rows of B.
constexpr int64_t kSmallM = 16;

bool small_m(const GemmArgs& g, Isa isa) {
  return isa != Isa::Scalar && g.m <= kSmallM && !g.trans_a && g.trans_b && g.a_dtype == DType::F32 &&
         g.b_dtype == DType::F32 && g.c_dtype == DType::F32;
}

// dots_avx512 or dots_avx2 (Z: AVX-512).
template <bool Z, int IB, int JB>
inline void dots(int64_t k, const float* a, const float* b, float* out, int64_t ldo) {
  if constexpr (Z) dots_avx512<IB, JB>(k, a, k, b, k, out, ldo);
  else dots_avx2<IB, JB>(k, a, k, b, k, out, ldo);
}

template <bool Z>
void small_m_rows(const GemmArgs& g, const float* bias) {
  constexpr int JB = 4;
  const int64_t m = g.m, n = g.n, k = g.k;
  const float* A = static_cast<const float*>(g.a);
  const float* B = static_cast<const float*>(g.b);
  float* C = static_cast<float*>(g.c);
  const int64_t nb = cdiv(n, JB);
  const bool parallel = static_cast<double>(m) * n * k >= 64.0 * 64 * 64;
  parallel_for(nb, parallel ? cdiv(nb, 4 * num_threads()) : nb, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t j = q * JB, jn = std::min<int64_t>(JB, n - j);
      for (int64_t i = 0; i < m;) {
        float* c = C + i * n + j;
        if (jn == JB && i + 2 <= m) {
          dots<Z, 2, JB>(k, A + i * k, B + j * k, c, n);
          i += 2;
        } else {
          if (jn == JB) dots<Z, 1, JB>(k, A + i * k, B + j * k, c, n);
          else
            for (int64_t jj = 0; jj < jn; ++jj) dots<Z, 1, 1>(k, A + i * k, B + (j + jj) * k, c + jj, n);
          i += 1;
        }
      }
      if (bias || g.relu)
        for (int64_t i = 0; i < m; ++i)
          for (int64_t jj = 0; jj < jn; ++jj) {
            float& v = C[i * n + j + jj];
            if (bias) v += bias[j + jj];
            if (g.relu) v = relu_of(v);
          }
    }
  });
}

void gemm_small_m(const GemmArgs& g, const float* bias, Isa isa) {
  if (isa == Isa::Avx512) small_m_rows<true>(g, bias);
  else small_m_rows<false>(g, bias);
}
#endif

}  // namespace

// Packs A[i0:+mb, pc:+kb] into MR-tall panels (nap of them, at Ap).
void pack_a(Isa isa, const KernelSet& K, const PackSrc& asrc, int64_t i0, int64_t mb, int64_t pc, int64_t kb, float* Ap) {
  const int MR = K.mr;
  for (int64_t a = 0; a < cdiv(mb, MR); ++a)
    pack_panel(isa, asrc, i0 + a * MR, std::min<int64_t>(MR, mb - a * MR), pc, kb, MR, Ap + a * MR * kb);
}

// Multiplies the packed A panels of mb rows (Ap) with the packed B panels [q0, q1) of a block nb columns wide
// into C (ldc; C points at the block's first row and column): C = acc ? C + A·B : A·B + bias, then max(0, C)
// when `relu` (the last KC block: each tile while it is in L1, rather than a pass over C afterwards).
void tiles(const KernelSet& K, const float* Ap, int64_t mb, int64_t kb, const float* Bp, int64_t q0, int64_t q1,
           int64_t nb, float* C, int64_t ldc, bool accumulate, const float* bias, bool relu) {
  const int MR = K.mr, NR = K.nr;
  const int64_t nap = cdiv(mb, MR);
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t j = q * NR, nr = std::min<int64_t>(NR, nb - j);
    const float* bp = Bp + q * NR * kb;
    const float* brow = bias ? bias + j : nullptr;
    for (int64_t a = 0; a < nap; ++a) {
      const int64_t i = a * MR, mr = std::min<int64_t>(MR, mb - i);
      float* cp = C + i * ldc + j;
      if (nr == NR) {
        K.rows[mr](kb, Ap + a * MR * kb, bp, cp, ldc, accumulate, brow);
        if (relu)
          for (int64_t r = 0; r < mr; ++r)
            for (int64_t c = 0; c < NR; ++c) cp[r * ldc + c] = relu_of(cp[r * ldc + c]);
      } else {
        alignas(64) float tmp[kMaxTile];
        K.rows[mr](kb, Ap + a * MR * kb, bp, tmp, NR, false, nullptr);
        for (int64_t r = 0; r < mr; ++r)
          for (int64_t c = 0; c < nr; ++c) {
            const float v = tmp[r * NR + c];
            float& o = cp[r * ldc + c];
            o = accumulate ? o + v : v + (brow ? brow[c] : 0.f);
            if (relu) o = relu_of(o);
          }
      }
    }
  }
}

// pack_a into `scratch`, then tiles().
void block_tiles(Isa isa, const KernelSet& K, const PackSrc& asrc, int64_t i0, int64_t mb, int64_t pc, int64_t kb,
                 const float* Bp, int64_t q0, int64_t q1, int64_t nb, float* C, int64_t ldc, bool accumulate,
                 const float* bias, bool relu, Scratch& scratch) {
  float* Ap = scratch.floats(static_cast<size_t>(cdiv(mb, K.mr) * K.mr * kb));
  pack_a(isa, K, asrc, i0, mb, pc, kb, Ap);
  tiles(K, Ap, mb, kb, Bp, q0, q1, nb, C, ldc, accumulate, bias, relu);
}

// A small float32 C over a long reduction (conv weight gradients dW = dYᵀ·cols: m, n ≲ 300, k = batch·pixels up to
// 10⁵): the main loop's per-KC-block B pack and two pool barriers cost more than the block's few FMAs, and there are
// too few tiles to keep the threads busy. Instead each task takes slices of k end to end (packs and microkernels, no
// barrier) into its own partial C, and the partials are added in slice order. The slice depth depends on k alone
// (about k/8, whole KC blocks, at most kSliceK), so there are tasks for a wider pool and the result does not
// depend on the thread count.
constexpr int64_t kSliceK = 4096;

bool split_k(const GemmArgs& g) {
  return g.c_dtype == DType::F32 && g.k > kSliceK && g.m * g.n <= 256 * 256;
}

void gemm_split_k(const GemmArgs& g, Isa isa, const KernelSet& K, const PackSrc& asrc, const PackSrc& bsrc,
                  const float* bias) {
  const int NR = K.nr;
  const int64_t m = g.m, n = g.n, k = g.k, mn = m * n, npan = cdiv(n, NR);
  const int64_t depth = std::clamp<int64_t>(cdiv(cdiv(k, 8), K.kc) * K.kc, K.kc, kSliceK);
  const int64_t slices = cdiv(k, depth);
  thread_local Scratch s_part;
  float* part = s_part.floats(static_cast<size_t>(slices * mn));
  const bool parallel = static_cast<double>(m) * n * k >= 64.0 * 64 * 64;
  parallel_for(slices, parallel ? 1 : slices, [&](int64_t s0, int64_t s1) {
    thread_local Scratch s_a, s_bp;
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t k1 = std::min(k, (s + 1) * depth);
      for (int64_t pc = s * depth; pc < k1; pc += K.kc) {
        const int64_t kb = std::min<int64_t>(K.kc, k1 - pc);
        float* Bp = s_bp.floats(static_cast<size_t>(npan * NR * kb));
        for (int64_t q = 0; q < npan; ++q)
          pack_panel(isa, bsrc, q * NR, std::min<int64_t>(NR, n - q * NR), pc, kb, NR, Bp + q * NR * kb);
        block_tiles(isa, K, asrc, 0, m, pc, kb, Bp, 0, npan, n, part + s * mn, n, pc > s * depth, nullptr, false, s_a);
      }
    }
  });
  float* C = static_cast<float*>(g.c);
  parallel_for(m, parallel ? std::max<int64_t>(1, 16384 / (n * slices)) : m, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = 0; j < n; ++j) {
        float v = part[i * n + j];
        for (int64_t s = 1; s < slices; ++s) v += part[s * mn + i * n + j];
        if (bias) v += bias[j];
        C[i * n + j] = g.relu ? relu_of(v) : v;
      }
  });
}

// The tasks of a product: row blocks of MC; when there are too few of them for the pool, each one is split by
// groups of NR panels (npan of them). Equal blocks of at most MC rows (a multiple of MR): m = 256 makes 132 + 124,
// not 144 + 112. The pool cuts a job into about 4 chunks per thread, so the block count is rounded up to a
// multiple of that while blocks stay at least MC/2 tall (m = 4096: 32 blocks of 132 rows rather than 29 of 144,
// which left a thread idle).
struct Split { int64_t mc, nic, per, nsplit; };

Split split(const KernelSet& K, int64_t m, int64_t npan, int threads) {
  int64_t blocks = cdiv(m, K.mc);
  const int64_t even = cdiv(blocks, 4 * threads) * 4 * threads;
  if (blocks > 1 && m / even >= K.mc / 2) blocks = even;
  int64_t mc = cdiv(cdiv(m, blocks), K.mr) * K.mr;
  int64_t nic = cdiv(m, mc);
  const int64_t per = cdiv(npan, std::max<int64_t>(1, std::min<int64_t>(npan, cdiv(4 * threads, nic))));
  const int64_t nsplit = cdiv(npan, per);
  // Too few tasks for the pool (a weight too narrow to split by panels, as a classifier's 10 outputs in one panel):
  // the rows are cut finer instead, in blocks of at least MR (64 rows x 10 outputs: 3 tasks, was 1).
  if (nic * nsplit < 2 * threads) {
    mc = std::max<int64_t>(K.mr, cdiv(cdiv(m, cdiv(2 * threads, nsplit)), K.mr) * K.mr);
    nic = cdiv(m, mc);
  }
  return {mc, nic, per, nsplit};
}

// A packed op(B): for each block of NC columns jc and each KC block pc of the reduction, the NR-wide panels
// [kb][NR] the main loop packs per call, at jc·k + pc·(nb rounded up to NR), nb the block's width.
int64_t packed_offset(const KernelSet& K, int64_t n, int64_t k, int64_t jc, int64_t pc) {
  return jc * k + pc * cdiv(std::min<int64_t>(K.nc, n - jc), K.nr) * K.nr;
}

// Under this many rows gemm() streams the weight rows instead (gemm_small_m), packed B or not.
constexpr int64_t kPackedRows = 4;
// From this many rows A is packed once for all the tasks that share it (below, each task's copy costs less than
// the barrier; 1024x784 at 32-256 rows 1.1-1.2x).
constexpr int64_t kSharedARows = 32;

// C = A·op(B) + bias from a packed op(B), float32 C, from kPackedRows rows on.
void gemm_packed(const GemmArgs& g, Isa isa, const KernelSet& K, const PackSrc& asrc, const float* bias) {
  const int MR = K.mr, NR = K.nr;
  const int64_t m = g.m, n = g.n, k = g.k, npan = cdiv(n, NR), pnc = K.nc / NR;
  const Split sp = split(K, m, npan, num_threads());
  float* C = static_cast<float*>(g.c);
  const bool parallel = static_cast<double>(m) * n * k >= 64.0 * 64 * 64;
  // When a row block is split over several tasks (a few rows against a wide weight), each would pack the same A:
  // it is packed once instead, row block by row block and KC block by KC block (mcp·kb floats at ib·mcp·k + pc·mcp).
  const int64_t mcp = cdiv(sp.mc, MR) * MR;
  thread_local Scratch s_ash;
  float* Ash = nullptr;
  if (sp.nsplit > 1 && m >= kSharedARows) {
    Ash = s_ash.floats(static_cast<size_t>(sp.nic * mcp * k));
    const int64_t nkb = cdiv(k, K.kc);
    parallel_for(sp.nic * nkb, parallel ? 1 : sp.nic * nkb, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t ib = t / nkb, pc = (t % nkb) * K.kc, i0 = ib * sp.mc;
        pack_a(isa, K, asrc, i0, std::min(sp.mc, m - i0), pc, std::min<int64_t>(K.kc, k - pc), Ash + ib * mcp * k + pc * mcp);
      }
    });
  }
  // One job: each task takes its rows and panels over the whole reduction, so the KC blocks follow each other
  // without a barrier (the main loop has two per block); every sum is the main loop's, in the same order.
  parallel_for(sp.nic * sp.nsplit, parallel ? 1 : sp.nic * sp.nsplit, [&](int64_t t0, int64_t t1) {
    thread_local Scratch s_a;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t ib = t / sp.nsplit, i0 = ib * sp.mc, mb = std::min(sp.mc, m - i0);
      const int64_t q0 = (t % sp.nsplit) * sp.per, q1 = std::min(npan, q0 + sp.per);
      float* Ap = Ash ? nullptr : s_a.floats(static_cast<size_t>(mcp * std::min<int64_t>(K.kc, k)));
      for (int64_t pc = 0; pc < k; pc += K.kc) {
        const int64_t kb = std::min<int64_t>(K.kc, k - pc);
        const float* A = Ash ? Ash + ib * mcp * k + pc * mcp : Ap;
        if (!Ash) pack_a(isa, K, asrc, i0, mb, pc, kb, Ap);
        // the NC blocks [q0, q1) meets, each with its panels counted from the block's first
        for (int64_t b = q0 / pnc; b * pnc < q1; ++b) {
          const int64_t jc = b * pnc * NR, nb = std::min<int64_t>(K.nc, n - jc);
          const int64_t l0 = std::max(q0, b * pnc) - b * pnc, l1 = std::min(q1, (b + 1) * pnc) - b * pnc;
          tiles(K, A, mb, kb, g.b_packed + packed_offset(K, n, k, jc, pc), l0, l1, nb, C + i0 * n + jc, n, pc > 0,
                pc == 0 && bias ? bias + jc : nullptr, g.relu && pc + kb == k);
        }
      }
    }
  });
}

// Whether gemm() takes gemm_packed for ISA `isa`: under kPackedRows rows the row-streaming kernel is at least as
// fast, even against a packed B (measured).
bool takes_packed(const GemmArgs& g, Isa isa) {
  bool small = false;
#if NMS_X86
  small = small_m(g, isa);
#endif
  return g.b_packed && g.b_packed_isa == static_cast<int>(isa) && g.c_dtype == DType::F32 && !(small && g.m < kPackedRows);
}

bool gemm_packed_only(const GemmArgs& g) { return takes_packed(g, active_isa()); }

void gemm(const GemmArgs& g) {
  check(g);
  // Without b the caller checked gemm_packed_only: the packing's ISA is the one to run, even if another is active now.
  const Isa isa = g.b ? active_isa() : static_cast<Isa>(g.b_packed_isa);
  const KernelSet& K = kernels(isa);
  const int NR = K.nr;
  const int64_t m = g.m, n = g.n, k = g.k;

  // X(i, p) = op(A)[i][p] and X(j, p) = op(B)[p][j], as pack_panel reads them.
  const PackSrc asrc{g.a, g.a_dtype, g.trans_a ? m : k, g.trans_a};
  const PackSrc bsrc{g.b, g.b_dtype, g.trans_b ? k : n, !g.trans_b};

  // Caller-thread scratch: the shared B block, the float32 bias, the float32 C block for f16/bf16 outputs.
  thread_local Scratch s_b, s_bias, s_c;
  const float* bias = nullptr;
  if (g.bias) {
    float* b32 = s_bias.floats(n + NR);
    convert_to_f32(isa, g.bias, g.bias_dtype, n, b32);
    bias = b32;
  }
  if (!g.b || takes_packed(g, isa)) return gemm_packed(g, isa, K, asrc, bias);
#if NMS_X86
  if (small_m(g, isa)) return gemm_small_m(g, bias, isa);
#endif
  if (split_k(g)) return gemm_split_k(g, isa, K, asrc, bsrc, bias);
  const bool direct = g.c_dtype == DType::F32;
  int64_t nc = K.nc;
  if (!direct) nc = std::max<int64_t>(NR, std::min<int64_t>(nc, (int64_t{1} << 22) / m / NR * NR));

  const int threads = num_threads();
  const bool parallel = static_cast<double>(m) * n * k >= 64.0 * 64 * 64;

  for (int64_t jc = 0; jc < n; jc += nc) {
    const int64_t nb = std::min(nc, n - jc);
    const int64_t npan = cdiv(nb, NR);
    float* cb;
    int64_t ldc;
    if (direct) {
      cb = static_cast<float*>(g.c) + jc;
      ldc = n;
    } else {
      cb = s_c.floats(static_cast<size_t>(m * nb));
      ldc = nb;
    }

    for (int64_t pc = 0; pc < k; pc += K.kc) {
      const int64_t kb = std::min<int64_t>(K.kc, k - pc);
      float* Bp = s_b.floats(static_cast<size_t>(npan * NR * kb));
      parallel_for(npan, parallel ? std::max<int64_t>(1, 8192 / kb) : npan, [&](int64_t b, int64_t e) {
        for (int64_t q = b; q < e; ++q)
          pack_panel(isa, bsrc, jc + q * NR, std::min<int64_t>(NR, nb - q * NR), pc, kb, NR, Bp + q * NR * kb);
      });

      const Split sp = split(K, m, npan, threads);
      const int64_t mc = sp.mc, nic = sp.nic, per = sp.per, nsplit = sp.nsplit;
      const bool first = pc == 0, accumulate = pc > 0;

      parallel_for(nic * nsplit, parallel ? 1 : nic * nsplit, [&](int64_t t0, int64_t t1) {
        thread_local Scratch s_a;
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t i0 = (t / nsplit) * mc, q0 = (t % nsplit) * per;
          block_tiles(isa, K, asrc, i0, std::min(mc, m - i0), pc, kb, Bp, q0, std::min(npan, q0 + per), nb, cb + i0 * ldc,
                      ldc, accumulate, first && bias ? bias + jc : nullptr, direct && g.relu && pc + kb == k, s_a);
        }
      });
    }

    if (!direct) {
      parallel_for(m, parallel ? std::max<int64_t>(1, 16384 / nb) : m, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t j = 0; j < nb; ++j) store_from_f32(g.c, g.c_dtype, r * n + jc + j, g.relu ? relu_of(cb[r * ldc + j]) : cb[r * ldc + j]);
      });
    }
  }
}

int64_t packed_b_floats(int isa, int64_t n, int64_t k) {
  const KernelSet& K = kernels(static_cast<Isa>(isa));
  return cdiv(n, K.nr) * K.nr * k;
}

void gemm_pack_b(const void* b, DType b_dtype, int64_t n, int64_t k, bool trans_b, float* out) {
  const Isa isa = active_isa();
  const KernelSet& K = kernels(isa);
  const int NR = K.nr;
  const PackSrc bsrc{b, b_dtype, trans_b ? k : n, !trans_b};
  for (int64_t jc = 0; jc < n; jc += K.nc)
    for (int64_t pc = 0; pc < k; pc += K.kc) {
      const int64_t nb = std::min<int64_t>(K.nc, n - jc), kb = std::min<int64_t>(K.kc, k - pc);
      float* Bp = out + packed_offset(K, n, k, jc, pc);
      parallel_for(cdiv(nb, NR), std::max<int64_t>(1, 8192 / kb), [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q)
          pack_panel(isa, bsrc, jc + q * NR, std::min<int64_t>(NR, nb - q * NR), pc, kb, NR, Bp + q * NR * kb);
      });
    }
}

}  // namespace nms::cpu
