// N:M-sparse × dense on the CPU, straight from the portable compressed form: Y[rows, p] = W̃ · op(B).
// Only the kept values are multiplied (a 2:4 matrix costs half the FMAs of the dense product), with no
// decompression. Every FMA needs its B operand picked by a kept value's column, and that pick is what limits the
// speed; two kernels make it differently.
//
// Permute-fed (AVX-512, M <= 16; spmm_perm): lanes are 16 rows of W̃. For a 16-column chunk of W̃, X[j] holds
// op(B)[chunk, j] in a register for 12 columns j of Y; slot s of the 16 rows gives a vector of values V[s] and a
// vector of columns inside the chunk I[s], and Y[rows, j] += V[s] · vpermps(I[s], X[j]). The pick is a register
// shuffle, which on the CPUs measured (Zen 5) runs beside the FMAs at about 1.3 FMA + 1.3 shuffle per cycle,
// where a pick by load is limited to one 512-bit load per cycle. op(B)ᵀ is packed once per call and block of 516
// columns of Y (rows padded against cache-set conflicts); the values of 16 rows are transposed and their
// positions decoded (2:4: one gathered dword gives 16 slots) once per 256-column block, then reused by all
// columns of the block; the next rows are prefetched meanwhile.
//
// Load-fed (every ISA, every N:M; spmm_rows): lanes are columns of Y. A task (rows × 16/32/64/128 columns of Y)
// packs op(B)[128-column block (64 for 128 columns of Y), its columns] into an L1 panel, decodes each row's
// positions into panel offsets (2:4: a 256-entry table turns one byte of positions into four, AVX-512 one dword
// into 16 in registers), and for each kept value (v, c) adds v · panel[c] (one load per FMA), four rows (two of
// 128 columns) interleaved on AVX-512 to hide the FMA latency. On Intel cores it also takes 2:4 from 64 columns of
// Y, where the permutes compete with the FMAs for a port (rows_over_perm).
//
// Both write each task's float32 tile out once at its end (bias, transposition, dtype conversion). All scratch is
// thread_local and only grows, so calls allocate nothing beyond their output.
//
// A few rows of x (x·W̃ᵀ at a service's batch sizes) leave most lanes of those drivers idle; there the lanes are
// kept values of a row of W̃ instead and x's operands are picked by register permutes (spmm_pick: AVX-512 any N:M,
// AVX2 M <= 16; spmm_gemv24: AVX2 2:4), so that W̃ streams from memory once in its compressed form.
#include "cpu/spmm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/nm_format.h"
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

constexpr int kKcb = 128;  // W̃ columns per block: a multiple of every M (and of 8, so 2:4 blocks start on a byte)
constexpr int kRi = 4;     // most rows interleaved by the vector kernels
constexpr int64_t kRowsAhead = 8;  // rows spmm_rows prefetches ahead

// A group of `ri` rows for the kernel: their values and panel offsets for this block, and their tile rows.
struct Rows {
  const float* v[kRi];
  const int32_t* off[kRi];
  float* y[kRi];
};
// y[i][0:pb] += Σ_t v[i][t] · panel[off[i][t] : +pb] for the first `ri` rows of `r`.
using SpKernel = void (*)(int64_t kept, const Rows& r, const float* panel);

// ---------------------------------------------------------------------------------------------------------------
// Portable kernel (one row at a time; the inner loop over pb vectorises for the baseline ISA).

template <int PB>
void sp_scalar(int64_t kept, const Rows& r, const float* panel) {
  float* y = r.y[0];
  const float* v = r.v[0];
  const int32_t* off = r.off[0];
  for (int64_t t = 0; t < kept; ++t) {
    const float w = v[t];
    const float* b = panel + off[t];
    for (int j = 0; j < PB; ++j) y[j] += w * b[j];
  }
}

#if NMS_X86
// AVX2: one row, PB/8 ymm accumulators.
template <int PB>
NMS_TARGET_AVX2 void sp_avx2(int64_t kept, const Rows& r, const float* panel) {
  constexpr int NV = PB / 8;
  float* y = r.y[0];
  const float* v = r.v[0];
  const int32_t* off = r.off[0];
  __m256 acc[NV];
#pragma GCC unroll 8
  for (int q = 0; q < NV; ++q) acc[q] = _mm256_loadu_ps(y + 8 * q);
  for (int64_t t = 0; t < kept; ++t) {
    const __m256 w = _mm256_broadcast_ss(v + t);
    const float* b = panel + off[t];
#pragma GCC unroll 8
    for (int q = 0; q < NV; ++q) acc[q] = _mm256_fmadd_ps(w, _mm256_loadu_ps(b + 8 * q), acc[q]);
  }
#pragma GCC unroll 8
  for (int q = 0; q < NV; ++q) _mm256_storeu_ps(y + 8 * q, acc[q]);
}

// AVX-512: RI rows interleaved, PB/16 zmm accumulators each.
template <int RI, int PB>
NMS_TARGET_AVX512 void sp_avx512(int64_t kept, const Rows& r, const float* panel) {
  constexpr int NV = PB / 16;
  __m512 acc[RI][NV];
  const float* v[RI];
  const int32_t* off[RI];
#pragma GCC unroll 4
  for (int i = 0; i < RI; ++i) {
    v[i] = r.v[i];
    off[i] = r.off[i];
#pragma GCC unroll 8
    for (int q = 0; q < NV; ++q) acc[i][q] = _mm512_loadu_ps(r.y[i] + 16 * q);
  }
#pragma GCC unroll 2
  for (int64_t t = 0; t < kept; ++t) {
#pragma GCC unroll 4
    for (int i = 0; i < RI; ++i) {
      const __m512 w = _mm512_set1_ps(v[i][t]);
      const float* b = panel + off[i][t];
#pragma GCC unroll 8
      for (int q = 0; q < NV; ++q) acc[i][q] = _mm512_fmadd_ps(w, _mm512_loadu_ps(b + 16 * q), acc[i][q]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < RI; ++i)
#pragma GCC unroll 8
    for (int q = 0; q < NV; ++q) _mm512_storeu_ps(r.y[i] + 16 * q, acc[i][q]);
}

// AVX-512, M <= 16, lanes = 16 rows of W̃. For a 16-column chunk of the block, X[j] holds op(B)[chunk, j] for J
// columns j of Y. A slot s (the s-th kept value of every row) gives V[s] (16 rows' values) and I[s] (each row's
// column inside the chunk), so Y[rows, j] += V[s] · permute(I[s], X[j]): the FMA's B operand comes from a
// register shuffle instead of a load, and every X[j] serves all the slots of its chunk.
//   V, I: [slots][16]; Bt: J rows of ldb floats (op(B)ᵀ block); T: [J][16] (Y[rows, j] of the tile).
template <int J>
NMS_TARGET_AVX512 void perm_kernel(int64_t nch, int sc, int sc_last, const float* V, const int32_t* I,
                                   const float* Bt, int64_t ldb, float* T, bool first) {
  __m512 acc[J];
#pragma GCC unroll 16
  for (int j = 0; j < J; ++j) acc[j] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(T + 16 * j);
  for (int64_t h = 0; h < nch; ++h) {
    __m512 X[J];
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) X[j] = _mm512_loadu_ps(Bt + j * ldb + 16 * h);
    const int slots = h + 1 == nch ? sc_last : sc;
#pragma GCC unroll 2
    for (int s = 0; s < slots; ++s) {
      const __m512 v = _mm512_loadu_ps(V + 16 * s);
      const __m512i idx = _mm512_loadu_si512(I + 16 * s);
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) acc[j] = _mm512_fmadd_ps(v, _mm512_permutexvar_ps(idx, X[j]), acc[j]);
    }
    V += 16 * sc;
    I += 16 * sc;
  }
#pragma GCC unroll 16
  for (int j = 0; j < J; ++j) _mm512_storeu_ps(T + 16 * j, acc[j]);
}
using PermKernel = void (*)(int64_t, int, int, const float*, const int32_t*, const float*, int64_t, float*, bool);
constexpr int kPermJ = 12;  // B columns per register block: 12 X + 12 accumulators + V, I, temporaries

// I[s*16 + l] for 2:4: one dword of positions per row holds 16 slots; rows are gathered 16 at a time.
NMS_TARGET_AVX512 void decode_idx_24(const uint8_t* pos, int64_t prb, int nr, int64_t tk0, int64_t S, int32_t* I) {
  const __mmask16 live = static_cast<__mmask16>((1u << nr) - 1);
  const __m512i rowoff = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(static_cast<int32_t>(prb)));
  const __m512i three = _mm512_set1_epi32(3);
  for (int64_t s0 = 0; s0 < S; s0 += 16) {
    const int64_t b = (tk0 + s0) / 4;
    __m512i d;
    if (b + 4 <= prb) {
      d = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rowoff, pos + b, 1);
    } else {  // the row's last bytes: never read past them
      alignas(64) int32_t w[16] = {};
      for (int l = 0; l < nr; ++l)
        for (int64_t i = 0; b + i < prb; ++i) w[l] |= static_cast<int32_t>(pos[l * prb + b + i]) << (8 * i);
      d = _mm512_load_si512(w);
    }
    const int64_t n = S - s0 < 16 ? S - s0 : 16;
    for (int q = 0; q < n; ++q) {
      const __m512i f = _mm512_and_si512(_mm512_srli_epi32(d, 2 * q), three);
      _mm512_storeu_si512(I + (s0 + q) * 16, _mm512_add_epi32(f, _mm512_set1_epi32(4 * ((q / 2) & 3))));
    }
  }
}

// The same for any N:M with M <= 16 (fields of 2-4 bits): a dword gathered per row holds the next 6-16 slots'
// fields at one bit offset for all rows, shifted out slot by slot. The per-field scalar loop it replaces took a
// third of a 4096² 1:4 call at 256 columns of Y (Zen 4), its cost per slot the same as 2:4's but over half the
// FMAs.
NMS_TARGET_AVX512 void decode_idx_nm(const uint8_t* pos, int64_t prb, int nr, int64_t tk0, int64_t S, int n, int m,
                                     int32_t* I) {
  const int bits = nm_pos_bits(m);
  const __mmask16 live = static_cast<__mmask16>((1u << nr) - 1);
  const __m512i rowoff = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(static_cast<int32_t>(prb)));
  const __m512i fmask = _mm512_set1_epi32((1 << bits) - 1);
  __m512i d = _mm512_setzero_si512();
  int64_t base = -1;  // the byte of each row that d's lanes start at
  for (int64_t s = 0; s < S; ++s) {
    const int64_t t = tk0 + s, bit = t * bits;
    if (base < 0 || bit + bits > 8 * (base + 4)) {
      base = bit >> 3;
      if (base + 4 <= prb) {
        d = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rowoff, pos + base, 1);
      } else {  // the row's last bytes: never read past them
        alignas(64) int32_t w[16] = {};
        for (int l = 0; l < nr; ++l)
          for (int64_t i = 0; base + i < prb; ++i) w[l] |= static_cast<int32_t>(pos[l * prb + base + i]) << (8 * i);
        d = _mm512_load_si512(w);
      }
    }
    const __m512i f = _mm512_and_si512(_mm512_srl_epi32(d, _mm_cvtsi64_si128(bit - 8 * base)), fmask);
    // The slot's column inside its 16-column chunk: its group's first (m divides 16) plus the field.
    _mm512_storeu_si512(I + s * 16, _mm512_add_epi32(f, _mm512_set1_epi32(static_cast<int32_t>((t / n) * m & 15))));
  }
}
#endif

// The kernels for one ISA and panel width: `multi` takes `ri` rows at once (null: rows go one by one).
struct KernelPair {
  SpKernel multi, one;
  int ri;   // rows `multi` takes
  int kcb;  // W̃ columns per panel
};

KernelPair kernels_for(Isa isa, int pb) {
#if NMS_X86
  if (isa == Isa::Avx512) {
    switch (pb) {
      case 16: return {sp_avx512<4, 16>, sp_avx512<1, 16>, 4, kKcb};
      case 32: return {sp_avx512<4, 32>, sp_avx512<1, 32>, 4, kKcb};
      case 64: return {sp_avx512<4, 64>, sp_avx512<1, 64>, 4, kKcb};
      // 8 vectors: one broadcast and one offset load per 8 FMAs (of 1.25 loads per FMA, which bound it); 64 columns
      // of W̃ keep the 32 KB panel in L1. 2 rows were 2-3% faster than 3 at 4096², 4 vectors 3-6% slower (Xeon).
      default: return {sp_avx512<2, 128>, sp_avx512<1, 128>, 2, 64};
    }
  }
  if (isa == Isa::Avx2) {
    switch (pb) {
      case 16: return {nullptr, sp_avx2<16>, 1, kKcb};
      case 32: return {nullptr, sp_avx2<32>, 1, kKcb};
      default: return {nullptr, sp_avx2<64>, 1, kKcb};
    }
  }
#endif
  switch (pb) {
    case 16: return {nullptr, sp_scalar<16>, 1, kKcb};
    case 32: return {nullptr, sp_scalar<32>, 1, kKcb};
    default: return {nullptr, sp_scalar<64>, 1, kKcb};
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Position decoding: off[t] = (column of kept value t within the block) · pb.

// For 2:4, one byte holds the positions of two groups: columns {f0, f1, 4 + f2, 4 + f3} of its 8.
struct Lut24 {
  int8_t col[256][4];
  Lut24() {
    for (int b = 0; b < 256; ++b)
      for (int q = 0; q < 4; ++q) col[b][q] = static_cast<int8_t>((q / 2) * 4 + ((b >> (2 * q)) & 3));
  }
};
const Lut24 kLut24;

// Writes ceil(kept/4)*4 offsets (the table decodes whole bytes; the extra ones are never read).
void decode_24(const uint8_t* pos, int64_t kept, int pb, int32_t* off) {
  const int64_t bytes = (kept + 3) / 4;
  for (int64_t b = 0; b < bytes; ++b) {
    const int8_t* c = kLut24.col[pos[b]];
    const int32_t base = static_cast<int32_t>(8 * b);
    for (int q = 0; q < 4; ++q) off[4 * b + q] = (base + c[q]) * pb;
  }
}

#if NMS_X86
// decode_24 on AVX-512, pb a power of two: 16 offsets from one dword of positions (its fields shifted out in the
// lanes): the table's scalar loop, whose adds and stores take issue slots on the FMA ports, had the driver at 28% of
// a 4096² call's samples at 256 columns of Y on a Xeon (18% with this). Reads no byte past the block's (kept + 3) / 4.
NMS_TARGET_AVX512 void decode_24_avx512(const uint8_t* pos, int64_t kept, int pb, int32_t* off) {
  const __m512i shift = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i group = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
  const __m512i lg = _mm512_set1_epi32(__builtin_ctz(static_cast<unsigned>(pb)));
  const int64_t bytes = (kept + 3) / 4;
  for (int64_t t = 0; t < kept; t += 16) {
    uint32_t w = 0;
    if (t / 4 + 4 <= bytes) std::memcpy(&w, pos + t / 4, 4);  // one load (byte stores would stall its forwarding)
    else
      for (int64_t b = t / 4; b < bytes; ++b) w |= static_cast<uint32_t>(pos[b]) << (8 * (b - t / 4));
    const __m512i f = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int32_t>(w)), shift),
                                       _mm512_set1_epi32(3));
    const __m512i c = _mm512_add_epi32(_mm512_add_epi32(f, group), _mm512_set1_epi32(static_cast<int32_t>(2 * t)));
    _mm512_storeu_si512(off + t, _mm512_sllv_epi32(c, lg));
  }
}
#endif

// Any N:M: kept value t0 + t of the row belongs to group t / n of the block.
void decode_nm(const uint8_t* row_pos, int64_t t0, int64_t kept, int n, int m, int pb, int32_t* off) {
  const int bits = nm_pos_bits(m);
  for (int64_t t = 0; t < kept; ++t)
    off[t] = static_cast<int32_t>((t / n) * m + nm_get_pos(row_pos, t0 + t, bits)) * pb;
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The dimensions of spmm_pack's row-interleaved form of an N:4 W̃ (spmm_packed): blocks of 16 rows, 16-column
// chunks, slots per chunk (the kept values of its 4 groups).
struct PackDims {
  int64_t nrb, nh, sc;
  int64_t value_floats() const { return nrb * nh * sc * 16; }
};
PackDims pack_dims(int64_t rows, int64_t cols, int n) { return {cdiv(rows, 16), cdiv(cols, 16), 4 * int64_t{n}}; }

void check(const SpmmArgs& s) {
  const NmMatrix& w = s.w;
  nm_validate(w.rows, w.cols, w.n, w.m);
  if (s.p < 1) fail("E_SHAPE", "spmm: p: got " + std::to_string(s.p) + ", expected p >= 1");
  const struct { DType d; const char* what; } ds[] = {{w.dtype, "values"}, {s.b_dtype, "b"}, {s.out_dtype, "out"}};
  for (const auto& x : ds)
    if (!is_float(x.d))
      fail("E_DTYPE", std::string("spmm: ") + x.what + " must be float32, float16 or bfloat16, got " + dtype_name(x.d));
  if (s.bias && !is_float(s.bias_dtype))
    fail("E_DTYPE", std::string("spmm: bias must be float32, float16 or bfloat16, got ") + dtype_name(s.bias_dtype));
}

#if NMS_X86
// ---------------------------------------------------------------------------------------------------------------
// Small-batch 2:4 (spmm_gemv24; p <= kGemvP rows of x, each contiguous): the driver below puts columns of Y in the
// lanes, which leaves 15 of 16 idle at p = 1. Here the lanes are the 8 kept values of 16 columns of a row of W̃,
// and their operands are picked from two 8-column vectors of x by vpermps, with the lane indices decoded from
// the 2-bit positions in registers. W̃ streams once in its compressed form, 0.53× the bytes of the dense weight,
// which at a batch of a few rows is the speed-up over the dense product.
constexpr int64_t kGemvP = 8;

// y[j][i] = Σ_t v_j[t] · x_i[col_j(t)] for JB consecutive rows of W̃ (values v, positions pos, strides kpr and
// prb) and IB rows of x (stride ldx), over `cols` columns. The x vectors of a chunk are loaded once for all JB rows.
template <int JB, int IB>
NMS_TARGET_AVX2 void gemv24_rows(int64_t cols, const float* v, int64_t kpr, const uint8_t* pos, int64_t prb,
                                 const float* x, int64_t ldx, float (*y)[2]) {
  __m256 acc[JB][IB];
  for (int j = 0; j < JB; ++j)
    for (int i = 0; i < IB; ++i) acc[j][i] = _mm256_setzero_ps();
  // Lane q's position is bits 2q..2q+1 of the chunk's 16 bits of positions; lanes 0-3 pick from x[c:+8], 4-7
  // from x[c+8:+8].
  const __m256i shift = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), three = _mm256_set1_epi32(3);
  const __m256i group = _mm256_setr_epi32(0, 0, 4, 4, 0, 0, 4, 4);
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    const int64_t t = c / 2;  // the chunk's first kept value; its positions are bytes t/4 and t/4 + 1
    __m256 lo[IB], hi[IB];
    for (int i = 0; i < IB; ++i) {
      lo[i] = _mm256_loadu_ps(x + i * ldx + c);
      hi[i] = _mm256_loadu_ps(x + i * ldx + c + 8);
    }
    for (int j = 0; j < JB; ++j) {
      uint16_t bits;
      std::memcpy(&bits, pos + j * prb + t / 4, 2);
      const __m256i idx = _mm256_add_epi32(
          _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi16(static_cast<int16_t>(bits)), shift), three), group);
      const __m256 vv = _mm256_loadu_ps(v + j * kpr + t);
      for (int i = 0; i < IB; ++i) {
        const __m256 g = _mm256_blend_ps(_mm256_permutevar8x32_ps(lo[i], idx), _mm256_permutevar8x32_ps(hi[i], idx), 0xf0);
        acc[j][i] = _mm256_fmadd_ps(vv, g, acc[j][i]);
      }
    }
  }
  for (int j = 0; j < JB; ++j)
    for (int i = 0; i < IB; ++i) {
      float sum = hsum8(acc[j][i]);
      for (int64_t t = c / 2; t < cols / 2; ++t)
        sum += v[j * kpr + t] * x[i * ldx + (t / 2) * 4 + nm_get_pos(pos + j * prb, t, 2)];
      y[j][i] = sum;
    }
}

bool gemv24(const SpmmArgs& s, Isa isa) {
  return isa != Isa::Scalar && s.w.n == 2 && s.w.m == 4 && s.p <= kGemvP && (s.trans_b || s.p == 1) &&
         s.w.dtype == DType::F32 && s.b_dtype == DType::F32 && s.out_dtype == DType::F32;
}

void spmm_gemv24(const SpmmArgs& s, const float* bias) {
  constexpr int JB = 4;
  const NmMatrix& W = s.w;
  const int64_t rows = W.rows, cols = W.cols, p = s.p;
  const int64_t kpr = nm_kept_per_row(cols, 2, 4), prb = nm_pos_row_bytes(cols, 2, 4);
  const float* values = static_cast<const float*>(W.values);
  const float* x = static_cast<const float*>(s.b);
  float* out = static_cast<float*>(s.out);
  // Y[r, i] (+ bias) into out, or its transpose when trans_out.
  auto store = [&](int64_t r, int64_t i, float y) { out[s.trans_out ? i * rows + r : r * p + i] = y + (bias ? bias[r] : 0.f); };
  const int64_t nb = cdiv(rows, JB);
  const bool parallel = static_cast<double>(rows) * kpr * p >= 32.0 * 32 * 32;
  parallel_for(nb, parallel ? cdiv(nb, 4 * num_threads()) : nb, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t r0 = q * JB, jn = std::min<int64_t>(JB, rows - r0);
      for (int64_t i = 0; i < p; i += 2) {
        const int ib = i + 2 <= p ? 2 : 1;
        const float* xi = x + i * cols;
        float y[JB][2];
        if (jn == JB) {
          const float* v = values + r0 * kpr;
          const uint8_t* pos = W.positions + r0 * prb;
          ib == 2 ? gemv24_rows<JB, 2>(cols, v, kpr, pos, prb, xi, cols, y) : gemv24_rows<JB, 1>(cols, v, kpr, pos, prb, xi, cols, y);
        } else {
          for (int64_t j = 0; j < jn; ++j) {
            const float* v = values + (r0 + j) * kpr;
            const uint8_t* pos = W.positions + (r0 + j) * prb;
            ib == 2 ? gemv24_rows<1, 2>(cols, v, kpr, pos, prb, xi, cols, y + j) : gemv24_rows<1, 1>(cols, v, kpr, pos, prb, xi, cols, y + j);
          }
        }
        for (int64_t j = 0; j < jn; ++j)
          for (int k = 0; k < ib; ++k) store(r0 + j, i + k, y[j][k]);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Small batches by picks (spmm_pick; AVX-512 any N:M, AVX2 M <= 16 below). Lanes are up to 16 kept values of a
// row of W̃ (a slot), and each lane's operand is picked by register permutes from the chunk of x its column falls
// in: a chunk is 16, 32 or 64 columns of x (one zmm: vpermps; two: vpermt2ps; four: two vpermt2ps and a blend, see
// pick_pattern) and holds K = C·N/M kept values in one or two slots. Per row of x a slot costs its permutes and an
// FMA (2:4: half the FMAs of the dense product, one vpermt2ps each), and W̃ streams once in its compressed form.
// A slot's positions (16 fields of 2-5 bits from a byte boundary + s0 bits) are decoded in registers: vpshufb
// gathers each field's two bytes, vpsrlvd aligns it (2:4: one dword, one shift). Up to 4 rows of x (and for a
// 2:4 weight that streams from memory), a slot is decoded where it is used; beyond, the decoded slots (indices
// and values) of 4 rows of W̃ and 1024 columns are kept in L1 and reused by every row of x. Tasks split the rows
// of W̃.
constexpr int kPickJb = 4;       // rows of W̃ per task step and register block
constexpr int kPickCols = 1024;  // W̃ columns per decoded block: a multiple of 32
constexpr int kPickAhead = 1024;  // bytes of values prefetched ahead

struct PickPattern {
  int bits, C, K, S;        // position bits; chunk width, kept values per chunk, slots per chunk
  int64_t nchunk, nfull;    // chunks per row (the last may be partial), chunks inside the row
  alignas(64) int8_t ctrl[8][32];   // per start-bit offset s0: vpshufb control (two bytes per lane)
  alignas(64) int32_t shift[8][16]; // per s0: each lane's shift inside its two bytes
  alignas(64) int32_t base[2][16];  // per slot: the column of each lane's group inside the chunk
};

// lanes: 16 (AVX-512) or 8 (AVX2, M <= 16). A chunk is two vectors of x when N/M <= 1/2 or M = 2·lanes, else one;
// four on AVX-512 when N/M <= 1/4 (64 columns: full slots for 1:4, 2:8; one slot's decode for 1:8's 64 columns).
void pick_pattern(int n, int m, int64_t cols, int lanes, PickPattern* pp) {
  PickPattern& P = *pp;
  P.bits = nm_pos_bits(m);
  P.C = lanes == 16 && 4 * n <= m ? 64 : m == 2 * lanes || 2 * n <= m ? 2 * lanes : lanes;
  P.K = P.C / m * n;
  P.S = (P.K + lanes - 1) / lanes;
  P.nchunk = cdiv(cols, P.C);
  P.nfull = cols / P.C;
  for (int s0 = 0; s0 < 8; ++s0)
    for (int l = 0; l < 16; ++l) {
      const int bp = s0 + l * P.bits;
      P.ctrl[s0][2 * l] = static_cast<int8_t>(bp >> 3);  // bytes 0-15 of each 128-bit half: the source is broadcast
      P.ctrl[s0][2 * l + 1] = static_cast<int8_t>((bp >> 3) + 1);
      P.shift[s0][l] = bp & 7;
    }
  for (int s = 0; s < 2; ++s)
    for (int l = 0; l < 16; ++l) P.base[s][l] = ((lanes * s + l) / n) * m;
}

// Slot s of chunk h of one row: its 16 column indices inside the chunk and its values, zero in lanes past the
// chunk's kept values. pos_avail and v_avail: the bytes of positions and the values that may be read from the
// row's start on (rows follow each other: only the last row's end must not be passed).
struct PickRow {
  const uint8_t* pos;
  const float* v;
  int64_t pos_avail, v_avail, kpr;
};
// B24: 2:4, whose slot is one dword of positions (16 fields of 2 bits), decoded by one shift and one and.
template <bool B24>
NMS_TARGET_AVX512 inline void pick_slot(const PickPattern& P, const PickRow& R, int64_t h, int s, __m512i* idx,
                                        __m512* vals) {
  const int64_t t0 = h * P.K + 16 * s;
  const int64_t bit = t0 * P.bits, byte = bit >> 3;
  // Ahead of the stream (the hardware prefetchers leave these loops short of the memory bandwidth); positions
  // once per 64-byte line.
  _mm_prefetch(reinterpret_cast<const char*>(R.v + t0) + kPickAhead, _MM_HINT_T0);
  if ((bit & 511) < 16 * P.bits) _mm_prefetch(reinterpret_cast<const char*>(R.pos + byte) + kPickAhead / 8, _MM_HINT_T0);
  __m512i f;
  if constexpr (B24) {
    uint32_t w = 0;
    if (byte + 4 <= R.pos_avail) std::memcpy(&w, R.pos + byte, 4);
    else  // the last row's end: never read past it
      for (int64_t i = 0; i < 4 && byte + i < R.pos_avail; ++i) w |= static_cast<uint32_t>(R.pos[byte + i]) << (8 * i);
    f = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int32_t>(w)),
                                           _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)),
                         _mm512_set1_epi32(3));
  } else {
    __m128i src;
    if (byte + 16 <= R.pos_avail) {
      src = _mm_loadu_si128(reinterpret_cast<const __m128i*>(R.pos + byte));
    } else {
      alignas(16) uint8_t t[16] = {};
      std::memcpy(t, R.pos + byte, static_cast<size_t>(std::clamp<int64_t>(R.pos_avail - byte, 0, 16)));
      src = _mm_load_si128(reinterpret_cast<const __m128i*>(t));
    }
    const int s0 = static_cast<int>(bit & 7);
    const __m256i two = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(src),
                                            _mm256_load_si256(reinterpret_cast<const __m256i*>(P.ctrl[s0])));
    f = _mm512_and_si512(_mm512_srlv_epi32(_mm512_cvtepu16_epi32(two), _mm512_load_si512(P.shift[s0])),
                         _mm512_set1_epi32((1 << P.bits) - 1));
  }
  const __m512i base = _mm512_load_si512(P.base[s]);
  const int64_t live = std::min<int64_t>(std::min<int64_t>(16, P.K - 16 * s), R.kpr - t0);
  const __mmask16 lm = static_cast<__mmask16>(live >= 16 ? 0xffff : live > 0 ? (1u << live) - 1 : 0);
  *idx = _mm512_maskz_add_epi32(lm, f, base);
  if (t0 + 16 <= R.v_avail) {  // a plain load (masked loads that miss the cache are slow), its dead lanes zeroed
    __m512 v = _mm512_loadu_ps(R.v + t0);
    __asm__("" : "+v"(v));  // keeps GCC from folding the load and the zeroing into a masked load
    *vals = _mm512_maskz_mov_ps(lm, v);
  } else {
    *vals = _mm512_maskz_loadu_ps(lm, R.v + t0);
  }
}

// pick_slot<true> for a chunk inside the row (h < nfull), without its bounds and lane checks.
NMS_TARGET_AVX512 inline void pick_slot24(const PickRow& R, int64_t h, __m512i* idx, __m512* vals) {
  uint32_t w;
  std::memcpy(&w, R.pos + 4 * h, 4);
  _mm_prefetch(reinterpret_cast<const char*>(R.v + 16 * h) + kPickAhead, _MM_HINT_T0);
  if ((h & 15) == 0) _mm_prefetch(reinterpret_cast<const char*>(R.pos + 4 * h) + kPickAhead / 8, _MM_HINT_T0);
  const __m512i f = _mm512_and_si512(
      _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int32_t>(w)),
                        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)),
      _mm512_set1_epi32(3));
  *idx = _mm512_add_epi32(f, _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28));
  *vals = _mm512_loadu_ps(R.v + 16 * h);
}

// dst[(h·S + s)·32 ..] = the indices then the values of slot s of chunk h0 + h, for nh chunks.
template <int S, bool B24>
NMS_TARGET_AVX512 void pick_decode(const PickPattern& P, const PickRow& R, int64_t h0, int64_t nh, float* dst) {
  for (int64_t h = 0; h < nh; ++h)
#pragma GCC unroll 2
    for (int s = 0; s < S; ++s) {
      __m512i idx;
      __m512 vals;
      if (B24 && h0 + h < P.nfull) pick_slot24(R, h0 + h, &idx, &vals);
      else pick_slot<B24>(P, R, h0 + h, s, &idx, &vals);
      _mm512_store_si512(dst + (h * S + s) * 32, idx);
      _mm512_store_ps(dst + (h * S + s) * 32 + 16, vals);
    }
}

// The operands of a slot from the NX vectors of x of its chunk: one vpermps, one vpermt2ps, or two and a blend on
// the index's bit 5.
template <int NX>
NMS_TARGET_AVX512 inline __m512 pick_x(const __m512* xr, __m512i idx) {
  if (NX == 1) return _mm512_permutexvar_ps(idx, xr[0]);
  const __m512 lo = _mm512_permutex2var_ps(xr[0], idx, xr[NX > 1 ? 1 : 0]);
  if (NX == 2) return lo;
  const __m512 hi = _mm512_permutex2var_ps(xr[NX > 2 ? 2 : 0], idx, xr[NX > 3 ? 3 : 0]);
  return _mm512_mask_blend_ps(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(32)), lo, hi);
}

// T[(i·JB + j)·16 ..] (+)= the slots of JB rows (decoded by pick_decode, row stride ld floats) times IB rows of x
// (stride ldx, from the block's first column) over nh chunks of C = 16·NX columns; `last` columns of the last chunk
// are read.
template <int IB, int NX, int S>
NMS_TARGET_AVX512 void pick_kernel(int64_t nh, int last, const float* dec, int64_t ld, const float* x, int64_t ldx,
                                   float* T, bool first) {
  constexpr int JB = kPickJb;
  __m512 acc[JB][IB];
#pragma GCC unroll 4
  for (int j = 0; j < JB; ++j)
#pragma GCC unroll 4
    for (int i = 0; i < IB; ++i) acc[j][i] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(T + (i * JB + j) * 16);
  for (int64_t h = 0; h < nh; ++h) {
    __m512 xr[IB][NX];
    if (h + 1 < nh) {
#pragma GCC unroll 4
      for (int i = 0; i < IB; ++i)
#pragma GCC unroll 2
        for (int q = 0; q < NX; ++q) xr[i][q] = _mm512_loadu_ps(x + i * ldx + (h * NX + q) * 16);
    } else {
#pragma GCC unroll 4
      for (int i = 0; i < IB; ++i)
#pragma GCC unroll 2
        for (int q = 0; q < NX; ++q) {
          const int w = std::min(16, std::max(0, last - 16 * q));
          xr[i][q] = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << w) - 1), x + i * ldx + (h * NX + q) * 16);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < JB; ++j)
#pragma GCC unroll 2
      for (int s = 0; s < S; ++s) {
        const float* d = dec + j * ld + (h * S + s) * 32;
        const __m512i idx = _mm512_load_si512(d);
        const __m512 vv = _mm512_load_ps(d + 16);
#pragma GCC unroll 4
        for (int i = 0; i < IB; ++i) {
          const __m512 g = pick_x<NX>(xr[i], idx);
          acc[j][i] = _mm512_fmadd_ps(vv, g, acc[j][i]);
        }
      }
  }
#pragma GCC unroll 4
  for (int j = 0; j < JB; ++j)
#pragma GCC unroll 4
    for (int i = 0; i < IB; ++i) _mm512_storeu_ps(T + (i * JB + j) * 16, acc[j][i]);
}
// The same for p <= kPickIb rows of x, decoding each slot where it is used (no L1 round trip): T[(i·JB + j)·16 ..]
// = the whole rows R[0..JB) times IB rows of x.
template <int IB, int NX, int S, bool B24>
NMS_TARGET_AVX512 void pick_fused(const PickPattern& P, const PickRow* R, int last, const float* x, int64_t ldx,
                                  float* T) {
  constexpr int JB = kPickJb;
  __m512 acc[JB][IB];
#pragma GCC unroll 4
  for (int j = 0; j < JB; ++j)
#pragma GCC unroll 4
    for (int i = 0; i < IB; ++i) acc[j][i] = _mm512_setzero_ps();
  const int64_t nh = P.nchunk;
  for (int64_t h = 0; h < nh; ++h) {
    __m512 xr[IB][NX];
#pragma GCC unroll 4
    for (int i = 0; i < IB; ++i)
#pragma GCC unroll 2
      for (int q = 0; q < NX; ++q) {
        const float* xp = x + i * ldx + (h * NX + q) * 16;
        const int w = h + 1 < nh ? 16 : std::min(16, std::max(0, last - 16 * q));
        xr[i][q] = w == 16 ? _mm512_loadu_ps(xp) : _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << w) - 1), xp);
      }
#pragma GCC unroll 4
    for (int j = 0; j < JB; ++j)
#pragma GCC unroll 2
      for (int s = 0; s < S; ++s) {
        __m512i idx;
        __m512 vv;
        if (B24 && h < P.nfull) pick_slot24(R[j], h, &idx, &vv);
        else pick_slot<B24>(P, R[j], h, s, &idx, &vv);
#pragma GCC unroll 4
        for (int i = 0; i < IB; ++i) {
          const __m512 g = pick_x<NX>(xr[i], idx);
          acc[j][i] = _mm512_fmadd_ps(vv, g, acc[j][i]);
        }
      }
  }
#pragma GCC unroll 4
  for (int j = 0; j < JB; ++j)
#pragma GCC unroll 4
    for (int i = 0; i < IB; ++i) _mm512_storeu_ps(T + (i * JB + j) * 16, acc[j][i]);
}
using PickFused = void (*)(const PickPattern&, const PickRow*, int, const float*, int64_t, float*);

// AVX2 (M <= 16): slots of 8 kept values, chunks of one or two ymm of x (two: two vpermps and a blend on the
// index's bit 3). Each slot is decoded where it is used, for every 2 rows of x.
NMS_TARGET_AVX2 inline void pick_slot8(const PickPattern& P, const PickRow& R, int64_t h, int s, __m256i* idx,
                                       __m256* vals) {
  const int64_t t0 = h * P.K + 8 * s;
  const int64_t bit = t0 * P.bits, byte = bit >> 3;
  _mm_prefetch(reinterpret_cast<const char*>(R.v + t0) + kPickAhead, _MM_HINT_T0);
  if ((bit & 511) < 8 * P.bits) _mm_prefetch(reinterpret_cast<const char*>(R.pos + byte) + kPickAhead / 8, _MM_HINT_T0);
  __m128i src;  // 8 fields of at most 4 bits from bit s0 <= 7: 5 bytes
  if (byte + 8 <= R.pos_avail) {
    src = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(R.pos + byte));
  } else {
    alignas(16) uint8_t t[16] = {};
    std::memcpy(t, R.pos + byte, static_cast<size_t>(std::clamp<int64_t>(R.pos_avail - byte, 0, 8)));
    src = _mm_load_si128(reinterpret_cast<const __m128i*>(t));
  }
  const int s0 = static_cast<int>(bit & 7);
  const __m128i two = _mm_shuffle_epi8(src, _mm_load_si128(reinterpret_cast<const __m128i*>(P.ctrl[s0])));
  const __m256i f = _mm256_and_si256(
      _mm256_srlv_epi32(_mm256_cvtepu16_epi32(two), _mm256_load_si256(reinterpret_cast<const __m256i*>(P.shift[s0]))),
      _mm256_set1_epi32((1 << P.bits) - 1));
  const __m256i base = _mm256_load_si256(reinterpret_cast<const __m256i*>(P.base[s]));
  const int64_t live = std::min<int64_t>(std::min<int64_t>(8, P.K - 8 * s), R.kpr - t0);
  const __m256i lm = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::max<int64_t>(live, 0))),
                                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  *idx = _mm256_and_si256(_mm256_add_epi32(f, base), lm);
  *vals = t0 + 8 <= R.v_avail ? _mm256_and_ps(_mm256_loadu_ps(R.v + t0), _mm256_castsi256_ps(lm))
                              : _mm256_maskload_ps(R.v + t0, lm);
}

template <int IB, int NX, int S>
NMS_TARGET_AVX2 void pick_fused8(const PickPattern& P, const PickRow* R, int last, const float* x, int64_t ldx, float* T) {
  constexpr int JB = kPickJb;
  __m256 acc[JB][IB];
#pragma GCC unroll 4
  for (int j = 0; j < JB; ++j)
#pragma GCC unroll 2
    for (int i = 0; i < IB; ++i) acc[j][i] = _mm256_setzero_ps();
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int64_t nh = P.nchunk;
  for (int64_t h = 0; h < nh; ++h) {
    __m256 xr[IB][NX];
#pragma GCC unroll 2
    for (int i = 0; i < IB; ++i)
#pragma GCC unroll 2
      for (int q = 0; q < NX; ++q) {
        const float* xp = x + i * ldx + (h * NX + q) * 8;
        const int w = h + 1 < nh ? 8 : std::min(8, std::max(0, last - 8 * q));
        xr[i][q] = w == 8 ? _mm256_loadu_ps(xp) : _mm256_maskload_ps(xp, _mm256_cmpgt_epi32(_mm256_set1_epi32(w), lane));
      }
#pragma GCC unroll 4
    for (int j = 0; j < JB; ++j)
#pragma GCC unroll 2
      for (int s = 0; s < S; ++s) {
        __m256i idx;
        __m256 vv;
        pick_slot8(P, R[j], h, s, &idx, &vv);
        const __m256 hi = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));  // sign bit: column in the second vector
#pragma GCC unroll 2
        for (int i = 0; i < IB; ++i) {
          __m256 g = _mm256_permutevar8x32_ps(xr[i][0], idx);
          if (NX == 2) g = _mm256_blendv_ps(g, _mm256_permutevar8x32_ps(xr[i][NX - 1], idx), hi);
          acc[j][i] = _mm256_fmadd_ps(vv, g, acc[j][i]);
        }
      }
  }
#pragma GCC unroll 4
  for (int j = 0; j < JB; ++j)
#pragma GCC unroll 2
    for (int i = 0; i < IB; ++i) _mm256_storeu_ps(T + (i * JB + j) * 8, acc[j][i]);
}
NMS_TARGET_AVX2 float hsum8_at(const float* t) { return hsum8(_mm256_loadu_ps(t)); }

using PickKernel = void (*)(int64_t, int, const float*, int64_t, const float*, int64_t, float*, bool);
constexpr int kPickIb = 4;

template <int NX, int S>
PickKernel pick_kernel_for(int ib) {
  static const PickKernel k[kPickIb] = {pick_kernel<1, NX, S>, pick_kernel<2, NX, S>, pick_kernel<3, NX, S>,
                                        pick_kernel<4, NX, S>};
  return k[ib - 1];
}
template <int NX, int S, bool B24 = false>
PickFused pick_fused_for(int ib) {
  static const PickFused k[kPickIb] = {pick_fused<1, NX, S, B24>, pick_fused<2, NX, S, B24>, pick_fused<3, NX, S, B24>,
                                       pick_fused<4, NX, S, B24>};
  return k[ib - 1];
}
template <int NX, int S>
PickFused pick_fused8_for(int ib) {
  static const PickFused k[2] = {pick_fused8<1, NX, S>, pick_fused8<2, NX, S>};
  return k[ib - 1];
}

NMS_TARGET_AVX512 float hsum16_at(const float* t) { return _mm512_reduce_add_ps(_mm512_loadu_ps(t)); }

// Up to how many rows of x the picks beat the other kernels (measured on a Zen 5, 1024² to 4096², one thread).
// AVX-512: 2:4 has spmm_perm's fast decode beyond 8 rows; sparser patterns with M <= 16 go to spmm_perm beyond
// 16; the rest (denser patterns, M = 32) only have slower drivers, which the picks beat up to 32 rows and more.
// AVX2: 2:4 is spmm_gemv24's (its decode is three instructions); M = 32 is not done; the lane-per-column driver
// wins from 5 rows of x on where N/M < 1/4 and from 9 on otherwise.
bool pick_batch(const SpmmArgs& s, Isa isa) {
  const int n = s.w.n, m = s.w.m;
  const bool is24 = n == 2 && m == 4;
  const int64_t most = isa == Isa::Avx2 ? (is24 || m > 16 ? 0 : 4 * n < m ? 4 : 8)
                                        : is24 ? 8 : 2 * n < m && m <= 16 ? 16 : 32;
  return isa != Isa::Scalar && s.p <= most && (s.trans_b || s.p == 1) && s.w.dtype == DType::F32 &&
         s.b_dtype == DType::F32;
}

constexpr int64_t kPickStreamBytes = int64_t{8} << 20;

void spmm_pick(const SpmmArgs& s, Isa isa, const float* bias) {
  constexpr int JB = kPickJb;
  const NmMatrix& W = s.w;
  const int64_t rows = W.rows, cols = W.cols, p = s.p;
  const int64_t kpr = nm_kept_per_row(cols, W.n, W.m), prb = nm_pos_row_bytes(cols, W.n, W.m);
  const bool z = isa == Isa::Avx512;
  const int lanes = z ? 16 : 8;
  PickPattern P;
  pick_pattern(W.n, W.m, cols, lanes, &P);
  const int NX = P.C / lanes;
  PickKernel kern[kPickIb];
  for (int ib = 1; ib <= kPickIb; ++ib)
    kern[ib - 1] = NX == 1 ? pick_kernel_for<1, 1>(ib) : NX == 4 ? pick_kernel_for<4, 1>(ib)
                   : P.S == 1 ? pick_kernel_for<2, 1>(ib) : pick_kernel_for<2, 2>(ib);
  // AVX2 always decodes slots where they are used, for every 2 rows of x; AVX-512 up to 4 rows of x, and for a
  // 2:4 weight that streams from memory (over kPickStreamBytes): decoding in registers for every 4 rows keeps
  // its loads going, where decoding a block into L1 first leaves memory idle while the block is multiplied
  // (interleaved on a shared 2-core Xeon: 4096² at 6-8 rows 1.1-1.5x, 2048² 1.1-1.25x; a 1024² weight stays
  // in cache, where the L1 decode is ~10% faster).
  const bool b24_stream = W.n == 2 && W.m == 4 && rows * (kpr * 4 + prb) > kPickStreamBytes;
  const bool fused = !z || p <= kPickIb || b24_stream;
  const int fib = z ? kPickIb : 2;
  PickFused fk[kPickIb];
  const bool b24 = z && W.n == 2 && W.m == 4;
  for (int ib = 1; ib <= fib; ++ib)
    fk[ib - 1] = !z ? (NX == 1 ? pick_fused8_for<1, 1>(ib) : P.S == 1 ? pick_fused8_for<2, 1>(ib)
                                                              : pick_fused8_for<2, 2>(ib))
                 : b24     ? pick_fused_for<2, 1, true>(ib)
                 : NX == 1 ? pick_fused_for<1, 1>(ib)
                 : NX == 4 ? pick_fused_for<4, 1>(ib)
                 : P.S == 1 ? pick_fused_for<2, 1>(ib)
                            : pick_fused_for<2, 2>(ib);
  const auto decode = b24 ? pick_decode<1, true> : P.S == 1 ? pick_decode<1, false> : pick_decode<2, false>;
  const int tail = static_cast<int>(cols - (P.nchunk - 1) * P.C);
  const int64_t bh = kPickCols / P.C;  // chunks per decoded block
  const int64_t ld = bh * P.S * 32;    // floats per row of the decoded block
  const float* values = static_cast<const float*>(W.values);
  const float* x = static_cast<const float*>(s.b);
  auto row = [&](int64_t r) {
    return PickRow{W.positions + r * prb, values + r * kpr, (rows - r) * prb, (rows - r) * kpr, kpr};
  };
  const int64_t nb = cdiv(rows, JB);
  const bool parallel = static_cast<double>(rows) * kpr * p >= 32.0 * 32 * 32;
  parallel_for(nb, parallel ? cdiv(nb, 4 * num_threads()) : nb, [&](int64_t q0, int64_t q1) {
    thread_local Scratch s_dec, s_t;
    float* dec = s_dec.floats(static_cast<size_t>(JB * ld));
    float* T = s_t.floats(static_cast<size_t>(p * JB * 16));
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t r0 = q * JB, jn = std::min<int64_t>(JB, rows - r0);
      if (fused) {
        PickRow R[JB];
        for (int64_t j = 0; j < JB; ++j) R[j] = j < jn ? row(r0 + j) : PickRow{W.positions, values, 0, 0, 0};
        for (int64_t i = 0; i < p; i += fib)
          fk[std::min<int64_t>(fib, p - i) - 1](P, R, tail, x + i * cols, cols, T + i * JB * lanes);
      } else {
        for (int64_t h0 = 0; h0 < P.nchunk; h0 += bh) {
          const int64_t nh = std::min(bh, P.nchunk - h0);
          for (int64_t j = 0; j < JB; ++j) {
            if (j < jn) decode(P, row(r0 + j), h0, nh, dec + j * ld);
            else std::fill(dec + j * ld, dec + j * ld + nh * P.S * 32, 0.f);  // the last task's missing rows
          }
          const int last = static_cast<int>(std::min<int64_t>(P.C, cols - (h0 + nh - 1) * P.C));
          for (int64_t i = 0; i < p; i += kPickIb) {
            const int ib = static_cast<int>(std::min<int64_t>(kPickIb, p - i));
            kern[ib - 1](nh, last, dec, ld, x + i * cols + h0 * P.C, cols, T + i * JB * 16, h0 == 0);
          }
        }
      }
      for (int64_t i = 0; i < p; ++i)
        for (int64_t j = 0; j < jn; ++j) {
          const int64_t r = r0 + j;
          const float* t = T + (i * JB + j) * lanes;
          const float y = (z ? hsum16_at(t) : hsum8_at(t)) + (bias ? bias[r] : 0.f);
          store_from_f32(s.out, s.out_dtype, s.trans_out ? i * rows + r : r * p + i, y);
        }
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Small batches from the row-interleaved pack (spmm_packed; AVX-512, N:4, the caller's spmm_pack copy of W̃).
// Lanes are 16 rows of W̃, as in spmm_perm, but the values come transposed from the pack instead of per call: slot
// s of a 16-column chunk holds the s-th kept value of each row, and Y[rows, i] += V[s]·vpermps(I[s], x_i[chunk]),
// with I[s] = 4·(s / N) + the rows' positions (one dword of 2-bit fields per slot: one shift and one ternlog,
// shared by all the rows of x). One-source vpermps + FMA is what this costs per 16 kept values and row of x: on
// Zen 4 (512-bit ops double-pumped) 1.4 cycles, where spmm_pick's two-source vpermt2ps + FMA takes 1.9-2.0 and a
// dense FMA 1.0 (in-L1 microbenchmark); vexpandps (decode into a dense chunk) measured ~5 cycles per zmm there,
// slower than either. Each task streams one contiguous block (the pack is read once per 8 rows of x), and its 16
// sums per row of x are one masked store, no horizontal reduction. Tasks split the row blocks.
// Up to how many rows of x the pack is read; beyond, spmm_perm's own transposes. Kernel A/B on Zen 4, 2 threads, 2:4:
// the pack 1.1-1.5x faster at 48-128 rows (1024x784, 1024², 4096²; 1:4 too), a tie at 256 and 512.
constexpr int64_t kPackedP = 256;
// How far ahead (bytes of values; positions at 1/16 of that) packed_kernel prefetches its block's stream from two rows
// of x on. A weight that streams from memory otherwise waits on it: the hardware prefetcher runs too short a way
// ahead of a kernel that spends 90 cycles on a chunk (8 rows of x). Zen 4, 2 threads, 4096² 2:4 at 4/8/16/32 rows
// 1.89/2.70/3.76/6.12 -> 1.12/1.43/2.91/5.18 ms (1 KB and 2 KB ahead: less); 1024² (in cache) unchanged.
constexpr int kPackedAhead = 4096;

// y[i] = Σ over the block's chunks of its slots times row i of x (IB rows, stride ldx), NA accumulators per row
// (the FMA latency: 4 chains in flight at one row of x). `last`: columns of the last chunk (1-16), the rest of
// its x lanes read as zeros (its dead slots point there, with zero values).
template <int N, int IB, int NA>
NMS_TARGET_AVX512 void packed_kernel(const float* V, const uint32_t* P, int64_t nh, int last, const float* x,
                                     int64_t ldx, __m512* y) {
  constexpr int SC = 4 * N;
  const __m512i shift = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i three = _mm512_set1_epi32(3);
  __m512 acc[NA][IB];
#pragma GCC unroll 4
  for (int a = 0; a < NA; ++a)
#pragma GCC unroll 8
    for (int i = 0; i < IB; ++i) acc[a][i] = _mm512_setzero_ps();
  const __mmask16 tail = static_cast<__mmask16>((1u << last) - 1);
  for (int64_t h = 0; h < nh; ++h) {
    if constexpr (IB >= 2) {  // one row of x streams at memory bandwidth without it
      const char* pv = reinterpret_cast<const char*>(V + h * SC * 16) + kPackedAhead;
#pragma GCC unroll 12
      for (int l = 0; l < SC; ++l) _mm_prefetch(pv + 64 * l, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(P + h * SC) + kPackedAhead / 16, _MM_HINT_T0);  // 1/16 of V's bytes
    }
    __m512 X[IB];
    const bool partial = h + 1 == nh && last < 16;
#pragma GCC unroll 8
    for (int i = 0; i < IB; ++i)
      X[i] = partial ? _mm512_maskz_loadu_ps(tail, x + i * ldx + 16 * h) : _mm512_loadu_ps(x + i * ldx + 16 * h);
#pragma GCC unroll 12
    for (int s = 0; s < SC; ++s) {
      const __m512i f = _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int32_t>(P[h * SC + s])), shift);
      const __m512i idx = _mm512_ternarylogic_epi32(f, three, _mm512_set1_epi32(4 * (s / N)), 0xea);  // f & 3 | base
      const __m512 v = _mm512_loadu_ps(V + (h * SC + s) * 16);
#pragma GCC unroll 8
      for (int i = 0; i < IB; ++i) acc[s % NA][i] = _mm512_fmadd_ps(v, _mm512_permutexvar_ps(idx, X[i]), acc[s % NA][i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < IB; ++i) {
    __m512 t = acc[0][i];
#pragma GCC unroll 4
    for (int a = 1; a < NA; ++a) t = _mm512_add_ps(t, acc[a][i]);
    y[i] = t;
  }
}
using PackedKernel = void (*)(const float*, const uint32_t*, int64_t, int, const float*, int64_t, __m512*);
// Rows of x per kernel call: 8, 4, 2 or 1 (index 0-3).
template <int N>
PackedKernel packed_kernel_for(int k) {
  static const PackedKernel t[4] = {packed_kernel<N, 8, 1>, packed_kernel<N, 4, 1>, packed_kernel<N, 2, 2>,
                                    packed_kernel<N, 1, 4>};
  return t[k];
}

bool packed_batch(const SpmmArgs& s, Isa isa) {
  return s.w_packed && isa == Isa::Avx512 && s.w.m == 4 && s.p <= kPackedP && (s.trans_b || s.p == 1) &&
         s.w.dtype == DType::F32 && s.b_dtype == DType::F32;
}

// Row block rb of Y (its rows of every row of x), in out's layout and dtype.
NMS_TARGET_AVX512 void packed_block(const SpmmArgs& s, const PackDims& d, const PackedKernel* kern, const float* bias,
                                    int64_t rb) {
  const int64_t rows = s.w.rows, cols = s.w.cols, p = s.p, r0 = rb * 16;
  const int last = static_cast<int>(cols - (d.nh - 1) * 16);
  const int nr = static_cast<int>(std::min<int64_t>(16, rows - r0));
  const __mmask16 mr = static_cast<__mmask16>((1u << nr) - 1);
  const __m512 b = bias ? _mm512_maskz_loadu_ps(mr, bias + r0) : _mm512_setzero_ps();
  const float* V = s.w_packed + rb * d.nh * d.sc * 16;
  const uint32_t* P = reinterpret_cast<const uint32_t*>(s.w_packed + d.value_floats()) + rb * d.nh * d.sc;
  const float* x = static_cast<const float*>(s.b);
  for (int64_t i0 = 0; i0 < p;) {
    const int64_t left = p - i0;
    const int k = left >= 8 ? 0 : left >= 4 ? 1 : left >= 2 ? 2 : 3, ib = 8 >> k;
    __m512 y[8];
    kern[k](V, P, d.nh, last, x + i0 * cols, cols, y);
    for (int i = 0; i < ib; ++i) {
      const __m512 t = _mm512_add_ps(y[i], b);
      if (s.out_dtype == DType::F32 && s.trans_out) {
        _mm512_mask_storeu_ps(static_cast<float*>(s.out) + (i0 + i) * rows + r0, mr, t);
      } else {
        alignas(64) float tmp[16];
        _mm512_store_ps(tmp, t);
        for (int l = 0; l < nr; ++l)
          store_from_f32(s.out, s.out_dtype, s.trans_out ? (i0 + i) * rows + r0 + l : (r0 + l) * p + i0 + i, tmp[l]);
      }
    }
    i0 += ib;
  }
}

void spmm_packed(const SpmmArgs& s, const float* bias) {
  const PackDims d = pack_dims(s.w.rows, s.w.cols, s.w.n);
  PackedKernel kern[4];
  for (int k = 0; k < 4; ++k)
    kern[k] = s.w.n == 1 ? packed_kernel_for<1>(k) : s.w.n == 2 ? packed_kernel_for<2>(k) : packed_kernel_for<3>(k);
  // One thread below 64³ dense multiply-adds, as gemm(). (With a pool that slept between jobs a second thread lost up
  // to 4M: its wake-up took as long as a 1024² layer at one row; now the MNIST MLP's 2:4 forward at one row is 1.5x
  // faster on two threads of a Zen 4, 0.058 -> 0.039 ms, and 1.2x at two and four rows.)
  const bool parallel = static_cast<double>(s.w.rows) * s.w.cols * s.p >= 64.0 * 64 * 64;
  parallel_for(d.nrb, parallel ? cdiv(d.nrb, 4 * num_threads()) : d.nrb, [&](int64_t q0, int64_t q1) {
    for (int64_t rb = q0; rb < q1; ++rb) packed_block(s, d, kern, bias, rb);
  });
}
#endif

// ---------------------------------------------------------------------------------------------------------------
// Generic driver (any ISA, any N:M): lanes = columns of Y, one panel load per FMA.

// spmm_rows's panel width (columns of Y per task) for p columns; the last panel's lanes past p are computed too.
int rows_panel(int64_t p, Isa isa) { return p <= 16 ? 16 : p <= 32 ? 32 : p < 128 || isa != Isa::Avx512 ? 64 : 128; }

void spmm_rows(const SpmmArgs& s, Isa isa, const float* bias) {
  const NmMatrix& W = s.w;
  const int64_t rows = W.rows, cols = W.cols, p = s.p;
  const int n = W.n, m = W.m;
  const int64_t kpr = nm_kept_per_row(cols, n, m);   // values per row
  const int64_t prb = nm_pos_row_bytes(cols, n, m);  // position bytes per row
  const bool is24 = n == 2 && m == 4;

  const int pb = rows_panel(p, isa);
  const KernelPair K = kernels_for(isa, pb);
  const int64_t kcb = K.kcb;
  const int64_t njb = cdiv(p, pb);

  // X(j, c) = op(B)[c][j], as pack_panel reads it: B is [cols, p], or [p, cols] when trans_b.
  const PackSrc bsrc{s.b, s.b_dtype, s.trans_b ? cols : p, !s.trans_b};

  // Row blocks: as tall as 256 rows, fewer when that leaves the pool without enough tasks.
  const int threads = num_threads();
  int64_t rb = 256;
  while (rb > kRi && cdiv(rows, rb) * njb < 4 * threads) rb /= 2;
  const int64_t nrb = cdiv(rows, rb);
  const bool parallel = static_cast<double>(rows) * kpr * p >= 32.0 * 32 * 32;
  const int64_t kcb_kept = kcb / m * n;

  parallel_for(nrb * njb, parallel ? 1 : nrb * njb, [&](int64_t t0, int64_t t1) {
    thread_local Scratch s_panel, s_tile, s_off, s_val;
    float* panel = s_panel.floats(static_cast<size_t>(kcb) * pb);
    float* tile = s_tile.floats(static_cast<size_t>(rb) * pb);
    int32_t* offs = s_off.as<int32_t>(static_cast<size_t>(kRi) * (kcb_kept + 4));
    float* vbuf = W.dtype == DType::F32 ? nullptr : s_val.floats(static_cast<size_t>(kRi) * kcb_kept);

    for (int64_t task = t0; task < t1; ++task) {
      const int64_t r0 = (task / njb) * rb, nr = std::min(rb, rows - r0);
      const int64_t j0 = (task % njb) * pb, nj = std::min<int64_t>(pb, p - j0);
      std::fill(tile, tile + nr * pb, 0.f);

      for (int64_t c0 = 0; c0 < cols; c0 += kcb) {
        const int64_t kc = std::min<int64_t>(kcb, cols - c0);
        const int64_t kept = kc / m * n, tk0 = c0 / m * n;
        pack_panel(isa, bsrc, j0, nj, c0, kc, pb, panel);

        for (int64_t r = 0; r < nr;) {
          const int ri = K.multi && nr - r >= K.ri ? K.ri : 1;
          // The values and positions of the rows kRowsAhead on (past the block's end: its first ones in the next
          // column block) towards L1: the rows are far apart, and the hardware prefetchers do not follow them
          // (4096² at 64 columns of Y on a Xeon: 1.25x with this).
          for (int i = 0; i < ri; ++i) {
            const int64_t a = r + i + kRowsAhead, ac0 = a < nr ? c0 : c0 + kcb;
            if (ac0 >= cols || a >= 2 * nr) continue;
            const int64_t row = r0 + (a < nr ? a : a - nr), es = static_cast<int64_t>(dtype_size(W.dtype));
            const char* v = static_cast<const char*>(W.values) + (row * kpr + ac0 / m * n) * es;
            for (int64_t b = 0; b < kcb_kept * es; b += 64) __builtin_prefetch(v + b);
            __builtin_prefetch(W.positions + row * prb + ac0 / m * n * nm_pos_bits(m) / 8);
          }
          Rows R;
          for (int i = 0; i < ri; ++i) {
            const int64_t row = r0 + r + i;
            const uint8_t* pos = W.positions + row * prb;
            int32_t* off = offs + i * (kcb_kept + 4);
            if (!is24) decode_nm(pos, tk0, kept, n, m, pb, off);
#if NMS_X86
            else if (isa == Isa::Avx512) decode_24_avx512(pos + c0 / 8, kept, pb, off);
#endif
            else decode_24(pos + c0 / 8, kept, pb, off);
            R.off[i] = off;
            if (W.dtype == DType::F32) {
              R.v[i] = static_cast<const float*>(W.values) + row * kpr + tk0;
            } else {
              float* vb = vbuf + i * kcb_kept;
              convert_to_f32(isa, static_cast<const uint16_t*>(W.values) + row * kpr + tk0, W.dtype, kept, vb);
              R.v[i] = vb;
            }
            R.y[i] = tile + (r + i) * pb;
          }
          (ri > 1 ? K.multi : K.one)(kept, R, panel);
          r += ri;
        }
      }

      // Y[r0 + r, j0 + j] = tile[r][j] + bias[r0 + r], into out or its transpose, in out's dtype.
      const int64_t ld = s.trans_out ? rows : p;
      if (s.out_dtype == DType::F32) {
        float* o = static_cast<float*>(s.out);
        if (!s.trans_out) {
          for (int64_t r = 0; r < nr; ++r) {
            const float b = bias ? bias[r0 + r] : 0.f;
            for (int64_t j = 0; j < nj; ++j) o[(r0 + r) * ld + j0 + j] = tile[r * pb + j] + b;
          }
        } else {
          for (int64_t j = 0; j < nj; ++j)
            for (int64_t r = 0; r < nr; ++r)
              o[(j0 + j) * ld + r0 + r] = tile[r * pb + j] + (bias ? bias[r0 + r] : 0.f);
        }
      } else {
        for (int64_t r = 0; r < nr; ++r) {
          const float b = bias ? bias[r0 + r] : 0.f;
          for (int64_t j = 0; j < nj; ++j) {
            const int64_t at = s.trans_out ? (j0 + j) * ld + r0 + r : (r0 + r) * ld + j0 + j;
            store_from_f32(s.out, s.out_dtype, at, tile[r * pb + j] + b);
          }
        }
      }
    }
  });
}

#if NMS_X86
// ---------------------------------------------------------------------------------------------------------------
// AVX-512 driver for M <= 16 (perm_kernel). For each block of JB columns of Y: op(B)ᵀ [JB][cols] is packed once
// (caller scratch, all threads), then tasks of RR rows run on the pool: for each KC block of W̃'s columns and each
// 16-row block, the kept values are transposed into V and the positions decoded into I (L1), and perm_kernel runs
// over the JB columns in register blocks of 12 (8 + 8 at the end rather than 12 + 4).

constexpr int64_t kPermKc = 256;  // W̃ columns per block: a multiple of 16 and of every M <= 16
constexpr int64_t kPermJb = 516;  // widest block of Y columns (a multiple of 4)

NMS_TARGET_AVX512 void store_tile_perm(const SpmmArgs& s, const float* bias, const float* T, int64_t r0, int64_t nr,
                                       int64_t j0, int64_t nj, int64_t jb) {
  const int64_t rows = s.w.rows, p = s.p;
  for (int64_t rb = 0; rb < nr; rb += 16) {
    const int nrb = static_cast<int>(std::min<int64_t>(16, nr - rb));
    const __mmask16 live = static_cast<__mmask16>((1u << nrb) - 1);
    const float* Tb = T + (rb / 16) * jb * 16;  // [jb][16]: Y[r0 + rb + l, j0 + j] at Tb[16 j + l]
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(live, bias + r0 + rb) : _mm512_setzero_ps();
    if (s.out_dtype != DType::F32) {
      alignas(64) float b16[16];
      _mm512_store_ps(b16, bv);
      for (int64_t j = 0; j < nj; ++j)
        for (int l = 0; l < nrb; ++l) {
          const int64_t r = r0 + rb + l;
          store_from_f32(s.out, s.out_dtype, s.trans_out ? (j0 + j) * rows + r : r * p + j0 + j, Tb[16 * j + l] + b16[l]);
        }
      continue;
    }
    float* o = static_cast<float*>(s.out);
    if (s.trans_out) {  // out[j, r]: one row of 16 lanes per column j
      for (int64_t j = 0; j < nj; ++j)
        _mm512_mask_storeu_ps(o + (j0 + j) * rows + r0 + rb, live, _mm512_add_ps(_mm512_loadu_ps(Tb + 16 * j), bv));
      continue;
    }
    alignas(64) float b16[16];
    _mm512_store_ps(b16, bv);
    for (int64_t j = 0; j < nj; j += 16) {  // out[r, j]: transpose 16 columns × 16 rows
      const int64_t w = std::min<int64_t>(16, nj - j);
      __m512 t[16];
      for (int i = 0; i < 16; ++i) t[i] = i < w ? _mm512_loadu_ps(Tb + 16 * (j + i)) : _mm512_setzero_ps();
      transpose16(t);
      const __mmask16 cols = static_cast<__mmask16>(w >= 16 ? 0xffff : (1u << w) - 1);
      for (int l = 0; l < nrb; ++l)
        _mm512_mask_storeu_ps(o + (r0 + rb + l) * p + j0 + j, cols, _mm512_add_ps(t[l], _mm512_set1_ps(b16[l])));
    }
  }
}

// Brings row `row` of this block's values and positions towards L1 ahead of use: the 16 rows a block reads are
// far apart in memory, which the hardware prefetchers do not follow. Called for one row of the next 16-row block
// per register block of the current one, so that the requests spread over the computation.
void prefetch_row(const NmMatrix& W, int64_t kpr, int64_t prb, int64_t row, int64_t tk0, int64_t S) {
  const int64_t es = static_cast<int64_t>(dtype_size(W.dtype));
  const char* v = static_cast<const char*>(W.values) + (row * kpr + tk0) * es;
  for (int64_t b = 0; b < S * es; b += 64) _mm_prefetch(v + b, _MM_HINT_T0);
  const uint8_t* pos = W.positions + row * prb + tk0 * nm_pos_bits(W.m) / 8;
  for (int64_t b = 0; b < (S * nm_pos_bits(W.m) + 7) / 8; b += 64) _mm_prefetch(reinterpret_cast<const char*>(pos + b), _MM_HINT_T0);
}

void spmm_perm(const SpmmArgs& s, const float* bias) {
  const NmMatrix& W = s.w;
  const int64_t rows = W.rows, cols = W.cols, p = s.p;
  const int n = W.n, m = W.m;
  const int64_t kpr = nm_kept_per_row(cols, n, m), prb = nm_pos_row_bytes(cols, n, m);
  const bool is24 = n == 2 && m == 4;
  const int sc = 16 / m * n;  // slots per 16-column chunk

  const int64_t njb = cdiv(p, kPermJb);
  const int64_t jb = cdiv(cdiv(p, njb), 4) * 4;
  const int threads = num_threads();
  int64_t rr = 128;
  while (rr > 16 && cdiv(rows, rr) < 4 * threads) rr /= 2;
  const int64_t nrr = cdiv(rows, rr);
  const bool parallel = static_cast<double>(rows) * kpr * p >= 32.0 * 32 * 32;

  // op(B)ᵀ, one row of cols floats per column j of Y, packed once per block of JB columns into caller scratch, its
  // rows padded so that the J rows a kernel reads do not share cache sets. (Reading x in place for x·W̃ᵀ was
  // slower: its power-of-two row strides collide in L1 and L2.)
  const int64_t ldb = cdiv(cols, 16) * 16 + 16;
  thread_local Scratch s_bt;
  float* Bt = s_bt.floats(static_cast<size_t>((jb + 4) * ldb));
  // X(c, j) = op(B)[c][j] with c outer: B is [cols, p], or [p, cols] when trans_b (rows of B are runs of c).
  const PackSrc bsrc{s.b, s.b_dtype, s.trans_b ? cols : p, s.trans_b};
  const PackSrc vsrc{W.values, W.dtype, kpr, false};  // X(row, slot)
  static const PermKernel kern[3] = {perm_kernel<4>, perm_kernel<8>, perm_kernel<kPermJ>};

  for (int64_t j0 = 0; j0 < p; j0 += jb) {
    const int64_t nj = std::min(jb, p - j0), njr = cdiv(nj, 4) * 4;
    const int64_t nq = cdiv(nj, 16), ncb = cdiv(cols, 512);
    parallel_for(nq * ncb, parallel ? 1 : nq * ncb, [&](int64_t a, int64_t e) {
      for (int64_t t = a; t < e; ++t) {
        const int64_t q = (t % nq) * 16, c = (t / nq) * 512, w = std::min<int64_t>(512, cols - c);
        // Bt[(q + j)*ldb + c + c'] = op(B)[c + c'][j0 + q + j]
        pack_panel(Isa::Avx512, bsrc, c, w, j0 + q, std::min<int64_t>(16, nj - q), static_cast<int>(w), Bt + q * ldb + c, ldb);
      }
    });

    parallel_for(nrr, parallel ? 1 : nrr, [&](int64_t t0, int64_t t1) {
      thread_local Scratch s_tile, s_v, s_i;
      const int64_t smax = kPermKc / m * n;
      float* tile = s_tile.floats(static_cast<size_t>(cdiv(rr, 16) * 16 * jb));
      float* V = s_v.floats(static_cast<size_t>(smax * 16));
      int32_t* I = s_i.as<int32_t>(static_cast<size_t>(smax * 16));

      for (int64_t task = t0; task < t1; ++task) {
        const int64_t r0 = task * rr, nr = std::min(rr, rows - r0);
        for (int64_t c0 = 0; c0 < cols; c0 += kPermKc) {
          const int64_t kc = std::min(kPermKc, cols - c0);
          const int64_t S = kc / m * n, tk0 = c0 / m * n;
          const int64_t nch = cdiv(kc, 16);
          const int sc_last = static_cast<int>(S - (nch - 1) * sc);
          for (int64_t rb = 0; rb < nr; rb += 16) {
            const int nrb = static_cast<int>(std::min<int64_t>(16, nr - rb));
            const int64_t row0 = r0 + rb;
            pack_panel(Isa::Avx512, vsrc, row0, nrb, tk0, S, 16, V);  // V[slot][lane]
            if (is24) decode_idx_24(W.positions + row0 * prb, prb, nrb, tk0, S, I);
            else decode_idx_nm(W.positions + row0 * prb, prb, nrb, tk0, S, n, m, I);
            float* T = tile + (rb / 16) * jb * 16;
            // The 16 rows used next: the following ones in this column block, else this task's first ones in the
            // next column block.
            int64_t next = row0 + 16, ntk0 = tk0, nS = S, nnext = std::min<int64_t>(16, nr - rb - 16);
            if (rb + 16 >= nr) {
              next = r0;
              ntk0 = (c0 + kPermKc) / m * n;
              nS = std::min(kPermKc, cols - c0 - kPermKc) / m * n;
              nnext = c0 + kPermKc < cols ? std::min<int64_t>(16, nr) : 0;
            }
            int64_t pf = 0;
            for (int64_t jr = 0; jr < njr;) {
              // Register blocks of 12 columns; a last 12 + 4 becomes 8 + 8 (the 4-wide kernel is the slowest).
              int64_t J = std::min<int64_t>(kPermJ, njr - jr);
              if (J == kPermJ && njr - jr == kPermJ + 4) J = 8;
              if (pf < nnext) prefetch_row(W, kpr, prb, next + pf++, ntk0, nS);
              // Rows of Bt from nj up to njr are read, and their columns of T never stored.
              kern[J / 4 - 1](nch, sc, sc_last, V, I, Bt + jr * ldb + c0, ldb, T + jr * 16, c0 == 0);
              jr += J;
            }
            while (pf < nnext) prefetch_row(W, kpr, prb, next + pf++, ntk0, nS);
          }
        }
        store_tile_perm(s, bias, tile, r0, nr, j0, nj, jb);
      }
    });
  }
}
#endif

// ---------------------------------------------------------------------------------------------------------------
// Transposed product (spmm_t): Y[c, j] = Σ_r W̃[r, c]·op(B)[r, j]. W̃'s groups run along c, the output of this
// product, so the reduction over r follows no fixed pattern and neither kernel above applies. Instead the columns
// go in quads: within a block of kTrb rows, the rows of a quad are sorted into 16 buckets by which of its 4
// entries are non-zero (a 2:4 group has 2), and bucket S's loop (S a compile-time set) adds v_i·op(B)[r, :] into
// column i's accumulators for i ∈ S only. Register indices stay static, each op(B) row loaded serves |S| columns,
// and zeros cost nothing: any N:M works, and 2:4 takes half the FMAs of dense with 4 + 2 loads per 8 FMAs (AVX2:
// one 32-column panel row = 4 ymm). The sort costs a few cycles per row and quad, shared by every panel of the
// call. op(B) is packed once per call as [panel][rows][pb]; tasks own kTcb columns.

constexpr int64_t kTrb = 128;  // rows of W̃ per bucket sort
// Columns of W̃ (rows of Y) per task, at most (a multiple of 64 and of every M). Wide tasks read long runs of each
// compressed row (512 columns of 2:4: 1 KiB), which measured 3-11% faster at 4096² on 2 threads than 128; narrower
// ones (task_cols) where there would be fewer tasks than threads.
constexpr int64_t kTcb = 512;

// One row of a quad: its offset in the panel (row within the block · pb) and its 4 entries.
struct QuadEntry {
  int32_t off;
  float v[4];
};
// The rows of one quad in bucket order: entries e[start[S] .. start[S + 1]) have non-zero set S. Stored in order,
// so the kernels stream them.
struct QuadBuckets {
  QuadEntry* e;
  int32_t start[17];
};

// y[i][0:pb] += Σ_{entries e of bucket S} e.v[i]·panel[e.off : +pb] for the columns i ∈ S of a quad.
template <int S, int PB>
void quad_bucket_scalar(const QuadBuckets& qb, const float* panel, float* y, int64_t ldy) {
  for (int32_t t = qb.start[S]; t < qb.start[S + 1]; ++t) {
    const QuadEntry& e = qb.e[t];
    const float* b = panel + e.off;
    for (int i = 0; i < 4; ++i)
      if ((S >> i) & 1)
        for (int j = 0; j < PB; ++j) y[i * ldy + j] += e.v[i] * b[j];
  }
}

#if NMS_X86
// A bucket of one column (every one at 1:4 and 1:8) has 4 accumulators: one FMA chain each would wait on the FMA
// latency (4 cycles; 2 FMAs a cycle issue), so its even and odd entries go into two sets, added at the end.
template <int S>
constexpr int kQuadSets = (S & (S - 1)) == 0 ? 2 : 1;

template <int S>
NMS_TARGET_AVX2 void quad_bucket_avx2(const QuadBuckets& qb, const float* panel, float* y, int64_t ldy) {
  const int32_t t0 = qb.start[S], t1 = qb.start[S + 1];
  if (t0 == t1) return;
  constexpr int H = kQuadSets<S>;
  __m256 acc[H][4][4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)
    if ((S >> i) & 1)
      for (int k = 0; k < 4; ++k) {
        acc[0][i][k] = _mm256_loadu_ps(y + i * ldy + 8 * k);
        if (H == 2) acc[H - 1][i][k] = _mm256_setzero_ps();
      }
  for (int32_t t = t0; t < t1; t += H)
#pragma GCC unroll 2
    for (int h = 0; h < H; ++h) {
      if (h > 0 && t + h == t1) break;
      const float* b = panel + qb.e[t + h].off;
      const float* v = qb.e[t + h].v;
      const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), b2 = _mm256_load_ps(b + 16), b3 = _mm256_load_ps(b + 24);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        if (!((S >> i) & 1)) continue;
        const __m256 vi = _mm256_broadcast_ss(v + i);
        acc[h][i][0] = _mm256_fmadd_ps(vi, b0, acc[h][i][0]);
        acc[h][i][1] = _mm256_fmadd_ps(vi, b1, acc[h][i][1]);
        acc[h][i][2] = _mm256_fmadd_ps(vi, b2, acc[h][i][2]);
        acc[h][i][3] = _mm256_fmadd_ps(vi, b3, acc[h][i][3]);
      }
    }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)
    if ((S >> i) & 1)
      for (int k = 0; k < 4; ++k)
        _mm256_storeu_ps(y + i * ldy + 8 * k, H == 2 ? _mm256_add_ps(acc[0][i][k], acc[H - 1][i][k]) : acc[0][i][k]);
}

template <int S>
NMS_TARGET_AVX512 void quad_bucket_avx512(const QuadBuckets& qb, const float* panel, float* y, int64_t ldy) {
  const int32_t t0 = qb.start[S], t1 = qb.start[S + 1];
  if (t0 == t1) return;
  constexpr int H = kQuadSets<S>;
  __m512 acc[H][4][4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)
    if ((S >> i) & 1)
      for (int k = 0; k < 4; ++k) {
        acc[0][i][k] = _mm512_loadu_ps(y + i * ldy + 16 * k);
        if (H == 2) acc[H - 1][i][k] = _mm512_setzero_ps();
      }
  for (int32_t t = t0; t < t1; t += H)
#pragma GCC unroll 2
    for (int h = 0; h < H; ++h) {
      if (h > 0 && t + h == t1) break;
      const float* b = panel + qb.e[t + h].off;
      const float* v = qb.e[t + h].v;
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), b2 = _mm512_load_ps(b + 32), b3 = _mm512_load_ps(b + 48);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        if (!((S >> i) & 1)) continue;
        const __m512 vi = _mm512_set1_ps(v[i]);
        acc[h][i][0] = _mm512_fmadd_ps(vi, b0, acc[h][i][0]);
        acc[h][i][1] = _mm512_fmadd_ps(vi, b1, acc[h][i][1]);
        acc[h][i][2] = _mm512_fmadd_ps(vi, b2, acc[h][i][2]);
        acc[h][i][3] = _mm512_fmadd_ps(vi, b3, acc[h][i][3]);
      }
    }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)
    if ((S >> i) & 1)
      for (int k = 0; k < 4; ++k)
        _mm512_storeu_ps(y + i * ldy + 16 * k, H == 2 ? _mm512_add_ps(acc[0][i][k], acc[H - 1][i][k]) : acc[0][i][k]);
}
#endif

using QuadFn = void (*)(const QuadBuckets&, const float*, float*, int64_t);
#define NMS_QUAD_TABLE(fn) {nullptr, fn<1>, fn<2>, fn<3>, fn<4>, fn<5>, fn<6>, fn<7>, fn<8>, fn<9>, fn<10>, fn<11>, fn<12>, fn<13>, fn<14>, fn<15>}
template <int S>
void quad_bucket_scalar32(const QuadBuckets& qb, const float* panel, float* y, int64_t ldy) {
  quad_bucket_scalar<S, 32>(qb, panel, y, ldy);
}
const QuadFn kQuadScalar[16] = NMS_QUAD_TABLE(quad_bucket_scalar32);
#if NMS_X86
const QuadFn kQuadAvx2[16] = NMS_QUAD_TABLE(quad_bucket_avx2);
const QuadFn kQuadAvx512[16] = NMS_QUAD_TABLE(quad_bucket_avx512);
#endif
#undef NMS_QUAD_TABLE

// 1:4 goes in pairs of groups instead: every row keeps one column of each group, so in quads each op(B) row loaded
// would serve one column (as many 512-bit loads as FMAs, where 2:4's quads have half: on Zen 4, one such load a
// cycle, 1:4 took about as long as 2:4). A pair of groups (8 columns) has one kept column in each, and the rows are
// sorted into 16 buckets by the two (a nibble of positions); a bucket's loop adds v_a·op(B)[r, :] and
// v_b·op(B)[r, :] into its two columns' accumulators, passed at run time: 2 FMAs per op(B) row loaded, as at 2:4.
// (1:8 stays in quads: pairs of its groups make 64 buckets of ~2 of a block's 128 rows, whose accumulator loads and
// stores cost more than the loads saved.)
struct PairEntry {
  int32_t off;  // row within the block · pb
  float v[2];   // the kept values of the two groups
};

template <int PB>
void pair_bucket_scalar(const PairEntry* e, int32_t n, const float* panel, float* ya, float* yb) {
  for (int32_t t = 0; t < n; ++t) {
    const float* b = panel + e[t].off;
    for (int j = 0; j < PB; ++j) {
      ya[j] += e[t].v[0] * b[j];
      yb[j] += e[t].v[1] * b[j];
    }
  }
}

#if NMS_X86
NMS_TARGET_AVX2 void pair_bucket_avx2(const PairEntry* e, int32_t n, const float* panel, float* ya, float* yb) {
  __m256 a[4], c[4];
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) a[k] = _mm256_loadu_ps(ya + 8 * k), c[k] = _mm256_loadu_ps(yb + 8 * k);
  for (int32_t t = 0; t < n; ++t) {
    const float* b = panel + e[t].off;
    const __m256 va = _mm256_broadcast_ss(e[t].v), vb = _mm256_broadcast_ss(e[t].v + 1);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256 x = _mm256_load_ps(b + 8 * k);
      a[k] = _mm256_fmadd_ps(va, x, a[k]);
      c[k] = _mm256_fmadd_ps(vb, x, c[k]);
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) _mm256_storeu_ps(ya + 8 * k, a[k]), _mm256_storeu_ps(yb + 8 * k, c[k]);
}

NMS_TARGET_AVX512 void pair_bucket_avx512(const PairEntry* e, int32_t n, const float* panel, float* ya, float* yb) {
  __m512 a[4], c[4];
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) a[k] = _mm512_loadu_ps(ya + 16 * k), c[k] = _mm512_loadu_ps(yb + 16 * k);
  for (int32_t t = 0; t < n; ++t) {
    const float* b = panel + e[t].off;
    const __m512 va = _mm512_set1_ps(e[t].v[0]), vb = _mm512_set1_ps(e[t].v[1]);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512 x = _mm512_load_ps(b + 16 * k);
      a[k] = _mm512_fmadd_ps(va, x, a[k]);
      c[k] = _mm512_fmadd_ps(vb, x, c[k]);
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) _mm512_storeu_ps(ya + 16 * k, a[k]), _mm512_storeu_ps(yb + 16 * k, c[k]);
}
#endif
using PairFn = void (*)(const PairEntry*, int32_t, const float*, float*, float*);

// Pass 1 of the pairs for a block of kr rows and nc columns from column c0 (a multiple of 128): key[r·kPairsMax + g]
// = pair g's bucket a + 4·b (a, b: the positions of its groups, nibble g of the block's positions), and
// count[g·16 + key] += 1. A last group without a partner (nc/4 odd) has b = 0.
constexpr int64_t kPairsMax = kTcb / 8;  // pairs per task row, at most
void pair_scan(const NmMatrix& W, int64_t r0, int64_t kr, int64_t c0, int64_t nc, uint8_t* key, int32_t* count) {
  const int64_t prb = nm_pos_row_bytes(W.cols, 1, 4), groups = nc / 4, np = cdiv(groups, 2);
  for (int64_t r = 0; r < kr; ++r) {
    const uint8_t* pos = W.positions + (r0 + r) * prb + c0 / 16;
    uint8_t* k = key + r * kPairsMax;
    for (int64_t g = 0; g < np; ++g) {
      unsigned f = (pos[g / 2] >> (4 * (g & 1))) & 15;
      if (2 * g + 1 == groups) f &= 3;
      k[g] = static_cast<uint8_t>(f);
      ++count[g * 16 + f];
    }
  }
}

// Pass 2: row by row, each pair's entry at its bucket's cursor (cursor[g·16 + key]); vals: the block's first row's
// kept values from c0 on.
__attribute__((noinline)) void pair_place(const uint8_t* key, const float* vals, int64_t kpr, int64_t kr, int64_t groups,
                                          int32_t pb, int32_t* cursor, PairEntry* ent) {
  const int64_t np = cdiv(groups, 2);
  for (int64_t r = 0; r < kr; ++r) {
    const uint8_t* k = key + r * kPairsMax;
    const float* v = vals + r * kpr;
    const int32_t off = static_cast<int32_t>(r) * pb;
    for (int64_t g = 0; g < np; ++g) {
      PairEntry& e = ent[g * kTrb + cursor[g * 16 + k[g]]++];
      e.off = off;
      e.v[0] = v[2 * g];
      e.v[1] = 2 * g + 1 < groups ? v[2 * g + 1] : 0.f;
    }
  }
}

// Pass 1 reads a block of kr rows and nc columns of W̃ (from row r0 and column c0, a multiple of 128 and so of M)
// from the compressed form, at n/m of the bytes of the dense W ⊙ m: blk [kr][kTcb] = its dense entries.
constexpr int64_t kTscanAhead = 8;  // rows of W̃ prefetched ahead

// A byte of M = 4 positions (2 bits each) holds whole groups at 1:4 (four: 16 columns) and 2:4 (two: 8 columns):
// bits[n - 1][byte] = the keep bits of its columns.
struct LutKeep4 {
  uint16_t bits[2][256];
  LutKeep4() {
    for (int n = 1; n <= 2; ++n)
      for (int b = 0; b < 256; ++b) {
        unsigned k = 0;
        for (int q = 0; q < 4; ++q) k |= 1u << ((q / n) * 4 + ((b >> (2 * q)) & 3));
        bits[n - 1][b] = static_cast<uint16_t>(k);
      }
  }
};
const LutKeep4 kLutKeep4;

// The columns of one block row's kept values as bits (column c: bit c % 64 of keep[c / 64]); nc columns from the
// compressed row's kept value tk0 on. Word by word in a register (M divides 64: no group straddles two words):
// or-ing into keep[] in memory made a chain of store-to-load forwards that cost more than the rest of the unpack.
constexpr int kKeepWords = kTcb / 64;
void kept_columns(const uint8_t* row_pos, int64_t tk0, int64_t nc, int n, int m, uint64_t keep[kKeepWords]) {
  const int64_t kept = nc / m * n;
  if (m == 4 && n <= 2) {
    const uint8_t* pos = row_pos + tk0 / 4;  // tk0 is a multiple of 32
    const int per = 16 / n;                   // columns per byte
    const int64_t bytes = (kept + 3) / 4, word = 64 / per;
    for (int h = 0; h < kKeepWords; ++h) {
      uint64_t acc = 0;
      for (int64_t b = h * word; b < std::min(bytes, (h + 1) * word); ++b)
        acc |= static_cast<uint64_t>(kLutKeep4.bits[n - 1][pos[b]]) << ((b - h * word) * per);
      keep[h] = acc;
    }
  } else {
    // The fields as a bit stream, a byte taken in when fewer than `bits` are left: no byte past the last field's.
    const int bits = nm_pos_bits(m);
    const uint32_t fmask = (1u << bits) - 1;
    const uint8_t* p = row_pos + tk0 * bits / 8;
    const int skip = static_cast<int>(tk0 * bits % 8);
    uint64_t buf = *p++ >> skip;
    int have = 8 - skip;
    for (int h = 0; h < kKeepWords; ++h) {
      uint64_t acc = 0;
      for (int64_t g = 64 * h; g < std::min<int64_t>(nc, 64 * h + 64); g += m)
        for (int j = 0; j < n; ++j) {
          if (have < bits) {
            buf |= static_cast<uint64_t>(*p++) << have;
            have += 8;
          }
          acc |= uint64_t{1} << (g % 64 + static_cast<int64_t>(buf & fmask));
          buf >>= bits;
          have -= bits;
        }
      keep[h] = acc;
    }
  }
  // A last byte of positions partly past nc decodes to columns past it.
  for (int h = 0; h < kKeepWords; ++h) {
    const int64_t left = nc - 64 * h;
    if (left < 64) keep[h] &= left <= 0 ? 0 : (uint64_t{1} << left) - 1;
  }
}

// d[0 : kTcb) = the row's dense entries: the kept values v in ascending column order at their columns, zeros
// elsewhere.
void unpack_row_scalar(const float* v, const uint64_t keep[kKeepWords], float* d) {
  std::fill(d, d + kTcb, 0.f);
  for (int h = 0; h < kKeepWords; ++h)
    for (uint64_t k = keep[h]; k; k &= k - 1) d[64 * h + __builtin_ctzll(k)] = *v++;
}

// Then sel[r*kTcb/4 + q] = the non-zero set of the block's row r in quad q, and count[q*16 + S] += the rows of
// quad q with set S. Columns [c, nc) here, c a multiple of 4.
void block_scan_scalar(const float* blk, int64_t kr, int64_t c, int64_t nc, uint8_t* sel, int32_t* count) {
  for (int64_t r = 0; r < kr; ++r)
    for (int64_t q = c / 4; 4 * q < nc; ++q) {
      unsigned set = 0;
      for (int i = 0; i < 4; ++i) set |= static_cast<unsigned>(blk[r * kTcb + 4 * q + i] != 0.f) << i;
      sel[r * (kTcb / 4) + q] = static_cast<uint8_t>(set);
      ++count[q * 16 + set];
    }
}
#if NMS_X86
NMS_TARGET_AVX2 void block_scan_avx2(const float* blk, int64_t kr, int64_t nc, uint8_t* sel, int32_t* count) {
  const int64_t n8 = nc / 8 * 8;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t r = 0; r < kr; ++r)
    for (int64_t c = 0; c < n8; c += 8) {
      const __m256 v = _mm256_loadu_ps(blk + r * kTcb + c);
      const unsigned bits = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ)));
      uint8_t* sr = sel + r * (kTcb / 4) + c / 4;
      sr[0] = static_cast<uint8_t>(bits & 15);
      sr[1] = static_cast<uint8_t>(bits >> 4);
      ++count[(c / 4) * 16 + (bits & 15)];
      ++count[(c / 4 + 1) * 16 + (bits >> 4)];
    }
  if (n8 < nc) block_scan_scalar(blk, kr, n8, nc, sel, count);
}

// Unpack and scan of one row in one go on AVX-512: an expanding load per 16 columns, its non-zero bits taken from
// the register. Columns [0, nc) are written.
NMS_TARGET_AVX512 void unpack_scan_row_avx512(const float* v, const uint64_t keep[kKeepWords], int64_t nc, float* d, uint8_t* sr,
                                              int32_t* count) {
  const int64_t nq = nc / 4;
  for (int64_t c = 0; c < nc; c += 16) {
    const auto k = static_cast<__mmask16>(keep[c / 64] >> (c % 64));
    const int kc = __builtin_popcount(k);
    // A masked load of the chunk's kept values, then a register expand (the memory form of vexpandps was slower).
    const __m512 x = _mm512_maskz_expand_ps(k, _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << kc) - 1), v));
    v += kc;
    _mm512_storeu_ps(d + c, x);
    const unsigned bits = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    for (int64_t q = c / 4; q < std::min<int64_t>(c / 4 + 4, nq); ++q) {
      const unsigned set = (bits >> (4 * (q - c / 4))) & 15;
      sr[q] = static_cast<uint8_t>(set);
      ++count[q * 16 + set];
    }
  }
}
#endif

// Pass 1 over a block: its rows unpacked into blk and scanned. The next rows' values and positions are prefetched
// (this task reads its next block there): rows of the compressed form are a power of two of bytes apart, and the
// hardware prefetchers do not cross the pages each of them starts in.
void block_unpack(const NmMatrix& W, Isa isa, int64_t r0, int64_t kr, int64_t c0, int64_t nc, float* blk, uint8_t* sel,
                  int32_t* count) {
  const int n = W.n, m = W.m;
  const int64_t kpr = nm_kept_per_row(W.cols, n, m), prb = nm_pos_row_bytes(W.cols, n, m);
  const int64_t tk0 = c0 / m * n, kept = nc / m * n;
  const float* vals = static_cast<const float*>(W.values) + tk0;
  for (int64_t r = 0; r < kr; ++r) {
    const int64_t row = r0 + r;
    uint64_t keep[kKeepWords];
    kept_columns(W.positions + row * prb, tk0, nc, n, m, keep);
#if NMS_X86
    if (row + kTscanAhead < W.rows) {
      for (int64_t b = 0; b < kept * 4; b += 64)
        _mm_prefetch(reinterpret_cast<const char*>(vals + (row + kTscanAhead) * kpr) + b, _MM_HINT_T1);
    }
    if (isa == Isa::Avx512) {
      unpack_scan_row_avx512(vals + row * kpr, keep, nc, blk + r * kTcb, sel + r * (kTcb / 4), count);
      continue;
    }
#endif
    unpack_row_scalar(vals + row * kpr, keep, blk + r * kTcb);
  }
#if NMS_X86
  if (isa == Isa::Avx512) return;
  if (isa == Isa::Avx2) return block_scan_avx2(blk, kr, nc, sel, count);
#endif
  block_scan_scalar(blk, kr, 0, nc, sel, count);
}

// Pass 2: row by row, each quad's entry at its set's cursor, cursor[q*16 + S] (so that consecutive placements go
// to different quads' cursors); set 0's cursor points past the buckets, where the entry is never read: no branch
// to mispredict. Out of the driver's loop, whose register pressure made this a dozen instructions an entry.
__attribute__((noinline)) void place_rows(const uint8_t* sel, const float* blk, int64_t kr, int64_t nq, int32_t pb,
                                          int32_t* cursor, QuadEntry* ent) {
  for (int64_t r = 0; r < kr; ++r) {
    const uint8_t* sr = sel + r * (kTcb / 4);
    const float* src = blk + r * kTcb;
    const int32_t off = static_cast<int32_t>(r) * pb;
    for (int64_t q = 0; q < nq; ++q) {
      QuadEntry& e = ent[q * kTrb + cursor[q * 16 + sr[q]]++];
      e.off = off;
      std::memcpy(e.v, src + 4 * q, sizeof e.v);
    }
  }
}

#if NMS_X86
// out[j·ld + c] = tile[c·ldy + j] for c < nc16, j < p16 (multiples of 16), float32 out: the element loop's strided
// reads and dtype switch were a few percent of the call.
NMS_TARGET_AVX512 void store_t_avx512(const float* tile, int64_t ldy, int64_t nc16, int64_t p16, float* out, int64_t ld) {
  for (int64_t c = 0; c < nc16; c += 16)
    for (int64_t j = 0; j < p16; j += 16) {
      __m512 r[16];
      for (int k = 0; k < 16; ++k) r[k] = _mm512_loadu_ps(tile + (c + k) * ldy + j);
      transpose16(r);
      for (int k = 0; k < 16; ++k) _mm512_storeu_ps(out + (j + k) * ld + c, r[k]);
    }
}
#endif

// The widest of 512, 256 and 128 columns per task that still gives every thread one.
int64_t task_cols(int64_t cols) {
  int64_t t = kTcb;
  while (t > 128 && cdiv(cols, t) < num_threads()) t /= 2;
  return t;
}

void spmm_t_check(const SpmmTArgs& s) {
  if (s.w.rows < 1 || s.w.cols < 1 || s.p < 1)
    fail("E_SHAPE", "spmm_t: got rows " + std::to_string(s.w.rows) + ", cols " + std::to_string(s.w.cols) + ", p " +
                        std::to_string(s.p) + ", expected all >= 1");
  nm_validate(s.w.rows, s.w.cols, s.w.n, s.w.m);
  if (s.w.dtype != DType::F32) fail("E_DTYPE", std::string("spmm_t: values must be float32, got ") + dtype_name(s.w.dtype));
  if (!is_float(s.b_dtype) || !is_float(s.out_dtype))
    fail("E_DTYPE", std::string("spmm_t: b and out must be float32, float16 or bfloat16, got ") + dtype_name(s.b_dtype) +
                        " and " + dtype_name(s.out_dtype));
}

#if NMS_X86
// Which AVX-512 driver takes M <= 16 past the small batches. spmm_perm's picks are 512-bit shuffles, which Intel
// cores issue on port 5, one of their two 512-bit FMA ports, so its FMAs run at under one a cycle there (0.92 in L1
// on a Xeon with AMX), where spmm_rows's load-fed kernel reaches 1.1-1.2 (its 512-bit loads, ~1.2 a cycle measured,
// bound it); on Zen 5 the shuffles run beside the FMAs and spmm_perm is the faster. On Intel, 2:4 from 64 columns of
// Y and 256 rows of W̃ goes to spmm_rows where its panels pad p by at most 1/16: 1.01-1.15x spmm_perm at 64 and 256
// columns, W̃ 1024×784 to 4096² (interleaved, CPU time, one thread), where at 200 columns (256 computed) it ran
// 0.85-0.93x and at 10 rows (4-row tasks) 0.7x; other N:M and fewer columns were not measured and stay.
// NMSPARSE_CPU_SPMM=perm or rows forces either (tests).
bool rows_over_perm(const SpmmArgs& s) {
  if (const char* e = std::getenv("NMSPARSE_CPU_SPMM")) {
    if (std::strcmp(e, "rows") == 0) return true;
    if (std::strcmp(e, "perm") == 0) return false;
  }
  const int64_t pb = rows_panel(s.p, Isa::Avx512);
  return cpu_is_intel() && s.w.n == 2 && s.w.m == 4 && s.p >= 64 && s.w.rows >= 256 && cdiv(s.p, pb) * pb * 15 <= s.p * 16;
}
#endif

}  // namespace

void spmm_t(const SpmmTArgs& s) {
  spmm_t_check(s);
  const Isa isa = active_isa();
  const int64_t rows = s.w.rows, cols = s.w.cols, p = s.p;
  const int pb = isa == Isa::Avx512 ? 64 : 32;  // panel width: 4 vectors
#if NMS_X86
  const QuadFn* kq = isa == Isa::Avx512 ? kQuadAvx512 : isa == Isa::Avx2 ? kQuadAvx2 : kQuadScalar;
#else
  const QuadFn* kq = kQuadScalar;
#endif
  const int64_t njb = cdiv(p, pb), ldy = njb * pb;
  const bool parallel = static_cast<double>(rows) * cols * p >= 64.0 * 64 * 64;

  // Bp[jb][r][j] = op(B)[r][jb·pb + j] (zeros past p): X(j, r) = op(B)[r][j], B [rows, p] or [p, rows].
  thread_local Scratch s_bp;
  float* Bp = s_bp.floats(static_cast<size_t>(njb * rows * pb));
  const PackSrc bsrc{s.b, s.b_dtype, s.trans_b ? rows : p, !s.trans_b};
  const int64_t nrp = cdiv(rows, 256);
  parallel_for(njb * nrp, parallel ? 1 : njb * nrp, [&](int64_t a, int64_t e) {
    for (int64_t t = a; t < e; ++t) {
      const int64_t jb = t / nrp, r0 = (t % nrp) * 256, kr = std::min<int64_t>(256, rows - r0);
      const int64_t j0 = jb * pb;
      pack_panel(isa, bsrc, j0, std::min<int64_t>(pb, p - j0), r0, kr, pb, Bp + (jb * rows + r0) * pb);
    }
  });

  const int64_t tcb = task_cols(cols), ntask = cdiv(cols, tcb);
  const bool pairs = s.w.n == 1 && s.w.m == 4;
#if NMS_X86
  const PairFn kp = isa == Isa::Avx512 ? pair_bucket_avx512 : isa == Isa::Avx2 ? pair_bucket_avx2 : pair_bucket_scalar<32>;
#else
  const PairFn kp = pair_bucket_scalar<32>;
#endif
  const int64_t kpr = nm_kept_per_row(cols, s.w.n, s.w.m);
  parallel_for(ntask, parallel ? 1 : ntask, [&](int64_t t0, int64_t t1) {
    thread_local Scratch s_tile, s_ent, s_sel, s_qb, s_blk, s_cnt;
    // This call's task width, not kTcb, and a row past it: the second column of a last group without a partner.
    float* tile = s_tile.floats(static_cast<size_t>((cdiv(tcb, 4) * 4 + 1) * ldy));
    float* blk = s_blk.floats(static_cast<size_t>(kTrb * kTcb));
    int32_t* cnt = s_cnt.as<int32_t>(static_cast<size_t>(kTcb / 4 * 16));
    QuadEntry* ent = s_ent.as<QuadEntry>(static_cast<size_t>(kTcb / 4 * kTrb));
    uint8_t* sel = s_sel.as<uint8_t>(static_cast<size_t>(kTcb / 4 * kTrb));
    QuadBuckets* qbs = s_qb.as<QuadBuckets>(static_cast<size_t>(kTcb / 4));
    // The pairs' keys, bucket starts ([pairs][17]) and entries.
    thread_local Scratch s_key, s_pst, s_pent;
    uint8_t* key = pairs ? s_key.as<uint8_t>(static_cast<size_t>(kTrb * kPairsMax)) : nullptr;
    int32_t* start = pairs ? s_pst.as<int32_t>(static_cast<size_t>(kPairsMax * 17)) : nullptr;
    PairEntry* pe = pairs ? s_pent.as<PairEntry>(static_cast<size_t>(kPairsMax * kTrb)) : nullptr;
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t c0 = task * tcb, nc = std::min(tcb, cols - c0), nq = cdiv(nc, 4);
      std::fill(tile, tile + (nq * 4 + 1) * ldy, 0.f);
      for (int64_t r0 = 0; r0 < rows && pairs; r0 += kTrb) {
        const int64_t kr = std::min(kTrb, rows - r0), groups = nc / 4, np = cdiv(groups, 2);
        int32_t* count = cnt;  // [np][16]
        std::fill(count, count + np * 16, 0);
        pair_scan(s.w, r0, kr, c0, nc, key, count);
        for (int64_t g = 0; g < np; ++g) {
          int32_t* st = start + g * 17;
          st[0] = 0;
          for (int k = 0; k < 16; ++k) {
            st[k + 1] = st[k] + count[g * 16 + k];
            count[g * 16 + k] = st[k];  // now the cursors
          }
        }
        pair_place(key, static_cast<const float*>(s.w.values) + r0 * kpr + c0 / 4, kpr, kr, groups,
                   static_cast<int32_t>(pb), count, pe);
        for (int64_t jb = 0; jb < njb; ++jb) {
          const float* panel = Bp + (jb * rows + r0) * pb;
          for (int64_t g = 0; g < np; ++g) {
            const int32_t* st = start + g * 17;
            float* y = tile + 8 * g * ldy + jb * pb;  // the pair's first column
            for (int k = 0; k < 16; ++k)
              if (st[k] != st[k + 1])
                kp(pe + g * kTrb + st[k], st[k + 1] - st[k], panel, y + (k & 3) * ldy, y + (4 + k / 4) * ldy);
          }
        }
      }
      for (int64_t r0 = 0; r0 < rows && !pairs; r0 += kTrb) {
        const int64_t kr = std::min(kTrb, rows - r0);
        int32_t* count = cnt;
        std::fill(count, count + nq * 16, 0);
        block_unpack(s.w, isa, r0, kr, c0, nc, blk, sel, count);
        // Each quad's rows sorted by their set (counting sort; set 0, all zero, is left out), with their entries.
        for (int64_t q = 0; q < nq; ++q) {
          QuadBuckets& qb = qbs[q];
          qb.e = ent + q * kTrb;
          qb.start[0] = qb.start[1] = 0;
          for (int S = 1; S < 16; ++S) qb.start[S + 1] = qb.start[S] + count[q * 16 + S];
          for (int S = 1; S < 16; ++S) count[q * 16 + S] = qb.start[S];  // now the cursors
          count[q * 16] = qb.start[16];
        }
        place_rows(sel, blk, kr, nq, static_cast<int32_t>(pb), count, ent);
        // Panel by panel (it stays in L1 across the quads), every quad's buckets.
        for (int64_t jb = 0; jb < njb; ++jb) {
          const float* panel = Bp + (jb * rows + r0) * pb;
          for (int64_t q = 0; q < nq; ++q) {
            const QuadBuckets& qb = qbs[q];
            float* y = tile + 4 * q * ldy + jb * pb;
            for (int S = 1; S < 16; ++S)
              if (qb.start[S] != qb.start[S + 1]) kq[S](qb, panel, y, ldy);
          }
        }
      }
      // Y[c0 + c, j] = tile[c][j], into out or its transpose, in out's dtype.
      if (s.trans_out) {  // out rows are runs of c
        int64_t nc16 = 0, p16 = 0;  // the part done by 16×16 transposes
#if NMS_X86
        if (isa == Isa::Avx512 && s.out_dtype == DType::F32) {
          nc16 = nc / 16 * 16, p16 = p / 16 * 16;
          store_t_avx512(tile, ldy, nc16, p16, static_cast<float*>(s.out) + c0, cols);
        }
#endif
        for (int64_t j = 0; j < p; ++j)
          for (int64_t c = j < p16 ? nc16 : 0; c < nc; ++c) store_from_f32(s.out, s.out_dtype, j * cols + c0 + c, tile[c * ldy + j]);
      } else {
        for (int64_t c = 0; c < nc; ++c)
          for (int64_t j = 0; j < p; ++j) store_from_f32(s.out, s.out_dtype, (c0 + c) * p + j, tile[c * ldy + j]);
      }
    }
  });
}

int64_t spmm_packed_floats(int64_t rows, int64_t cols, int n, int m) {
  if (m != 4) return 0;
  const PackDims d = pack_dims(rows, cols, n);
  return d.value_floats() + d.nrb * d.nh * d.sc;  // the values, then a dword of positions per slot
}

// The layout spmm_packed reads: values [nrb][nh][sc][16] (slot s of chunk h: kept value h·sc + s of each of the
// block's 16 rows; zero past the last row or the row's end), then positions [nrb][nh][sc], row l's 2-bit field at
// bit 2l (0 where the value is zero-padded: its lane then points at a chunk column past the row's end, or is a
// row that is never stored).
void spmm_pack(const NmMatrix& w, float* out) {
  nm_validate(w.rows, w.cols, w.n, w.m);
  if (w.m != 4) fail("E_PATTERN", "spmm_pack: m: got " + std::to_string(w.m) + ", expected 4");
  if (w.dtype != DType::F32) fail("E_DTYPE", std::string("spmm_pack: values must be float32, got ") + dtype_name(w.dtype));
  const int64_t rows = w.rows, kpr = nm_kept_per_row(w.cols, w.n, w.m), prb = nm_pos_row_bytes(w.cols, w.n, w.m);
  const PackDims d = pack_dims(rows, w.cols, w.n);
  const float* values = static_cast<const float*>(w.values);
  uint32_t* P = reinterpret_cast<uint32_t*>(out + d.value_floats());
  parallel_for(d.nrb, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t rb = q0; rb < q1; ++rb)
      for (int64_t h = 0; h < d.nh; ++h)
        for (int64_t s = 0; s < d.sc; ++s) {
          const int64_t t = h * d.sc + s, slot = (rb * d.nh + h) * d.sc + s;
          uint32_t f = 0;
          for (int l = 0; l < 16; ++l) {
            const int64_t r = rb * 16 + l;
            const bool live = r < rows && t < kpr;
            out[slot * 16 + l] = live ? values[r * kpr + t] : 0.f;
            if (live) f |= static_cast<uint32_t>(nm_get_pos(w.positions + r * prb, t, 2)) << (2 * l);
          }
          P[slot] = f;
        }
  });
}

void spmm(const SpmmArgs& s) {
  check(s);
  const Isa isa = active_isa();
  thread_local Scratch s_bias;
  const float* bias = nullptr;
  if (s.bias) {
    float* b32 = s_bias.floats(static_cast<size_t>(s.w.rows) + 16);
    convert_to_f32(isa, s.bias, s.bias_dtype, s.w.rows, b32);
    bias = b32;
  }
#if NMS_X86
  if (packed_batch(s, isa)) return spmm_packed(s, bias);
  if (pick_batch(s, isa)) return spmm_pick(s, isa, bias);
  if (gemv24(s, isa)) return spmm_gemv24(s, bias);
  if (isa == Isa::Avx512 && s.w.m <= 16 && !rows_over_perm(s)) return spmm_perm(s, bias);
#endif
  spmm_rows(s, isa, bias);
}

}  // namespace nms::cpu
