// N:M-sparse × dense on the CPU (lib/spmm.ts → native/cpu/spmm.cc), straight from the compressed form, against
// float64 loops over the pruned dense weight (pruned here with the reference mask of test/helpers.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nm, tensor, zeros, SparseTensor, Tensor, type DType } from '../lib/index.js';
import { allocPinnedStorage } from '../lib/dtype.js';
import { matmul } from '../lib/gemm.js';
import { linearInputGrad, packSparse, packedOf, sparseLinear, sparseLinearAsync, sparseMatmul, sparseMatmulAsync, unpackSparse } from '../lib/spmm.js';
import { native, type NativeSpmmOptions, type NativeSpmmTOptions } from '../lib/native.js';
import {
  ISAS, checkOptionsContract, expectOptionError, fakeCuda, fakeCudaProducts, fakeCudaSparse, poison, prng, refMask, refProduct, type Ref,
} from './helpers.js';

function rand(shape: number[], dtype: DType, seed: number): Tensor {
  const r = prng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(Array.from({ length: n }, () => (r() + r() + r() - 1.5) * 2), shape, { dtype });
}

/** W pruned to N:M by the float64 reference mask, as plain numbers. */
function refPrune(w: Tensor, n: number, m: number): number[] {
  const v = w.toArray();
  const mask = refMask(v, w.shape[w.rank - 1], n, m);
  return v.map((x, i) => (mask[i] ? x : 0));
}

/** float64 Y[rows, p] = W̃ · op(B) (+ bias[r]); B is [cols, p], or [p, cols] when tb. */
const refSpmm = (w: number[], rows: number, cols: number, b: number[], p: number, tb: boolean, bias?: number[]): Ref =>
  refProduct(w, cols, 1, b, tb ? 1 : p, tb ? cols : 1, rows, p, cols, bias, true);

/** got (Y, or Yᵀ when transposed) within float32 accumulation error of the reference, plus output rounding. */
function expectClose(got: Tensor, ref: Ref, rows: number, p: number, transposed: boolean, k: number): void {
  const g = got.toArray();
  expect(g.length).toBe(rows * p);
  const out = got.dtype === 'float16' ? 2 ** -10 : got.dtype === 'bfloat16' ? 2 ** -7 : 0;
  let worst = 0, at = '';
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < p; j++) {
      const v = g[transposed ? j * rows + r : r * p + j], e = ref.ref[r * p + j];
      const tol = (k + 2) * 2 ** -23 * ref.absSum[r * p + j] + out * Math.abs(e) + 1e-30;
      const d = Math.abs(v - e) / tol;
      if (!(d <= worst)) { worst = d; at = `Y[${r}, ${j}]: got ${v}, expected ${e}`; }
    }
  expect(worst, at).toBeLessThanOrEqual(1);
}

afterAll(() => native.cpuIsa('auto'));

const PATTERNS: Array<[number, number]> = [[2, 4], [1, 4], [3, 4], [1, 8], [4, 8], [7, 8], [2, 16], [8, 16], [15, 16], [1, 32], [16, 32], [31, 32]];

describe('nm.linear = sparseLinear (CPU): x·W̃ᵀ + b from the compressed form', () => {
  for (const [n, m] of PATTERNS)
    it(`${n}:${m}`, () => {
      // cols spans two 256-column blocks and ends on a partial 16-column chunk where M allows; rows and batch odd.
      const outF = 21, inF = ({ 4: 276, 8: 280, 16: 272, 32: 288 } as Record<number, number>)[m], batch = 13;
      const W = rand([outF, inF], 'float32', n * 100 + m), x = rand([batch, inF], 'float32', m);
      const bias = rand([outF], 'float32', n);
      const S = nm.compress(W, { n, m });
      const out = poison(zeros([batch, outF]));
      expect(sparseLinear(x, S, bias, { out })).toBe(out);
      const ref = refSpmm(refPrune(W, n, m), outF, inF, x.toArray(), batch, true, bias.toArray());
      expectClose(out, ref, outF, batch, true, inF);
    });

  it('equals matmul(x, prune(W), {transB}) for x of rank 1 and 3', () => {
    const W = rand([40, 64], 'float32', 5), S = nm.compress(W, '2:4'), Wp = nm.prune(W, '2:4');
    for (const shape of [[64], [2, 3, 64]]) {
      const x = rand(shape, 'float32', shape.length);
      const got = sparseLinear(x, S);
      expect(got.shape).toEqual([...shape.slice(0, -1), 40]);
      const dense = matmul(x.reshape(-1, 64), Wp, { transB: true });
      const g = got.toArray(), d = dense.toArray();
      for (let i = 0; i < g.length; i++) expect(Math.abs(g[i] - d[i])).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(d[i])));
    }
  });

  // Batches around the kernels' blocks: 4-column register blocks, in-place reads of x (batch % 4 == 0), 516-wide
  // column blocks (batch > 516).
  for (const batch of [1, 3, 4, 12, 17, 64, 530])
    it(`2:4 with a batch of ${batch}`, () => {
      const W = rand([35, 96], 'float32', batch), x = rand([batch, 96], 'float32', batch + 1);
      const S = nm.compress(W, '2:4');
      const got = sparseLinear(x, S);
      expectClose(got, refSpmm(refPrune(W, 2, 4), 35, 96, x.toArray(), batch, true), 35, batch, true, 96);
    });

  for (const dtype of ['float16', 'bfloat16'] as const)
    for (const [n, m] of [[2, 4], [3, 8], [5, 32]] as const)
      it(`${dtype} ${n}:${m}: float32 math, a ${dtype} result`, () => {
        const W = rand([19, 4 * m], dtype, m), x = rand([10, 4 * m], dtype, m + 1), bias = rand([19], dtype, m + 2);
        const S = nm.compress(W, { n, m });
        const out = poison(zeros([10, 19], { dtype }));
        expect(sparseLinear(x, S, bias, { out })).toBe(out);
        expectClose(out, refSpmm(refPrune(W, n, m), 19, 4 * m, x.toArray(), 10, true, bias.toArray()), 19, 10, true, 4 * m);
      });

  it('gives the same results on every kernel path (scalar, AVX2, AVX-512 where the CPU has them)', () => {
    for (const [n, m] of [[2, 4], [3, 8], [9, 16], [20, 32]] as const) {
      const W = rand([37, 8 * m], 'float32', 30 + m), x = rand([22, 8 * m], 'float32', 31 + m), bias = rand([37], 'float32', 32);
      const S = nm.compress(W, { n, m });
      const ref = refSpmm(refPrune(W, n, m), 37, 8 * m, x.toArray(), 22, true, bias.toArray());
      for (const isa of ISAS) {
        native.cpuIsa(isa);
        expectClose(sparseLinear(x, S, bias), ref, 37, 22, true, 8 * m);
      }
      native.cpuIsa('auto');
    }
  });
});

/** nm.linear(x, S, bias) into a poisoned out on every kernel path, each within float32 error of `ref`. */
function expectLinearEveryIsa(x: Tensor, S: SparseTensor, bias: Tensor | null, ref: Ref): void {
  const [batch, inF] = x.shape, outF = S.shape[0];
  for (const isa of ISAS) {
    native.cpuIsa(isa);
    const out = poison(zeros([batch, outF]));
    expect(sparseLinear(x, S, bias, { out })).toBe(out);
    expectClose(out, ref, outF, batch, true, inF);
  }
  native.cpuIsa('auto');
}

describe('small batches (2:4, a few rows of x: the kernel that streams W̃ once)', () => {
  it('nm.linear at batch 1–9 on every kernel path: rows not a multiple of 4, columns ending inside a 16-column chunk', () => {
    for (const [outF, inF] of [[1, 4], [3, 12], [4, 16], [5, 20], [37, 100], [64, 1040]])
      for (const batch of [1, 2, 3, 4, 5, 8, 9]) {
        const W = rand([outF, inF], 'float32', outF + inF), x = rand([batch, inF], 'float32', batch + inF);
        const bias = batch % 2 ? rand([outF], 'float32', outF) : null;
        const S = nm.compress(W, '2:4');
        expectLinearEveryIsa(x, S, bias, refSpmm(refPrune(W, 2, 4), outF, inF, x.toArray(), batch, true, bias?.toArray()));
      }
  });

  it('a 2:4 weight past 8 MB at 5–8 rows of x (decoded in registers for every 4 rows, not into L1 blocks)', () => {
    // 1921 × 2072: 8.5 MB compressed, rows not a multiple of 4, the last 32-column chunk cut short
    const outF = 1921, inF = 2072;
    const W = rand([outF, inF], 'float32', 77), S = nm.compress(W, '2:4'), w = refPrune(W, 2, 4);
    expect(S.bytes).toBeGreaterThan(8 << 20);
    for (const batch of [5, 8]) {
      const x = rand([batch, inF], 'float32', 78 + batch), bias = rand([outF], 'float32', 80);
      expectLinearEveryIsa(x, S, bias, refSpmm(w, outF, inF, x.toArray(), batch, true, bias.toArray()));
    }
  });

  it('S.matmul by one column (B [cols, 1]) on every kernel path', () => {
    const W = rand([45, 520], 'float32', 60), b = rand([520, 1], 'float32', 61), bias = rand([45], 'float32', 62);
    const S = nm.compress(W, '2:4');
    const ref = refSpmm(refPrune(W, 2, 4), 45, 520, b.toArray(), 1, false, bias.toArray());
    for (const isa of ISAS) {
      native.cpuIsa(isa);
      const out = poison(zeros([45, 1]));
      expect(sparseMatmul(S, b, { bias, out })).toBe(out);
      expectClose(out, ref, 45, 1, false, 520);
    }
    native.cpuIsa('auto');
  });
});

// The small-batch kernels (native/cpu/spmm.cc: spmm_pick on AVX-512, spmm_gemv24 on AVX2, the drivers elsewhere):
// a chunk is 16 or 32 columns, 1 or 2 slots of 16 kept values, 4 rows of W̃ per step, rows of x 4 at a time,
// decoded blocks of 1024 columns from 5 rows of x on.
describe('small batches, every N:M (1–32 rows of x): x·W̃ᵀ on every kernel path', () => {
  const SMALL: Array<[number, number]> = [
    [2, 4], [1, 4], [3, 4], [1, 8], [2, 8], [3, 8], [4, 8], [5, 8], [7, 8],
    [1, 16], [3, 16], [8, 16], [9, 16], [15, 16], [1, 32], [5, 32], [16, 32], [17, 32], [31, 32],
  ];
  for (const [n, m] of SMALL)
    it(`${n}:${m}`, () => {
      // [rows, cols]: one group; rows not a multiple of 4 and a last chunk cut short; past one decoded block.
      const shapes: Array<[number, number]> = [[3, m], [37, m * 7], [6, 1024 + 3 * m]];
      for (const [rows, cols] of shapes)
        for (const batch of [1, 2, 3, 4, 5, 8, 13, 17, 32]) {
          const seed = rows * 7919 + cols * 31 + batch;
          const W = rand([rows, cols], 'float32', seed), x = rand([batch, cols], 'float32', seed + 1);
          const bias = batch % 2 ? rand([rows], 'float32', seed + 2) : null;
          const S = nm.compress(W, { n, m });
          expectLinearEveryIsa(x, S, bias, refSpmm(refPrune(W, n, m), rows, cols, x.toArray(), batch, true, bias?.toArray()));
        }
    });
});

// packSparse's copy (native/cpu/spmm.cc spmm_pack, spmm_packed on AVX-512 up to 256 rows of x): blocks of 16 rows
// of W̃, 16-column chunks, rows of x 8, 4, 2 and 1 at a time. Rows of W̃ 1, 17 and 33 (a last block cut short),
// columns ending inside a chunk, one chunk, and past 1024; batches around the register blocks and past 256 (the
// compressed form is read there). The other ISAs read the compressed form with the pack present.
describe('packSparse (N:4 on the CPU): small batches of nm.linear from the row-interleaved copy', () => {
  for (const [n, m] of [[2, 4], [1, 4], [3, 4]] as const)
    it(`${n}:${m}, batches 1–257, every kernel path`, () => {
      for (const [rows, cols] of [[1, 4], [17, 20], [33, 276], [16, 1040]]) {
        const seed = 900 + rows * 13 + cols + n;
        const W = rand([rows, cols], 'float32', seed), S = nm.compress(W, { n, m }), w = refPrune(W, n, m);
        expect(packSparse(S)).toBe(4 * Math.ceil(rows / 16) * Math.ceil(cols / 16) * 4 * n * 17);
        for (const batch of [1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 31, 32, 33, 47, 100, 256, 257]) {
          const x = rand([batch, cols], 'float32', seed + batch), bias = batch % 2 ? rand([rows], 'float32', seed - batch) : null;
          expectLinearEveryIsa(x, S, bias, refSpmm(w, rows, cols, x.toArray(), batch, true, bias?.toArray()));
        }
      }
    });

  it('reads no x past its rows: x a view with NaN after it and an infinity in its last chunk, sync and async (pinned)', async () => {
    // cols 36: the last 16-column chunk holds 4 columns (its x lanes past them are masked to zero, and every dead
    // slot points there with a zero value). x is a view into a larger array whose floats past x are NaN: a tail
    // load that is not masked reads them (0·NaN = NaN) at x's last row. Column 34 of x is +Inf: where W̃ keeps it,
    // the result is ±Inf as in float64; anywhere else an Inf or NaN means a dead slot or a wrong position read it.
    const rows = 19, cols = 36;
    for (const n of [1, 2, 3]) {
      const W = rand([rows, cols], 'float32', 950 + n), S = nm.compress(W, { n, m: 4 }), w = refPrune(W, n, 4);
      for (const p of [1, 2, 3, 4, 5, 8, 9, 15, 17]) {
        const xs = rand([p, cols], 'float32', 951 + p).storage() as Float32Array;
        for (let i = 0; i < p; i++) xs[i * cols + 34] = Infinity;
        // float64 over the kept weights only (the pruned ones, zeros of the dense W̃, would make 0·Inf = NaN)
        const ref = { ref: new Float64Array(rows * p), absSum: new Float64Array(rows * p) };
        for (let r = 0; r < rows; r++)
          for (let i = 0; i < p; i++)
            for (let c = 0; c < cols; c++)
              if (w[r * cols + c] !== 0) {
                ref.ref[r * p + i] += w[r * cols + c] * xs[i * cols + c];
                ref.absSum[r * p + i] += Math.abs(w[r * cols + c] * xs[i * cols + c]);
              }
        // the reference's infinities exactly, and within float32 error of it elsewhere
        const check = (out: Tensor, what: string) => {
          const g = out.toArray();
          for (let i = 0; i < p; i++)
            for (let r = 0; r < rows; r++) {
              const v = g[i * rows + r], e = ref.ref[r * p + i], at = `${n}:4 ${what}, batch ${p}: Y[${r}, ${i}]: got ${v}, expected ${e}`;
              if (!Number.isFinite(e)) expect(v, at).toBe(e);
              else expect(Math.abs(v - e), at).toBeLessThanOrEqual((cols + 2) * 2 ** -23 * ref.absSum[r * p + i] + 1e-30);
            }
        };
        // x in V8 memory (sync: read in place), and in pinned native memory (async: pinned, not copied, so that
        // the NaN past x is what an overrun would read there too)
        const views = [new Float32Array(p * cols + 64), allocPinnedStorage('float32', Math.max(p * cols + 64, 1 << 15)) as Float32Array];
        const results: number[][] = [];
        for (const packed of [true, false]) {
          if (packed) packSparse(S);
          else unpackSparse(S);
          for (const [k, big] of views.entries()) {
            big.fill(NaN).set(xs);
            const x = new Tensor([p, cols], 'float32', big.subarray(0, p * cols));
            const out = poison(zeros([p, rows]));
            if (k === 0) expect(sparseLinear(x, S, null, { out })).toBe(out);
            else expect(await sparseLinearAsync(x, S, null, { out })).toBe(out);
            check(out, `${packed ? 'packed' : 'unpacked'} ${k === 0 ? 'sync' : 'async'}`);
            results.push(out.toArray());
          }
        }
        // the packed path, sync and async, bit for bit the same; the unpacked one likewise
        expect(results[1]).toEqual(results[0]);
        expect(results[3]).toEqual(results[2]);
      }
    }
  });

  it('unpackSparse drops the copy: the products read the compressed form again, with the same result', () => {
    const rows = 24, cols = 40, W = rand([rows, cols], 'float32', 970), S = nm.compress(W, '2:4'), w = refPrune(W, 2, 4);
    expect(packSparse(S)).toBeGreaterThan(0);
    expect(packedOf(S)).toBeInstanceOf(Float32Array);
    unpackSparse(S);
    expect(packedOf(S)).toBeUndefined();
    const x = rand([3, cols], 'float32', 971);
    expectClose(sparseLinear(x, S, null, { out: poison(zeros([3, rows])) }), refSpmm(w, rows, cols, x.toArray(), 3, true), rows, 3, true, cols);
  });

  it('is 0 bytes (no copy) for M other than 4, 16-bit weights and weights of rank 3', () => {
    expect(packSparse(nm.compress(rand([8, 16], 'float32', 960), '1:8'))).toBe(0);
    expect(packSparse(nm.compress(rand([8, 16], 'float16', 961), '2:4'))).toBe(0);
    expect(packSparse(nm.compress(rand([2, 4, 16], 'float32', 962), '2:4'))).toBe(0);
  });

  it('native.spmm with packed: S.matmul by one column and a float16 out; a pack of the wrong size or N:M is a typed error', () => {
    const rows = 21, cols = 52, W = rand([rows, cols], 'float32', 970), S = nm.compress(W, '2:4');
    const packed = new Float32Array(native.spmmPackedSize(rows, cols, 2, 4));
    native.spmmPack({ values: S.values.storage(), positions: S.positions, rows, cols, n: 2, m: 4, out: packed });
    const b = rand([cols, 1], 'float32', 971), bias = rand([rows], 'float32', 972);
    const ref = refSpmm(refPrune(W, 2, 4), rows, cols, b.toArray(), 1, false, bias.toArray());
    for (const dtype of ['float32', 'float16'] as const) {
      const out = poison(zeros([rows, 1], { dtype }));
      native.spmm({
        values: S.values.storage(), positions: S.positions, wDtype: 0, rows, cols, n: 2, m: 4, b: b.storage(), bDtype: 0, p: 1,
        out: out.storage(), outDtype: out.dtypeCode, transB: false, transOut: false, bias: bias.storage(), biasDtype: 0, packed, async: false,
      });
      expectClose(out, ref, rows, 1, false, cols);
    }
    const call = (pk: Float32Array, n = 2, m = 4) => native.spmm({
      values: new Float32Array(rows * 80), positions: new Uint8Array(rows * 80), wDtype: 0, rows, cols: 80, n, m, b: new Float32Array(80),
      bDtype: 0, p: 1, out: new Float32Array(rows), outDtype: 0, transB: true, transOut: true, packed: pk, async: false,
    });
    expect(() => call(packed)).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => call(new Float32Array(1 << 16), 1, 8)).toThrow(expect.objectContaining({ code: 'E_PATTERN' }));
    expect(native.spmmPackedSize(rows, 64, 1, 8)).toBe(0);
    expect(() => native.spmmPack({ values: new Float32Array(64), positions: new Uint8Array(64), rows: 4, cols: 64, n: 1, m: 8, out: new Float32Array(64) }))
      .toThrow(expect.objectContaining({ code: 'E_PATTERN' }));
  });
});

// The AVX-512 drivers for M <= 16 past the small batches (native/cpu/spmm.cc rows_over_perm): spmm_perm, and on
// Intel for 2:4 from 64 columns of Y spmm_rows (panels of 64 columns of Y, of 128 from 128 on); NMSPARSE_CPU_SPMM
// forces either here, so both run on every CPU. Rows not a multiple of 3 or 4, W̃ columns past one 64- and 128-
// column panel ending inside one, batches around the panel widths.
describe('large batches on either AVX-512 driver (NMSPARSE_CPU_SPMM=perm, rows)', () => {
  const before = process.env.NMSPARSE_CPU_SPMM;
  afterAll(() => {
    if (before === undefined) delete process.env.NMSPARSE_CPU_SPMM;
    else process.env.NMSPARSE_CPU_SPMM = before;
  });
  for (const [n, m] of [[2, 4], [1, 4], [1, 8], [4, 8], [2, 16], [9, 16], [5, 32]] as const)
    it(`${n}:${m}: nm.linear and S.matmul, batches 64–200, into a poisoned out on every kernel path`, () => {
      const rows = 37, cols = m * Math.ceil(196 / m), seed = 500 + n * 40 + m;
      const W = rand([rows, cols], 'float32', seed), bias = rand([rows], 'float32', seed + 1);
      const S = nm.compress(W, { n, m }), w = refPrune(W, n, m);
      for (const batch of [64, 71, 128, 200]) {
        const x = rand([batch, cols], 'float32', seed + batch), b = rand([cols, batch], 'float32', seed + batch + 1);
        const refX = refSpmm(w, rows, cols, x.toArray(), batch, true, bias.toArray());
        const refB = refSpmm(w, rows, cols, b.toArray(), batch, false);
        for (const driver of ['perm', 'rows']) {
          process.env.NMSPARSE_CPU_SPMM = driver;
          expectLinearEveryIsa(x, S, bias, refX);
          for (const isa of ISAS) {
            native.cpuIsa(isa);
            const out = poison(zeros([rows, batch]));
            expect(sparseMatmul(S, b, { out })).toBe(out);
            expectClose(out, refB, rows, batch, false, cols);
          }
          native.cpuIsa('auto');
        }
      }
    });

  // spmm_perm's position decode (decode_idx_nm: one gathered dword per row serves several slots, reloaded when a
  // field leaves it; the row's last bytes assembled without reading past them) across three 256-column blocks,
  // for fields of 2, 3 and 4 bits and groups of 1 to 13 kept values; rows past one 16-row block, one short.
  it('every N:M with M <= 16 on spmm_perm past two 256-column blocks, into a poisoned out', () => {
    process.env.NMSPARSE_CPU_SPMM = 'perm';
    for (const [n, m] of [[1, 4], [3, 4], [1, 8], [3, 8], [5, 8], [1, 16], [3, 16], [7, 16], [13, 16]] as const) {
      const rows = 31, cols = m * Math.ceil(600 / m), batch = 70, seed = 700 + n * 20 + m;
      const W = rand([rows, cols], 'float32', seed), x = rand([batch, cols], 'float32', seed + 1);
      const S = nm.compress(W, { n, m });
      const out = poison(zeros([batch, rows]));
      expect(sparseLinear(x, S, null, { out })).toBe(out);
      expectClose(out, refSpmm(refPrune(W, n, m), rows, cols, x.toArray(), batch, true), rows, batch, true, cols);
    }
  });

  it('2:4 in bfloat16 (weight, x and result) at 130 columns of Y, on either driver', () => {
    const W = rand([45, 200], 'bfloat16', 601), x = rand([130, 200], 'bfloat16', 602), S = nm.compress(W, '2:4');
    const ref = refSpmm(refPrune(W, 2, 4), 45, 200, x.toArray(), 130, true);
    for (const driver of ['perm', 'rows']) {
      process.env.NMSPARSE_CPU_SPMM = driver;
      const out = poison(zeros([130, 45], { dtype: 'bfloat16' }));
      expect(sparseLinear(x, S, null, { out })).toBe(out);
      expectClose(out, ref, 45, 130, true, 200);
    }
  });
});

describe('S.matmul = sparseMatmul (CPU): W̃·b', () => {
  for (const [n, m] of [[2, 4], [1, 8], [6, 16], [12, 32]] as const)
    it(`${n}:${m} with a bias, into a poisoned out`, () => {
      const rows = 18, cols = 3 * Math.max(m, 16), p = 23;
      const W = rand([rows, cols], 'float32', 40 + m), b = rand([cols, p], 'float32', 41 + m), bias = rand([rows], 'float32', 42);
      const S = nm.compress(W, { n, m });
      const out = poison(zeros([rows, p]));
      expect(sparseMatmul(S, b, { bias, out })).toBe(out);
      expectClose(out, refSpmm(refPrune(W, n, m), rows, cols, b.toArray(), p, false, bias.toArray()), rows, p, false, cols);
    });

  it('treats a sparse tensor of rank > 2 as [rows, last dimension]', () => {
    const W = rand([2, 3, 32], 'float32', 50), b = rand([32, 5], 'float32', 51);
    const got = sparseMatmul(nm.compress(W, '2:4'), b);
    expect(got.shape).toEqual([6, 5]);
    expectClose(got, refSpmm(refPrune(W, 2, 4), 6, 32, b.toArray(), 5, false), 6, 5, false, 32);
  });

  it('bfloat16 on every kernel path', () => {
    const W = rand([24, 64], 'bfloat16', 52), b = rand([64, 40], 'bfloat16', 53);
    const S = nm.compress(W, '4:8');
    const ref = refSpmm(refPrune(W, 4, 8), 24, 64, b.toArray(), 40, false);
    for (const isa of ISAS) {
      native.cpuIsa(isa);
      expectClose(sparseMatmul(S, b), ref, 24, 40, false, 64);
    }
    native.cpuIsa('auto');
  });
});

describe('async forms', () => {
  it('sparseLinearAsync and sparseMatmulAsync match the sync forms', async () => {
    const W = rand([64, 128], 'float32', 60), x = rand([33, 128], 'float32', 61), bias = rand([64], 'float32', 62);
    const S = nm.compress(W, '2:4');
    const p = sparseLinearAsync(x, S, bias);
    expect(p).toBeInstanceOf(Promise);
    expect((await p).toArray()).toEqual(sparseLinear(x, S, bias).toArray());
    const b = rand([128, 9], 'float32', 63);
    expect((await sparseMatmulAsync(S, b)).toArray()).toEqual(sparseMatmul(S, b).toArray());
  });

  it('rejects bad arguments with a coded error', async () => {
    const S = nm.compress(zeros([4, 8]), '2:4');
    await expect(sparseLinearAsync(zeros([2, 4]), S)).rejects.toMatchObject({ code: 'E_SHAPE' });
    await expect(sparseMatmulAsync(S, zeros([8, 2], { dtype: 'float16' }))).rejects.toMatchObject({ code: 'E_DTYPE' });
  });
});

/** A valid direct native.spmm call (a 6 x 16 2:4 weight times b [16, 2]), with `over` replacing or adding fields. */
const spmmBase = (): Record<string, unknown> => ({
  values: new Float32Array(48), positions: new Uint8Array(12), wDtype: 0, rows: 6, cols: 16, n: 2, m: 4, b: new Float32Array(32),
  bDtype: 0, p: 2, out: new Float32Array(12), outDtype: 0, transB: false, transOut: false, async: false,
});
const spmmCall = (over: Record<string, unknown> = {}) => native.spmm({ ...spmmBase(), ...over } as NativeSpmmOptions);

describe('native.spmm / spmmT options objects (called directly)', () => {
  it('read every field by name: W̃·Bᵀ + bias written transposed into a poisoned out', () => {
    const [rows, cols, p] = [6, 16, 5];
    const W = rand([rows, cols], 'float32', 80), B = rand([p, cols], 'float32', 81), bias = rand([rows], 'float32', 82);
    const S = nm.compress(W, '2:4');
    const out = poison(zeros([p, rows]));
    native.spmm({
      values: S.values.storage(), positions: S.positions, wDtype: S.values.dtypeCode, rows, cols, n: 2, m: 4, b: B.storage(),
      bDtype: B.dtypeCode, p, out: out.storage(), outDtype: out.dtypeCode, transB: true, transOut: true, bias: bias.storage(),
      biasDtype: bias.dtypeCode, async: false,
    });
    expectClose(out, refSpmm(refPrune(W, 2, 4), rows, cols, B.toArray(), p, true, bias.toArray()), rows, p, true, cols);
  });

  it('a missing key, a wrong type or an unknown key is a typed error naming options.<key>', () => {
    checkOptionsContract((o) => native.spmm(o as NativeSpmmOptions), spmmBase());
    expectOptionError(() => spmmCall({ bias: new Float32Array(6) }), 'E_TYPE', 'biasDtype');
    expectOptionError(() => spmmCall({ biasDtype: 0 }), 'E_VALUE', 'biasDtype');
    const spmmT = (o: Record<string, unknown>) => native.spmmT(o as unknown as NativeSpmmTOptions);
    checkOptionsContract(spmmT, {
      values: new Float32Array(16), positions: new Uint8Array(4), rows: 4, cols: 8, n: 2, m: 4, b: new Float32Array(12), bDtype: 0,
      p: 3, out: new Float32Array(24), outDtype: 0, transB: false, transOut: false,
    });
  });
});

describe('nm.linear options.activation (CPU: a pass over the float32 sums, then the rounding)', () => {
  const [batch, inF, outF] = [17, 96, 29];
  for (const dtype of ['float32', 'float16', 'bfloat16'] as DType[])
    for (const act of ['relu', 'gelu'] as const)
      it(`${dtype} ${act}, sync and async, into a poisoned out`, async () => {
        const W = rand([outF, inF], dtype, 90), x = rand([batch, inF], dtype, 91), bias = rand([outF], dtype, 92);
        const S = nm.compress(W, '2:4');
        const r = refProduct(x.toArray(), inF, 1, refPrune(W, 2, 4), 1, inF, batch, outF, inF, bias.toArray(), false, act);
        const out = poison(zeros([batch, outF], { dtype }));
        expect(sparseLinear(x, S, bias, { activation: act, out })).toBe(out);
        // r is [batch, out] = Yᵀ; gelu's slope (< 1.13) and float32 evaluation widen the float32 term a little
        expectClose(out, { ref: transposeRef(r.ref, batch, outF), absSum: transposeRef(r.absSum, batch, outF) }, outF, batch, true,
          Math.ceil(1.2 * (inF + 4)));
        const y = await sparseLinearAsync(x, S, bias, { activation: act });
        expect(y.dtype).toBe(dtype);
        expect(y.toArray()).toEqual(out.toArray());
      });

  it('a bad activation is E_VALUE naming options.activation', async () => {
    const S = nm.compress(zeros([3, 8]), '2:4'), x = zeros([2, 8]);
    for (const bad of ['tanh', 'none', 0]) {
      expect(() => sparseLinear(x, S, null, { activation: bad as 'gelu' })).toThrow(
        expect.objectContaining({ code: 'E_VALUE', message: expect.stringContaining('options.activation') }));
      await expect(sparseLinearAsync(x, S, null, { activation: bad as 'gelu' })).rejects.toMatchObject({ code: 'E_VALUE' });
    }
  });
});

describe('bad inputs', () => {
  const S = nm.compress(rand([6, 16], 'float32', 70), '2:4');
  const x = zeros([3, 16]);
  const cases: Array<[string, () => unknown, string]> = [
    ['weight is a dense tensor', () => sparseLinear(x, zeros([6, 16]) as unknown as SparseTensor), 'E_TYPE'],
    ['x is not a tensor', () => sparseLinear([1, 2] as unknown as Tensor, S), 'E_TYPE'],
    ['x does not end in `in`', () => sparseLinear(zeros([3, 8]), S), 'E_SHAPE'],
    ['x is a scalar', () => sparseLinear(zeros([]), S), 'E_SHAPE'],
    ['x is empty', () => sparseLinear(zeros([0, 16]), S), 'E_SHAPE'],
    ['x dtype differs from the weight', () => sparseLinear(zeros([3, 16], { dtype: 'float16' }), S), 'E_DTYPE'],
    ['int8 weight', () => sparseLinear(zeros([3, 16], { dtype: 'int8' }), nm.compress(zeros([6, 16], { dtype: 'int8' }), '2:4')), 'E_DTYPE'],
    ['weight of rank 3', () => sparseLinear(zeros([3, 16]), nm.compress(zeros([2, 3, 16]), '2:4')), 'E_SHAPE'],
    ['bias has the wrong length', () => sparseLinear(x, S, zeros([16])), 'E_SHAPE'],
    ['bias dtype differs', () => sparseLinear(x, S, zeros([6], { dtype: 'bfloat16' })), 'E_DTYPE'],
    ['out has the wrong shape', () => sparseLinear(x, S, null, { out: zeros([6, 3]) }), 'E_SHAPE'],
    ['out has the wrong dtype', () => sparseLinear(x, S, null, { out: zeros([3, 6], { dtype: 'float16' }) }), 'E_DTYPE'],
    ['out is b', () => { const t = zeros([16, 6]); return sparseMatmul(nm.compress(zeros([16, 16]), '2:4'), t, { out: t }); }, 'E_VALUE'],
    ['options is not an object', () => sparseLinear(x, S, null, 3 as unknown as object), 'E_TYPE'],
    ['weight was disposed', () => { const d = nm.compress(zeros([6, 16]), '2:4'); d.dispose(); return sparseLinear(x, d); }, 'E_DISPOSED'],
    ['x was disposed', () => { const d = zeros([3, 16]); d.dispose(); return sparseLinear(d, S); }, 'E_DISPOSED'],
    ['matmul: b is 1-D', () => sparseMatmul(S, zeros([16])), 'E_SHAPE'],
    ['matmul: b has the wrong rows', () => sparseMatmul(S, zeros([8, 2])), 'E_SHAPE'],
    ['matmul: b has no columns', () => sparseMatmul(S, zeros([16, 0])), 'E_SHAPE'],
    ['matmul: bias of the columns', () => sparseMatmul(S, zeros([16, 2]), { bias: zeros([2]) }), 'E_SHAPE'],
    ['matmul: not a sparse tensor', () => sparseMatmul({} as SparseTensor, zeros([16, 2])), 'E_TYPE'],
    ['native: M = 5', () => spmmCall({ cols: 15, m: 5, b: new Float32Array(30) }), 'E_PATTERN'],
    ['native: N = M', () => spmmCall({ values: new Float32Array(96), positions: new Uint8Array(24), n: 4, m: 4 }), 'E_PATTERN'],
    ['native: cols not a multiple of M', () => spmmCall({ cols: 18, b: new Float32Array(36) }), 'E_SHAPE'],
    ['native: positions too short', () => spmmCall({ positions: new Uint8Array(11) }), 'E_SHAPE'],
    ['native: out too short', () => spmmCall({ out: new Float32Array(11) }), 'E_SHAPE'],
    ['native: p = 0', () => spmmCall({ p: 0 }), 'E_SHAPE'],
    ['native: out overlaps b', () => { const s = new Float32Array(64); return spmmCall({ b: s, out: s.subarray(40) }); }, 'E_VALUE'],
  ];
  for (const [what, call, code] of cases)
    it(`${what} → ${code}`, () => {
      expect(call).toThrow(expect.objectContaining({ code }));
    });

  it('leaves out untouched when the arguments are bad', () => {
    const out = poison(zeros([3, 6]));
    expect(() => sparseLinear(x, S, zeros([5]), { out })).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(out.toArray().every(Number.isNaN)).toBe(true);
  });
});

describe('linearInputGrad (dX = dY·W̃ from the compressed form, native spmm_t)', () => {
  /** float64 dX[rows, in] = dY[rows, out] · W[out, in]. */
  const refInputGrad = (dy: number[], w: number[], rows: number, outF: number, inF: number): Ref =>
    refProduct(dy, outF, 1, w, inF, 1, rows, inF, outF);

  it('equals the float64 product for every N:M, kept zeros, ragged shapes, every ISA', () => {
    const cases: Array<[number, number, number, number, number, boolean]> = [
      // rows (batch), out, in, n, m, zeros: edges of the 4-column quads, 128- to 512-column tasks, 64-column words of
      // kept bits, 128-row blocks and 32/64-wide panels; a task whose positions start inside a byte (5:32 from column
      // 128); 1:4's pairs of groups, one without a partner at the end of a task (1044 = 2·512 + 5 groups); zeros: a
      // quarter of W zeroed before the N:M selection, so that some kept values are 0
      [70, 300, 1044, 1, 4, false], [1, 4, 4, 2, 4, false], [3, 7, 12, 2, 4, false], [33, 130, 200, 2, 4, false], [65, 129, 260, 1, 4, false],
      [70, 257, 136, 3, 4, false], [5, 64, 64, 1, 8, false], [17, 40, 96, 4, 8, false], [9, 33, 32, 5, 32, false],
      [9, 33, 288, 5, 32, false], [9, 33, 224, 5, 32, false], [7, 50, 272, 3, 16, false], [11, 140, 384, 1, 8, false],
      [11, 70, 1088, 1, 8, false], [40, 300, 8, 2, 4, true], [6, 20, 136, 1, 4, true], [5, 20, 1040, 2, 4, true],
    ];
    // Tasks are 128 to 512 columns wide, narrower where there would be fewer tasks than threads.
    const threads = native.numThreads();
    const check = (rows: number, outF: number, inF: number, n: number, m: number, holes: boolean, seed: number) => {
      const r = prng(seed);
      const w = tensor(rand([outF, inF], 'float32', seed + 1).toArray().map((x) => (holes && r() < 0.25 ? 0 : x)), [outF, inF]);
      const S = nm.compress(w, `${n}:${m}`);
      const wv = refPrune(w, n, m);
      const dy = rand([rows, outF], 'float32', seed + 2);
      const ref = refInputGrad(dy.toArray(), wv, rows, outF, inF);
      for (const isa of ISAS) for (const t of [1, 2, 8]) {
        native.cpuIsa(isa);
        native.setNumThreads(t);
        const out = poison(zeros([rows, inF]));
        const got = linearInputGrad(dy, S, { out });
        expect(got).toBe(out);
        // dX [rows, in] is Yᵀ of Y = W̃ᵀ·dYᵀ [in, rows]
        expectClose(got, { ref: transposeRef(ref.ref, rows, inF), absSum: transposeRef(ref.absSum, rows, inF) }, inF, rows, true, outF);
      }
    };
    try {
      cases.forEach(([rows, outF, inF, n, m, holes], i) => check(rows, outF, inF, n, m, holes, 900 + 3 * i));
    } finally {
      native.cpuIsa('auto');
      native.setNumThreads(threads);
    }
  });

  it('rejects bad arguments with typed errors, leaving out untouched', () => {
    const S = nm.compress(rand([8, 16], 'float32', 7), '2:4'), dy = zeros([4, 8]);
    const out = poison(zeros([4, 16]));
    expect(() => linearInputGrad(zeros([4, 9]), S, { out })).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => linearInputGrad(zeros([4, 8], { dtype: 'float16' }), S, { out })).toThrowError(expect.objectContaining({ code: 'E_DTYPE' }));
    expect(() => linearInputGrad(dy, nm.compress(zeros([8, 16], { dtype: 'float16' }), '2:4'), { out })).toThrowError(expect.objectContaining({ code: 'E_DTYPE' }));
    expect(() => linearInputGrad(dy, zeros([8, 16]) as never, { out })).toThrowError(expect.objectContaining({ code: 'E_TYPE' }));
    expect(() => linearInputGrad(dy, S, { out: zeros([4, 15]) })).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(out.toArray().every(Number.isNaN)).toBe(true);
  });
});

/** a [rows, cols] → its transpose [cols, rows]. */
function transposeRef(a: Float64Array, rows: number, cols: number): Float64Array<ArrayBuffer> {
  const t = new Float64Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}

// Last in this file: it replaces the 'cuda' backend of this process with a fake one that records what reaches it.
describe("one set of checks on every device (a fake 'cuda' backend records the plans that reach it)", () => {
  let calls: Awaited<ReturnType<typeof fakeCudaProducts>>;
  beforeAll(async () => { calls = await fakeCudaProducts(); });
  type Make = { t: (shape: number[], dtype?: DType) => Tensor; s: (shape: number[], dtype?: DType) => SparseTensor };
  const cpu: Make = { t: (shape, dtype = 'float32') => zeros(shape, { dtype }), s: (shape, dtype = 'float32') => nm.compress(zeros(shape, { dtype }), '2:4') };
  const cuda: Make = { t: fakeCuda, s: fakeCudaSparse };
  const cases: Array<[string, (d: Make) => unknown, string]> = [
    ['nm.linear: a [1, out] bias', ({ t, s }) => sparseLinear(t([2, 8]), s([3, 8]), t([1, 3])), 'E_SHAPE'],
    ['S.matmul: a [1, rows] bias', ({ t, s }) => s([3, 8]).matmul(t([8, 2]), { bias: t([1, 3]) }), 'E_SHAPE'],
    ['S.matmul: a bias of the columns', ({ t, s }) => sparseMatmul(s([3, 8]), t([8, 2]), { bias: t([2]) }), 'E_SHAPE'],
    ['nm.linear: bias of another dtype', ({ t, s }) => sparseLinear(t([2, 8]), s([3, 8]), t([3], 'bfloat16')), 'E_DTYPE'],
    ['nm.linear: x of another dtype', ({ t, s }) => sparseLinear(t([2, 8], 'float16'), s([3, 8])), 'E_DTYPE'],
    ['nm.linear: x does not end in `in`', ({ t, s }) => sparseLinear(t([2, 4]), s([3, 8])), 'E_SHAPE'],
    ['nm.linear: empty x', ({ t, s }) => sparseLinear(t([0, 8]), s([3, 8])), 'E_SHAPE'],
    ['nm.linear: a 3-D weight', ({ t, s }) => sparseLinear(t([2, 8]), s([2, 3, 8])), 'E_SHAPE'],
    ['S.matmul: b without columns', ({ t, s }) => sparseMatmul(s([3, 8]), t([8, 0])), 'E_SHAPE'],
    ['nm.linear: out of the wrong shape', ({ t, s }) => sparseLinear(t([2, 8]), s([3, 8]), null, { out: t([3, 2]) }), 'E_SHAPE'],
    ['S.matmul: out is b', ({ t, s }) => { const b = t([8, 8]); return sparseMatmul(s([8, 8]), b, { out: b }); }, 'E_VALUE'],
    ['nm.linear: out is the bias', ({ t, s }) => { const b = t([3]); return sparseLinear(t([1, 8]), s([3, 8]), b, { out: b.reshape([1, 3]) }); }, 'E_VALUE'],
    ['nm.linear: an unknown activation', ({ t, s }) => sparseLinear(t([2, 8]), s([3, 8]), null, { activation: 'elu' as 'relu' }), 'E_VALUE'],
    ['nm.linear: a disposed x', ({ t, s }) => { const x = t([2, 8]); x.dispose(); return sparseLinear(x, s([3, 8])); }, 'E_DISPOSED'],
  ];
  for (const [what, call, code] of cases)
    it(`${what}: ${code} on the cpu and on cuda, before any backend is reached`, () => {
      expect(() => call(cpu)).toThrow(expect.objectContaining({ code }));
      expect(() => call(cuda)).toThrow(expect.objectContaining({ code }));
      expect(calls.spmm).toEqual([]);
    });

  it('a valid call reaches the backend once, as one plan (sync and async)', async () => {
    const x = fakeCuda([2, 3, 8]), S = fakeCudaSparse([5, 8]), b = fakeCuda([5]);
    const y = sparseLinear(x, S, b, { activation: 'relu' });
    expect([y.device, y.shape, y.dtype]).toEqual(['cuda', [2, 3, 5], 'float32']);
    expect(calls.spmm).toEqual([{ s: S, b: x, bias: b, rows: 5, cols: 8, p: 6, linear: true, activation: 'relu', shape: [2, 3, 5], dtype: 'float32', out: undefined }]);
    const Si = fakeCudaSparse([4, 8], 'int8'), B = fakeCuda([8, 3], 'int8'), out = fakeCuda([4, 3]);
    expect(await sparseMatmulAsync(Si, B, { bias: fakeCuda([4]), out })).toBe(out);
    expect(calls.spmm[1]).toMatchObject({ rows: 4, cols: 8, p: 3, linear: false, dtype: 'float32', activation: null, out });
    expect(() => sparseLinear(fakeCuda([2, 8], 'uint8'), fakeCudaSparse([3, 8], 'uint8'))).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED' }));
    expect(calls.spmm.length).toBe(2);
  });
});
