// Dense CPU products (lib/gemm.ts → native/cpu/gemm.cc) against float64 reference loops written here.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, describe, expect, it } from 'vitest';
import { randn, tensor, zeros, type DType, type Tensor } from '../lib/index.js';
import { linear, linearAsync, matmul, matmulAsync } from '../lib/gemm.js';
import { native } from '../lib/native.js';
import { ISAS, poison, prng, refProduct, type Ref } from './helpers.js';

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
    ['native: c buffer too small', () => native.gemm(new Float32Array(12), 0, new Float32Array(20), 0, new Float32Array(14), 0, 3, 5, 4, false, false, null, 0, false), 'E_SHAPE'],
    ['native: unknown dtype code', () => native.gemm(new Float32Array(12), 9, new Float32Array(20), 0, new Float32Array(15), 0, 3, 5, 4, false, false, null, 0, false), 'E_DTYPE'],
    ['native: m = 0', () => native.gemm(new Float32Array(12), 0, new Float32Array(20), 0, new Float32Array(15), 0, 0, 5, 4, false, false, null, 0, false), 'E_SHAPE'],
    ['native: c overlaps a', () => { const s = new Float32Array(16); return native.gemm(s, 0, new Float32Array(16), 0, s.subarray(4), 0, 3, 4, 4, false, false, null, 0, false); }, 'E_VALUE'],
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
