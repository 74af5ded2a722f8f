// Dense CPU products (lib/gemm.ts → native/cpu/gemm.cc) against float64 reference loops written here.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randn, tensor, zeros, type DType, type Tensor } from '../lib/index.js';
import { PackedWeight, linear, linearAsync, matmul, matmulAsync } from '../lib/gemm.js';
import { native, type NativeGemmOptions } from '../lib/native.js';
import { ISAS, checkOptionsContract, expectOptionError, fakeCuda, fakeCudaProducts, poison, prng, refProduct, sameBits, type Ref } from './helpers.js';

/** A float tensor of normal-ish values from a seeded generator (values exactly representable in `dtype`). */
function rand(shape: number[], dtype: DType, seed: number): Tensor {
  const r = prng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(Array.from({ length: n }, () => (r() + r() + r() - 1.5) * 2), shape, { dtype });
}

/** float64 op(A)·op(B) (+ bias[n]), a [m, k] (or [k, m] when ta), b [k, n] (or [n, k] when tb). */
const refGemm = (a: number[], b: number[], m: number, n: number, k: number, ta: boolean, tb: boolean, bias?: number[]): Ref =>
  refProduct(a, ta ? 1 : k, ta ? m : 1, b, tb ? 1 : n, tb ? k : 1, m, n, k, bias);

/** Every element within float32 accumulation error of the reference, plus the rounding of the output dtype. */
function expectClose(got: Tensor, r: Ref, k: number): void {
  const g = got.toArray();
  expect(g.length).toBe(r.ref.length);
  const out = got.dtype === 'float16' ? 2 ** -10 : got.dtype === 'bfloat16' ? 2 ** -7 : 0;
  let worst = 0, at = -1;
  for (let i = 0; i < g.length; i++) {
    const tol = (k + 2) * 2 ** -23 * r.absSum[i] + out * Math.abs(r.ref[i]) + 1e-30;
    const e = Math.abs(g[i] - r.ref[i]) / tol;
    if (!(e <= worst)) { worst = e; at = i; }  // NaN propagates into `worst`
  }
  expect(worst, `element ${at}: got ${g[at]}, expected ${r.ref[at]}`).toBeLessThanOrEqual(1);
}

afterAll(() => native.cpuIsa('auto'));

// m, n, k around the kernel tiles (MR 12/6/4, NR 32/16) and cache blocks (KC 256, MC 144).
const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 7, 3], [5, 1, 9], [2, 3, 5], [13, 33, 17], [12, 32, 256], [25, 65, 257], [7, 100, 600], [150, 70, 300],
];

describe('matmul (CPU)', () => {
  for (const [m, n, k] of SHAPES)
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const)
      it(`[${m}x${k}]·[${k}x${n}] transA=${ta} transB=${tb}`, () => {
        const a = rand(ta ? [k, m] : [m, k], 'float32', m * 1000 + k);
        const b = rand(tb ? [n, k] : [k, n], 'float32', n * 1000 + k + 1);
        const out = poison(zeros([m, n]));
        const got = matmul(a, b, { transA: ta, transB: tb, out });
        expect(got).toBe(out);
        expectClose(got, refGemm(a.toArray(), b.toArray(), m, n, k, ta, tb), k);
      });

  it('adds the bias to every row', () => {
    const [m, n, k] = [19, 45, 70];
    const a = rand([m, k], 'float32', 1), b = rand([k, n], 'float32', 2), bias = rand([n], 'float32', 3);
    const got = matmul(a, b, { bias });
    expect(got.shape).toEqual([m, n]);
    expectClose(got, refGemm(a.toArray(), b.toArray(), m, n, k, false, false, bias.toArray()), k);
  });

  for (const dtype of ['float16', 'bfloat16'] as const)
    it(`${dtype} inputs: float32 math, a ${dtype} result`, () => {
      const [m, n, k] = [37, 29, 300];
      const a = rand([m, k], dtype, 4), b = rand([n, k], dtype, 5), bias = rand([n], dtype, 6);
      const out = poison(zeros([m, n], { dtype }));
      const got = matmul(a, b, { transB: true, bias, out });
      expect(got).toBe(out);
      expect(got.dtype).toBe(dtype);
      expectClose(got, refGemm(a.toArray(), b.toArray(), m, n, k, false, true, bias.toArray()), k);
    });

  it('gives the same results on every kernel path (scalar, AVX2, AVX-512 where the CPU has them)', () => {
    const [m, n, k] = [41, 70, 513];
    const a = rand([k, m], 'float32', 7), b = rand([n, k], 'float32', 8), bias = rand([n], 'float32', 9);
    const ref = refGemm(a.toArray(), b.toArray(), m, n, k, true, true, bias.toArray());
    const results: number[][] = [];
    for (const isa of ISAS) {
      native.cpuIsa(isa);
      const got = matmul(a, b, { transA: true, transB: true, bias });
      expectClose(got, ref, k);
      results.push(got.toArray());
    }
    native.cpuIsa('auto');
    expect(results.length).toBe(ISAS.length);
  });

  // k > 4096 with a small C takes the split-k path (conv weight gradients): slices of k summed in a fixed order.
  it('a long reduction into a small C (split k): every kernel path, transposes, bias; the same bits on 1 and 3 threads', () => {
    const before = native.numThreads() as number;
    try {
      for (const [m, n, k, ta, tb] of [[13, 9, 12301, true, false], [33, 70, 8193, false, true], [1, 1, 4097, true, true]] as const) {
        const a = rand(ta ? [k, m] : [m, k], 'float32', m + k), b = rand(tb ? [n, k] : [k, n], 'float32', n + k);
        const bias = rand([n], 'float32', 12);
        const ref = refGemm(a.toArray(), b.toArray(), m, n, k, ta, tb, bias.toArray());
        for (const isa of ISAS) {
          native.cpuIsa(isa);
          const bits: number[][] = [];
          for (const t of [1, 3]) {
            native.setNumThreads(t);
            const out = poison(zeros([m, n]));
            expectClose(matmul(a, b, { transA: ta, transB: tb, bias, out }), ref, k);
            bits.push(out.toArray());
          }
          expect(bits[1], `${isa}: 3 threads vs 1`).toEqual(bits[0]);
        }
      }
    } finally {
      native.cpuIsa('auto');
      native.setNumThreads(before);
    }
  });

  it('runs on every thread count of the pool', () => {
    const before = native.numThreads() as number;
    const a = rand([90, 200], 'float32', 10), b = rand([200, 77], 'float32', 11);
    const ref = refGemm(a.toArray(), b.toArray(), 90, 77, 200, false, false);
    try {
      for (const t of [1, 3]) {
        native.setNumThreads(t);
        expectClose(matmul(a, b), ref, 200);
      }
    } finally {
      native.setNumThreads(before);
    }
  });
});

describe('linear (CPU)', () => {
  it('x·Wᵀ + b for x of rank 1, 2 and 3', () => {
    const W = rand([23, 40], 'float32', 12), bias = rand([23], 'float32', 13);
    for (const shape of [[40], [9, 40], [2, 3, 40]]) {
      const x = rand(shape, 'float32', shape.length);
      const rows = x.size / 40;
      const got = linear(x, W, bias);
      expect(got.shape).toEqual([...shape.slice(0, -1), 23]);
      expectClose(got, refGemm(x.toArray(), W.toArray(), rows, 23, 40, false, true, bias.toArray()), 40);
    }
  });

  it('small batches (the path for a few rows) on every kernel path: odd widths, k tails, with and without bias', () => {
    for (const [m, n, k] of [[1, 1, 1], [1, 5, 7], [2, 4, 8], [3, 9, 17], [16, 13, 100], [17, 6, 33], [1, 300, 1030], [5, 301, 257]]) {
      const x = rand([m, k], 'float32', 7 * m + k), W = rand([n, k], 'float32', n + 3 * k), bias = rand([n], 'float32', n);
      for (const withBias of [true, false]) {
        const ref = refGemm(x.toArray(), W.toArray(), m, n, k, false, true, withBias ? bias.toArray() : undefined);
        for (const isa of ISAS) {
          native.cpuIsa(isa);
          const out = poison(zeros([m, n]));
          expect(linear(x, W, withBias ? bias : null, { out })).toBe(out);
          expectClose(out, ref, k);
        }
      }
    }
    native.cpuIsa('auto');
  });

  it('writes into a poisoned out, without bias', () => {
    const x = rand([33, 130], 'float32', 14), W = rand([65, 130], 'float32', 15);
    const out = poison(zeros([33, 65]));
    expect(linear(x, W, null, { out })).toBe(out);
    expectClose(out, refGemm(x.toArray(), W.toArray(), 33, 65, 130, false, true), 130);
  });
});

describe('PackedWeight (a Linear weight packed once for the GEMM kernels)', () => {
  // n not a multiple of NR (32/16), k not a multiple of KC (256), n past NC (2048, so a task's panels straddle two
  // NC blocks), and m from 1 (the row-streaming kernel on AVX2/AVX-512; the 1-row microkernel on scalar) through
  // short last panels (r-row microkernels) and A packed once for the tasks of a row block (from 32 rows) to
  // several row blocks.
  const CASES: Array<[number, number, number]> = [
    [1, 1, 1], [1, 33, 7], [2, 130, 300], [3, 129, 257], [4, 64, 513], [5, 31, 100], [12, 32, 256], [13, 65, 33],
    [17, 100, 600], [64, 97, 784], [150, 70, 300], [3, 2100, 40], [20, 2100, 40], [40, 2100, 300],
  ];

  it('x·Wᵀ + b against float64 on every kernel path (packed under it), sync and async, into a poisoned out', async () => {
    for (const [m, n, k] of CASES) {
      const x = rand([m, k], 'float32', 3 * m + k), W = rand([n, k], 'float32', n + 5 * k), bias = rand([n], 'float32', 2 * n);
      for (const withBias of [true, false]) {
        const ref = refGemm(x.toArray(), W.toArray(), m, n, k, false, true, withBias ? bias.toArray() : undefined);
        for (const isa of ISAS) {
          native.cpuIsa(isa);
          const pw = new PackedWeight(W);
          const out = poison(zeros([m, n]));
          expect(linear(x, pw, withBias ? bias : null, { out })).toBe(out);
          expectClose(out, ref, k);
          const outA = poison(zeros([m, n]));
          expect(await linearAsync(x, pw, withBias ? bias : null, { out: outA })).toBe(outA);
          expect(sameBits(outA, out), `${isa} m=${m} n=${n} k=${k}: async differs from sync`).toBe(true);
        }
      }
    }
    native.cpuIsa('auto');
  });

  it('options.activation after the packed product', () => {
    const x = rand([9, 70], 'float32', 1), W = rand([45, 70], 'float32', 2), bias = rand([45], 'float32', 3), pw = new PackedWeight(W);
    const pre = linear(x, pw, bias), got = linear(x, pw, bias, { activation: 'relu' }).toArray();
    expectClose(pre, refGemm(x.toArray(), W.toArray(), 9, 45, 70, false, true, bias.toArray()), 70);
    const p = pre.toArray();
    expect(p.some((v) => v < 0) && p.some((v) => v > 0)).toBe(true);
    got.forEach((v, i) => expect(v).toBe(Math.max(0, p[i])));
  });

  it('from 4 rows on a row gets the same bits whatever batch it is in, and beyond 16 (or under 4) those of the unpacked product', () => {
    const k = 300, n = 77, W = rand([n, k], 'float32', 9), bias = rand([n], 'float32', 10), pw = new PackedWeight(W);
    const x = rand([40, k], 'float32', 11), all = linear(x, pw, bias).storage() as Float32Array;
    expect(sameBits(linear(x, pw, bias), linear(x, W, bias))).toBe(true);
    const part = (rows: number) => tensor(Array.from(x.storage().subarray(0, rows * k)), [rows, k]);
    for (const rows of [4, 5, 12, 13, 17]) {
      const got = linear(part(rows), pw, bias).storage() as Float32Array;
      const want = all.subarray(0, rows * n);
      expect(got.every((v, i) => Object.is(v, want[i])), `${rows} rows`).toBe(true);
    }
    // under 4 rows the row-streaming kernel runs, packed or not
    for (const rows of [1, 2, 3]) expect(sameBits(linear(part(rows), pw, bias), linear(part(rows), W, bias)), `${rows} rows`).toBe(true);
  });

  it('async: the weight is read only where the packed copy is not used, and then as it was at the call', async () => {
    // From 4 rows the async product takes only the packed copy (the weight is neither held nor copied: poisoning it
    // mid-flight changes nothing); under 4 rows, or once cpuIsa() selects other kernels, it reads the weight, which
    // must be the snapshot taken at the call. A cpuIsa() change while a packed-only product is in flight keeps the
    // packing's kernels.
    const k = 300, n = 77, bias = rand([n], 'float32', 12);
    for (const m of [1, 3, 4, 64]) {
      const x = rand([m, k], 'float32', 13 + m), W = rand([n, k], 'float32', 14 + m);
      const ref = refGemm(x.toArray(), W.toArray(), m, n, k, false, true, bias.toArray());
      for (const isa of ISAS) {
        native.cpuIsa(ISAS[0]);
        const pw = new PackedWeight(W);
        native.cpuIsa(isa);
        const out = poison(zeros([m, n]));
        const p = linearAsync(x, pw, bias, { out });
        native.cpuIsa(isa === ISAS[0] ? ISAS[ISAS.length - 1] : ISAS[0]);
        const saved = Float32Array.from(W.storage() as Float32Array);
        (W.storage() as Float32Array).fill(NaN);
        await p;
        (W.storage() as Float32Array).set(saved);
        expectClose(out, ref, k);
      }
    }
    native.cpuIsa('auto');
  });

  it('falls back to packing per call after cpuIsa() changes, and for a 16-bit result', () => {
    const x = rand([6, 90], 'float32', 4), W = rand([50, 90], 'float32', 5);
    const ref = refGemm(x.toArray(), W.toArray(), 6, 50, 90, false, true);
    native.cpuIsa(ISAS[ISAS.length - 1]);
    const pw = new PackedWeight(W);
    for (const isa of ISAS) {
      native.cpuIsa(isa);
      expectClose(linear(x, pw), ref, 90);
    }
    native.cpuIsa('auto');
    const xh = x.astype('bfloat16'), Wh = W.astype('bfloat16');
    const got = linear(xh, new PackedWeight(Wh));
    expect(got.dtype).toBe('bfloat16');
    expectClose(got, refGemm(xh.toArray(), Wh.toArray(), 6, 50, 90, false, true), 90);
  });

  it('bad inputs: typed errors naming the argument', async () => {
    const W = rand([8, 16], 'float32', 6), x = rand([2, 16], 'float32', 7);
    expect(() => new PackedWeight({} as Tensor)).toThrow(expect.objectContaining({ code: 'E_TYPE' }));
    expect(() => new PackedWeight(rand([16], 'float32', 1))).toThrow(expect.objectContaining({ code: 'E_SHAPE', message: expect.stringContaining('weight') }));
    expect(() => new PackedWeight(zeros([4, 4], { dtype: 'int8' }))).toThrow(expect.objectContaining({ code: 'E_DTYPE' }));
    expect(() => new PackedWeight(fakeCuda([4, 4]))).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
    const pw = new PackedWeight(W);
    expect(() => linear(rand([2, 15], 'float32', 8), pw)).toThrow(expect.objectContaining({ code: 'E_SHAPE', message: expect.stringContaining('x') }));
    expect(() => linear(x.astype('float16'), pw)).toThrow(expect.objectContaining({ code: 'E_DTYPE' }));
    expect(() => linear(x, pw, rand([7], 'float32', 9))).toThrow(expect.objectContaining({ code: 'E_SHAPE', message: expect.stringContaining('bias') }));
    expect(pw.disposed).toBe(false);
    expect(pw.bytes).toBeGreaterThanOrEqual(8 * 16 * 4);
    pw.dispose();
    expect(pw.disposed).toBe(true);
    expect(() => linear(x, pw)).toThrow(expect.objectContaining({ code: 'E_DISPOSED', message: expect.stringContaining('PackedWeight') }));
    await expect(linearAsync(x, pw)).rejects.toMatchObject({ code: 'E_DISPOSED' });
    const W2 = rand([8, 16], 'float32', 6), pw2 = new PackedWeight(W2);
    W2.dispose();
    expect(() => linear(x, pw2)).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
  });

  it('native.gemm and gemmPackB check the packed buffer: its size for its ISA, a known ISA, the active one', () => {
    const m = 2, n = 40, k = 30;
    const { floats, isa } = native.gemmPackedSize(n, k);
    expect(floats).toBeGreaterThanOrEqual(n * k);
    const b = new Float32Array(n * k).fill(1), a = new Float32Array(m * k).fill(1), c = new Float32Array(m * n).fill(NaN);
    const packed = new Float32Array(floats);
    native.gemmPackB({ b, bDtype: 0, n, k, transB: true, out: packed, isa });
    const base: NativeGemmOptions = { a, aDtype: 0, b, bDtype: 0, c, cDtype: 0, m, n, k, transA: false, transB: true, async: false };
    native.gemm({ ...base, packed, packedIsa: isa });
    expect(c.every((v) => v === k)).toBe(true);
    expect(() => native.gemm({ ...base, packed: packed.subarray(1), packedIsa: isa })).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => native.gemm({ ...base, packed, packedIsa: 7 })).toThrow(expect.objectContaining({ code: 'E_VALUE' }));
    expect(() => native.gemm({ ...base, packed })).toThrow(expect.objectContaining({ code: 'E_TYPE' }));
    expect(() => native.gemmPackB({ b, bDtype: 0, n, k, transB: true, out: packed.subarray(1), isa })).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => native.gemmPackB({ b, bDtype: 0, n, k, transB: true, out: packed, isa: (isa + 1) % 3 })).toThrow(expect.objectContaining({ code: 'E_VALUE' }));
    expect(() => native.gemmPackedSize(0, k)).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
  });
});

describe('linear options.activation (CPU: a pass over the float32 sums, then the rounding)', () => {
  const [rows, inF, outF] = [21, 70, 37];
  for (const dtype of ['float32', 'float16', 'bfloat16'] as DType[])
    for (const act of ['relu', 'gelu'] as const)
      it(`${dtype} ${act}, sync and async, into a poisoned out`, async () => {
        const x = rand([rows, inF], dtype, 51), W = rand([outF, inF], dtype, 52), bias = rand([outF], dtype, 53);
        const r = refProduct(x.toArray(), inF, 1, W.toArray(), 1, inF, rows, outF, inF, bias.toArray(), false, act);
        const out = poison(zeros([rows, outF], { dtype }));
        expect(linear(x, W, bias, { activation: act, out })).toBe(out);
        // gelu's slope is below 1.13 and its float32 evaluation adds a few ulp: a slightly wider float32 term
        expectClose(out, r, Math.ceil(1.2 * (inF + 4)));
        const y = await linearAsync(x, W, bias, { activation: act });
        expect(y.dtype).toBe(dtype);
        expect(y.toArray()).toEqual(out.toArray());
      });

  it('a bad activation is E_VALUE naming options.activation, on the sync and async forms', async () => {
    const x = zeros([2, 4]), W = zeros([3, 4]);
    for (const bad of ['tanh', 'none', 'RELU', 1, true]) {
      expect(() => linear(x, W, null, { activation: bad as 'relu' })).toThrow(
        expect.objectContaining({ code: 'E_VALUE', message: expect.stringContaining('options.activation') }));
      await expect(linearAsync(x, W, null, { activation: bad as 'relu' })).rejects.toMatchObject({ code: 'E_VALUE' });
    }
  });
});

describe('async forms', () => {
  it('matmulAsync and linearAsync resolve to the same results as the sync forms', async () => {
    const a = rand([64, 96], 'float32', 16), b = rand([96, 50], 'float32', 17), bias = rand([50], 'float32', 18);
    const p = matmulAsync(a, b, { bias });
    expect(p).toBeInstanceOf(Promise);
    expect((await p).toArray()).toEqual(matmul(a, b, { bias }).toArray());
    const W = rand([50, 96], 'float32', 19);
    const out = poison(zeros([64, 50], { dtype: 'float32' }));
    expect(await linearAsync(a, W, bias, { out })).toBe(out);
    expect(out.toArray()).toEqual(linear(a, W, bias).toArray());
  });

  it('rejects bad arguments with a coded error', async () => {
    await expect(matmulAsync(zeros([2, 3]), zeros([4, 2]))).rejects.toMatchObject({ code: 'E_SHAPE' });
    await expect(linearAsync(zeros([2, 3]), zeros([4, 3], { dtype: 'float16' }))).rejects.toMatchObject({ code: 'E_DTYPE' });
  });

  it('keeps the event loop responsive during a 2048³ matmulAsync', async () => {
    const N = 2048;
    const a = randn([N, N], { seed: 20 }), b = randn([N, N], { seed: 21 });
    await matmulAsync(rand([256, 256], 'float32', 1), rand([256, 256], 'float32', 2));  // warm the pool
    // The worst timer delay while the product runs. Blocking the loop would show as the product's whole duration
    // (>= 100 ms) in every run; the best of three runs keeps other processes on a shared machine from deciding.
    let best = Infinity;
    let c: Tensor | undefined;
    for (let attempt = 0; attempt < 3 && best >= 20; attempt++) {
      const h = monitorEventLoopDelay({ resolution: 1 });
      let ticks = 0;
      const timer = setInterval(() => ticks++, 2);
      h.enable();
      let settled = false;
      const p = matmulAsync(a, b).then((r) => { settled = true; return r; });
      expect(settled).toBe(false);
      c = await p;
      h.disable();
      clearInterval(timer);
      expect(ticks).toBeGreaterThan(0);  // the loop ran while the product was computed
      best = Math.min(best, h.max / 1e6);
    }
    expect(best).toBeLessThan(20);
    // Spot-check the result against float64 dot products.
    const A = a.storage() as Float32Array, B = b.storage() as Float32Array, C = c!.storage() as Float32Array;
    const r = prng(22);
    for (let t = 0; t < 16; t++) {
      const i = Math.floor(r() * N), j = Math.floor(r() * N);
      let s = 0, sc = 0;
      for (let p = 0; p < N; p++) { s += A[i * N + p] * B[p * N + j]; sc += Math.abs(A[i * N + p] * B[p * N + j]); }
      expect(Math.abs(C[i * N + j] - s)).toBeLessThanOrEqual(N * 2 ** -23 * sc);
    }
  });
});

/** A valid direct native.gemm call (C [3, 5] = A [3, 4] · B [4, 5]), with `over` replacing or adding fields. */
const gemmBase = (): Record<string, unknown> => ({
  a: new Float32Array(12), aDtype: 0, b: new Float32Array(20), bDtype: 0, c: new Float32Array(15), cDtype: 0, m: 3, n: 5, k: 4,
  transA: false, transB: false, async: false,
});
const gemmCall = (over: Record<string, unknown> = {}) => native.gemm({ ...gemmBase(), ...over } as NativeGemmOptions);

describe('native.gemm options object (called directly)', () => {
  it('reads every field by name: op(A)·op(B) + bias with transA and transB into a poisoned c', () => {
    const [m, n, k] = [3, 5, 4];
    const a = rand([k, m], 'float32', 41), b = rand([n, k], 'float32', 42), bias = rand([n], 'float32', 43);
    const c = poison(zeros([m, n]));
    native.gemm({
      a: a.storage(), aDtype: a.dtypeCode, b: b.storage(), bDtype: b.dtypeCode, c: c.storage(), cDtype: c.dtypeCode, m, n, k,
      transA: true, transB: true, bias: bias.storage(), biasDtype: bias.dtypeCode, async: false,
    });
    expectClose(c, refGemm(a.toArray(), b.toArray(), m, n, k, true, true, bias.toArray()), k);
  });

  it('a missing key, a wrong type or an unknown key is a typed error naming options.<key>', () => {
    checkOptionsContract((o) => native.gemm(o as NativeGemmOptions), gemmBase());
    expectOptionError(() => gemmCall({ bias: 'x', biasDtype: 0 }), 'E_TYPE', 'bias');
    expectOptionError(() => gemmCall({ bias: new Float32Array(5) }), 'E_TYPE', 'biasDtype');
    expectOptionError(() => gemmCall({ biasDtype: 0 }), 'E_VALUE', 'biasDtype');  // read only with a bias
    expect(() => native.gemm(3 as unknown as NativeGemmOptions)).toThrow(expect.objectContaining({ code: 'E_TYPE', name: 'NmSparseError' }));
  });
});

describe('bad inputs', () => {
  const a = zeros([3, 4]), b = zeros([4, 5]);
  const cases: Array<[string, () => unknown, string]> = [
    ['a is not a tensor', () => matmul([[1]] as unknown as Tensor, b), 'E_TYPE'],
    ['b is not a tensor', () => matmul(a, null as unknown as Tensor), 'E_TYPE'],
    ['a is 1-D', () => matmul(zeros([4]), b), 'E_SHAPE'],
    ['b is 3-D', () => matmul(a, zeros([4, 5, 1])), 'E_SHAPE'],
    ['inner dimensions differ', () => matmul(a, zeros([5, 5])), 'E_SHAPE'],
    ['inner dimensions differ with transB', () => matmul(a, b, { transB: true }), 'E_SHAPE'],
    ['dtypes differ', () => matmul(a, zeros([4, 5], { dtype: 'bfloat16' })), 'E_DTYPE'],
    ['int8 inputs', () => matmul(zeros([3, 4], { dtype: 'int8' }), zeros([4, 5], { dtype: 'int8' })), 'E_DTYPE'],
    ['empty a', () => matmul(zeros([0, 4]), b), 'E_SHAPE'],
    ['empty k', () => matmul(zeros([3, 0]), zeros([0, 5])), 'E_SHAPE'],
    ['transA is not a boolean', () => matmul(a, b, { transA: 1 as unknown as boolean }), 'E_TYPE'],
    ['options is not an object', () => matmul(a, b, 'T' as unknown as object), 'E_TYPE'],
    ['out has the wrong shape', () => matmul(a, b, { out: zeros([5, 3]) }), 'E_SHAPE'],
    ['out has the wrong dtype', () => matmul(a, b, { out: zeros([3, 5], { dtype: 'float16' }) }), 'E_DTYPE'],
    ['out is not a tensor', () => matmul(a, b, { out: new Float32Array(15) as unknown as Tensor }), 'E_TYPE'],
    ['out is an input', () => { const s = zeros([4, 4]); return matmul(s, s, { out: s }); }, 'E_VALUE'],
    ['bias has the wrong length', () => matmul(a, b, { bias: zeros([4]) }), 'E_SHAPE'],
    ['bias has the wrong dtype', () => matmul(a, b, { bias: zeros([5], { dtype: 'float16' }) }), 'E_DTYPE'],
    ['a was disposed', () => { const d = zeros([3, 4]); d.dispose(); return matmul(d, b); }, 'E_DISPOSED'],
    ['out was disposed', () => { const d = zeros([3, 5]); d.dispose(); return matmul(a, b, { out: d }); }, 'E_DISPOSED'],
    ['linear: weight is 1-D', () => linear(a, zeros([4])), 'E_SHAPE'],
    ['linear: x does not end in `in`', () => linear(zeros([2, 5]), zeros([3, 4])), 'E_SHAPE'],
    ['linear: x is a scalar', () => linear(zeros([]), zeros([3, 4])), 'E_SHAPE'],
    ['linear: bias is 2-D', () => linear(zeros([2, 4]), zeros([3, 4]), zeros([1, 3])), 'E_SHAPE'],
    ['linear: weight dtype differs', () => linear(zeros([2, 4]), zeros([3, 4], { dtype: 'float16' })), 'E_DTYPE'],
    ['linear: weight is not a tensor', () => linear(zeros([2, 4]), {} as Tensor), 'E_TYPE'],
    ['native: c buffer too small', () => gemmCall({ c: new Float32Array(14) }), 'E_SHAPE'],
    ['native: unknown dtype code', () => gemmCall({ aDtype: 9 }), 'E_DTYPE'],
    ['native: m = 0', () => gemmCall({ m: 0 }), 'E_SHAPE'],
    ['native: c overlaps a', () => { const s = new Float32Array(16); return gemmCall({ a: s, c: s.subarray(4), n: 4, b: new Float32Array(16) }); }, 'E_VALUE'],
    ['native: cpuIsa of an unknown name', () => native.cpuIsa('sse9'), 'E_VALUE'],
  ];
  for (const [what, call, code] of cases)
    it(`${what} → ${code}`, () => {
      expect(call).toThrow(expect.objectContaining({ code }));
    });

  it('leaves out untouched when the arguments are bad', () => {
    const out = poison(zeros([3, 5]));
    expect(() => matmul(a, b, { out, bias: zeros([4]) })).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(out.toArray().every(Number.isNaN)).toBe(true);
  });
});

// Last in this file: it replaces the 'cuda' backend of this process with a fake one that records what reaches it.
describe("one set of checks on every device (a fake 'cuda' backend records the plans that reach it)", () => {
  let calls: Awaited<ReturnType<typeof fakeCudaProducts>>;
  beforeAll(async () => { calls = await fakeCudaProducts(); });
  type Make = (shape: number[], dtype?: DType) => Tensor;
  const cpu: Make = (shape, dtype = 'float32') => zeros(shape, { dtype });
  const cases: Array<[string, (t: Make) => unknown, string]> = [
    ['linear: a [1, out] bias', (t) => linear(t([2, 4]), t([3, 4]), t([1, 3])), 'E_SHAPE'],
    ['matmul: a [1, n] bias', (t) => matmul(t([2, 4]), t([4, 3]), { bias: t([1, 3]) }), 'E_SHAPE'],
    ['linear: bias of the wrong length', (t) => linear(t([2, 4]), t([3, 4]), t([4])), 'E_SHAPE'],
    ['linear: bias of another dtype', (t) => linear(t([2, 4]), t([3, 4]), t([3], 'float16')), 'E_DTYPE'],
    ['linear: empty x', (t) => linear(t([0, 4]), t([3, 4])), 'E_SHAPE'],
    ['matmul: k = 0', (t) => matmul(t([2, 0]), t([0, 3])), 'E_SHAPE'],
    ['matmul: a is 3-D', (t) => matmul(t([2, 2, 2]), t([2, 2])), 'E_SHAPE'],
    ['matmul: inner sizes differ', (t) => matmul(t([2, 4]), t([4, 3]), { transB: true }), 'E_SHAPE'],
    ['matmul: transA is not a boolean', (t) => matmul(t([2, 4]), t([4, 3]), { transA: 1 as unknown as boolean }), 'E_TYPE'],
    ['linear: weight of another dtype', (t) => linear(t([2, 4]), t([3, 4], 'bfloat16')), 'E_DTYPE'],
    ['linear: out of the wrong shape', (t) => linear(t([2, 4]), t([3, 4]), null, { out: t([3, 2]) }), 'E_SHAPE'],
    ['linear: out of the wrong dtype', (t) => linear(t([2, 4]), t([3, 4]), null, { out: t([2, 3], 'float16') }), 'E_DTYPE'],
    ['matmul: out is a', (t) => { const a = t([3, 3]); return matmul(a, t([3, 3]), { out: a }); }, 'E_VALUE'],
    ['linear: out is the bias', (t) => { const b = t([3]); return linear(t([1, 4]), t([3, 4]), b, { out: b.reshape([1, 3]) }); }, 'E_VALUE'],
    ['linear: an unknown activation', (t) => linear(t([2, 4]), t([3, 4]), null, { activation: 'tanh' as 'relu' }), 'E_VALUE'],
    ['linear: a disposed weight', (t) => { const w = t([3, 4]); w.dispose(); return linear(t([2, 4]), w); }, 'E_DISPOSED'],
  ];
  for (const [what, call, code] of cases)
    it(`${what}: ${code} on the cpu and on cuda, before any backend is reached`, () => {
      expect(() => call(cpu)).toThrow(expect.objectContaining({ code }));
      expect(() => call(fakeCuda)).toThrow(expect.objectContaining({ code }));
      expect(calls.gemm).toEqual([]);
    });

  it('the mixed-device and per-device dtype rules', () => {
    expect(() => linear(fakeCuda([2, 4]), cpu([3, 4]))).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
    expect(() => matmul(cpu([2, 4]), cpu([4, 3]), { bias: fakeCuda([3]) })).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
    expect(() => matmul(cpu([2, 4], 'int8'), cpu([4, 3], 'int8'))).toThrow(expect.objectContaining({ code: 'E_DTYPE' }));
    expect(() => matmul(fakeCuda([2, 4], 'uint8'), fakeCuda([4, 3], 'uint8'))).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED' }));
    // int8 on cuda: a float32 result, so a float32 bias (an int8 one is E_DTYPE)
    expect(() => matmul(fakeCuda([2, 4], 'int8'), fakeCuda([4, 3], 'int8'), { bias: fakeCuda([3], 'int8') })).toThrow(
      expect.objectContaining({ code: 'E_DTYPE' }));
    expect(calls.gemm).toEqual([]);
    const y = matmul(fakeCuda([2, 4], 'int8'), fakeCuda([4, 3], 'int8'), { bias: fakeCuda([3]) });
    expect([y.device, y.dtype, y.shape]).toEqual(['cuda', 'float32', [2, 3]]);
    expect(calls.gemm.pop()).toMatchObject({ m: 2, n: 3, k: 4, dtype: 'float32', activation: null });
  });

  it('a valid call reaches the backend once, as one plan (sync and async)', async () => {
    const x = fakeCuda([2, 3, 4]), W = fakeCuda([5, 4]), b = fakeCuda([5]), out = fakeCuda([2, 3, 5]);
    expect(linear(x, W, b, { activation: 'gelu', out })).toBe(out);
    expect(calls.gemm).toEqual([{ a: x, b: W, bias: b, m: 6, n: 5, k: 4, transA: false, transB: true, activation: 'gelu', shape: [2, 3, 5], dtype: 'float32', out }]);
    const A = fakeCuda([4, 2], 'float16'), B = fakeCuda([3, 4], 'float16');
    const c = await matmulAsync(A, B, { transA: true, transB: true });
    expect([c.shape, c.dtype]).toEqual([[2, 3], 'float16']);
    expect(calls.gemm[1]).toMatchObject({ m: 2, n: 3, k: 4, transA: true, transB: true, bias: null, out: undefined, activation: null });
    expect(calls.gemm.length).toBe(2);
  });
});

describe('ReLU in the native GEMM epilogue (options.activation relu)', () => {
  // Every CPU path: rows streamed (m ≤ 16, unpacked; m < 4 packed), the packed path (tiles and edge tiles, k in
  // several KC blocks), the main loop, split-k (k > 4096, small C), and a 16-bit C (float32 sums, max, then rounding).
  const CASES: Array<[number, number, number]> = [[2, 33, 70], [3, 45, 300], [9, 45, 70], [40, 100, 600], [150, 70, 300], [20, 30, 5000]];

  it('max(0, x·Wᵀ + b) against float64, plain and packed weight, sync and async, into a poisoned out', async () => {
    for (const [m, n, k] of CASES) {
      const x = rand([m, k], 'float32', 7 * m + k), W = rand([n, k], 'float32', 3 * n + k), bias = rand([n], 'float32', n);
      const ref = refProduct(x.toArray(), k, 1, W.toArray(), 1, k, m, n, k, bias.toArray(), false, 'relu');
      expect(ref.ref.some((v) => v > 0) && ref.ref.some((v) => v === 0)).toBe(true);
      for (const isa of ISAS) {
        native.cpuIsa(isa);
        for (const w of [W, new PackedWeight(W)]) {
          const out = poison(zeros([m, n]));
          linear(x, w, bias, { activation: 'relu', out });
          expectClose(out, ref, k);
          const outA = poison(zeros([m, n]));
          await linearAsync(x, w, bias, { activation: 'relu', out: outA });
          expect(sameBits(outA, out), `${isa} m=${m} n=${n} k=${k}`).toBe(true);
          // the same bits as the unfused product then the ReLU pass
          const pre = linear(x, w, bias).storage() as Float32Array;
          expect((out.storage() as Float32Array).every((v, i) => Object.is(v, pre[i] > 0 ? pre[i] : 0))).toBe(true);
        }
      }
    }
    native.cpuIsa('auto');
    const xh = rand([40, 300], 'bfloat16', 1), Wh = rand([50, 300], 'bfloat16', 2);
    const got = linear(xh, Wh, null, { activation: 'relu' });
    expect(got.dtype).toBe('bfloat16');
    expectClose(got, refProduct(xh.toArray(), 300, 1, Wh.toArray(), 1, 300, 40, 50, 300, null, false, 'relu'), 300);
  });

  it('native.gemm relu on a 16-bit C (the main loop\'s float32 block, clamped as it is rounded), -0 and NaN sums to +0', () => {
    const [m, n, k] = [5, 40, 3];
    const a = tensor([1, -1, 0, 0, 0, 0, NaN, 1, 1, 2, 3, 4, -2, -3, -4], [m, k]), b = rand([k, n], 'float32', 5);
    for (const cDtype of ['float32', 'bfloat16'] as const) {
      const c = poison(zeros([m, n], { dtype: cDtype }));
      native.gemm({ a: a.storage(), aDtype: a.dtypeCode, b: b.storage(), bDtype: b.dtypeCode, c: c.storage(), cDtype: c.dtypeCode, m, n, k, transA: false, transB: false, async: false, relu: true });
      const ref = refProduct(a.toArray().map((v) => (Number.isNaN(v) ? 0 : v)), k, 1, b.toArray(), n, 1, m, n, k, null, false, 'relu');
      const g = c.toArray();
      for (let j = 0; j < n; j++) { expect(Object.is(g[n + j], 0), 'a zero row: +0').toBe(true); expect(Object.is(g[2 * n + j], 0), 'a NaN row: +0').toBe(true); }
      const rows = [0, 3, 4].flatMap((i) => Array.from({ length: n }, (_, j) => i * n + j));
      const tol = cDtype === 'bfloat16' ? 2 ** -7 : 2 ** -20;
      for (const i of rows) expect(Math.abs(g[i] - ref.ref[i])).toBeLessThanOrEqual(tol * (ref.absSum[i] + 1e-30));
    }
  });
});
