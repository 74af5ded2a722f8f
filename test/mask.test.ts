import { describe, expect, it } from 'vitest';
import { nm, tensor, zeros, type DType } from '../lib/index.js';
import { ISAS, poison, prng, randomTensor, refMask, refTransposableMask } from './helpers.js';
import { native } from '../lib/native.js';

const PATTERNS: Array<[number, number]> = [];
for (const m of [4, 8, 16, 32]) for (let n = 1; n < m; n += m >= 16 ? 5 : 1) PATTERNS.push([n, m]);
const DTYPES: DType[] = ['float32', 'float16', 'bfloat16', 'int8', 'uint8'];

describe('nm.mask', () => {
  for (const [n, m] of PATTERNS)
    it(`matches the float64 reference for ${n}:${m}`, () => {
      const w = randomTensor([7, m * 3], 'float32', n * 100 + m);
      const out = poison(zeros([7, m * 3], { dtype: 'uint8' }));
      const got = nm.mask(w, { n, m }, { out });
      expect(got).toBe(out);
      expect(got.toArray()).toEqual(refMask(w.toArray(), m * 3, n, m));
    });

  for (const dtype of DTYPES)
    it(`handles ${dtype}`, () => {
      const w = randomTensor([5, 16], dtype, 7);
      expect(nm.mask(w, '2:4').toArray()).toEqual(refMask(w.toArray(), 16, 2, 4));
    });

  it('keeps the lower index on ties, and NaN counts as the largest magnitude', () => {
    const w = tensor([1, -1, 1, 1, 0, 0, 0, 0, 3, NaN, Infinity, -7, 2, 2, -2, NaN], [4, 4]);
    expect(nm.mask(w, '2:4').toArray()).toEqual([1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1]);
    expect(nm.mask(w, '1:4').toArray()).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
  });

  it('groups along the last dimension of higher-rank tensors', () => {
    const w = randomTensor([2, 3, 8], 'float32', 3);
    expect(nm.mask(w, '4:8').toArray()).toEqual(refMask(w.toArray(), 8, 4, 8));
  });
});

describe('nm.prune and nm.check', () => {
  it('prune zeroes exactly what the mask drops, and check accepts the result', () => {
    for (const dtype of DTYPES) {
      const w = randomTensor([6, 32], dtype, 11);
      const m = nm.mask(w, '2:8').toArray();
      const p = nm.prune(w, '2:8', { out: poison(zeros([6, 32], { dtype })) });
      const wv = w.toArray();
      expect(p.toArray()).toEqual(wv.map((v, i) => (m[i] ? v : 0)));
      expect(nm.check(p, '2:8')).toEqual({ ok: true });
    }
  });

  it('prunes in place when out is the input', () => {
    const w = randomTensor([4, 8], 'float32', 5);
    const expected = nm.prune(w, '2:4').toArray();
    expect(nm.prune(w, '2:4', { out: w }).toArray()).toEqual(expected);
    expect(w.toArray()).toEqual(expected);
  });

  it('reports the first violating group with its index and count', () => {
    const w = tensor([1, 0, 0, 2, 0, 0, 0, 0, 0, 3, 3, 3, 1, 1, 0, 0], [2, 8]);
    expect(nm.check(w, '2:4')).toEqual({ ok: false, firstViolation: { index: [1, 0], group: 2, nonzeros: 3 } });
    expect(() => nm.assertNM(w, '2:4')).toThrow(expect.objectContaining({ code: 'E_NOT_NM' }));
    expect(nm.check(tensor([NaN, 1, 0, 0], [1, 4]), '1:4').ok).toBe(false);
  });
});

describe('nm.transposableMask', () => {
  it('matches an exhaustive float64 search and keeps 2 per row and column in every tile', () => {
    for (const dtype of ['float32', 'float16', 'bfloat16', 'int8'] as DType[]) {
      const w = randomTensor([12, 16], dtype, 21);
      const got = nm.transposableMask(w, { out: poison(zeros([12, 16], { dtype: 'uint8' })) }).toArray();
      expect(got).toEqual(refTransposableMask(w.toArray(), 12, 16));
      for (let r = 0; r < 12; r++)
        for (let g = 0; g < 16; g += 4) expect(got.slice(r * 16 + g, r * 16 + g + 4).reduce((a, b) => a + b)).toBe(2);
      for (let c = 0; c < 16; c++)
        for (let g = 0; g < 12; g += 4) expect([0, 1, 2, 3].reduce((a, k) => a + got[(g + k) * 16 + c], 0)).toBe(2);
    }
  });

  // 16 tiles at a time on AVX-512 (a last partial group zero-padded), 4 on AVX2, the rest one by one: widths that
  // leave every remainder, ties (small integers), NaN, ±inf, ±0 and values either side of the 3.4e38 cap.
  it('gives the exhaustive search on every kernel path, with ties and special values, at widths beyond the lanes', () => {
    const special = [NaN, Infinity, -Infinity, 0, -0, 3.3e38, -3.4028e38, 1e-40];
    for (const [rows, cols] of [[8, 36], [4, 128], [12, 60]]) {
      const r = prng(rows * cols);
      const v = Array.from({ length: rows * cols }, () => (r() < 0.1 ? special[Math.floor(r() * special.length)] : Math.round(r() * 6 - 3)));
      const w = tensor(v, [rows, cols]);
      const want = refTransposableMask(w.toArray(), rows, cols);
      for (const isa of ISAS) {
        native.cpuIsa(isa);
        expect(nm.transposableMask(w, { out: poison(zeros([rows, cols], { dtype: 'uint8' })) }).toArray(), `${isa} ${rows}x${cols}`).toEqual(want);
      }
      native.cpuIsa('auto');
    }
  });

  // AVX-512 ranks the patterns by float32 sums and leaves near ties to the float64 rule: scores one ulp apart,
  // sums whose float64 rounding ties patterns that differ (exponents 2^40 apart), ones beside values the float32
  // sums round away (2^-23..2^-26), values either side of 2^124 (the
  // float32 sums' overflow guard), tiles of float32 random values, and of values below 3e34 (that float32 sums tell
  // apart beside 3.4001e38 without overflow, the float64 ones not beside its mapped score) with a -3.4001e38 here
  // and there.
  it('gives the exhaustive search on near ties, mixed exponents and random floats', () => {
    const f = new Float32Array(1);
    const near = (x: number, ulps: number) => { f[0] = x; const u = new Uint32Array(f.buffer); u[0] += ulps; return f[0]; };
    for (const [rows, cols, seed] of [[8, 256, 1], [12, 140, 2], [4, 4096, 3]]) {
      const r = prng(seed);
      const kinds = [
        () => near(1.5, Math.floor(r() * 3)),
        () => (r() < 0.5 ? 2 ** 40 : 1) * near(1 + Math.floor(r() * 4) / 8, Math.floor(r() * 2)),
        () => (r() < 0.5 ? -1 : 1) * 2 ** (121 + Math.floor(r() * 6)),
        () => (r() < 0.5 ? near(1, Math.floor(r() * 2)) : 2 ** -(23 + Math.floor(r() * 4)) * (1 + Math.floor(r() * 4) / 4)),
        () => Math.fround(r() * 2 - 1),
        () => (r() < 0.03 ? -3.4001e38 : Math.fround(r() * 3e34)),
        () => Math.fround((r() - 0.5) * 2 ** (Math.floor(r() * 80) - 40)),
      ];
      // One kind per 16 tiles (4 rows of 64 values).
      const kind = (i: number) => kinds[(Math.floor(i / cols / 4) + Math.floor((i % cols) / 64)) % kinds.length];
      const v = Array.from({ length: rows * cols }, (_, i) => kind(i)());
      const w = tensor(v, [rows, cols]);
      const want = refTransposableMask(w.toArray(), rows, cols);
      for (const isa of ISAS) {
        native.cpuIsa(isa);
        expect(nm.transposableMask(w, { out: poison(zeros([rows, cols], { dtype: 'uint8' })) }).toArray(), `${isa} ${rows}x${cols}`).toEqual(want);
      }
      native.cpuIsa('auto');
    }
  });

  it('keeps NaN and inf when a pattern allows it', () => {
    const v = new Array(16).fill(0.5);
    v[5] = NaN;
    v[10] = Infinity;
    const got = nm.transposableMask(tensor(v, [4, 4])).toArray();
    expect(got[5]).toBe(1);
    expect(got[10]).toBe(1);
  });
});

describe('nm.sad', () => {
  it('counts positions whose kept state differs', () => {
    const a = tensor([1, 1, 0, 0, 1, 0, 1, 0], [2, 4], { dtype: 'uint8' });
    const b = tensor([1, 0, 1, 0, 1, 0, 0, 1], [2, 4], { dtype: 'uint8' });
    expect(nm.sad(a, b)).toEqual({ changed: 4, fraction: 0.5, total: 8 });
    expect(nm.sad(a, a)).toEqual({ changed: 0, fraction: 0, total: 8 });
  });

  it('equals the float64 count on random masks', () => {
    const w1 = randomTensor([16, 64], 'float32', 1), w2 = randomTensor([16, 64], 'float32', 2);
    const m1 = nm.mask(w1, '2:4'), m2 = nm.mask(w2, '2:4');
    const a = m1.toArray(), b = m2.toArray();
    const changed = a.reduce((s, v, i) => s + (v !== b[i] ? 1 : 0), 0);
    expect(nm.sad(m1, m2).changed).toBe(changed);
  });

  it('counts any non-zero byte as kept, at every ISA and length (vector blocks and their tails)', () => {
    const r = prng(77);
    for (const len of [1, 31, 32, 33, 63, 64, 65, 200]) {
      // bytes 0..3: a non-zero byte other than 1 is kept too
      const a = Array.from({ length: len }, () => Math.floor(r() * 4)), b = Array.from({ length: len }, () => Math.floor(r() * 4));
      const changed = a.reduce((s, v, i) => s + ((v !== 0) !== (b[i] !== 0) ? 1 : 0), 0);
      for (const isa of ISAS) {
        native.cpuIsa(isa);
        expect(nm.sad(tensor(a, [len], { dtype: 'uint8' }), tensor(b, [len], { dtype: 'uint8' })).changed).toBe(changed);
      }
      native.cpuIsa('auto');
    }
  });
});
