// N:M ops on 'cuda' against the same ops on the CPU, bit for bit: mask, prune (also in place and into a poisoned
// out), check, transposableMask, sad, compress/decompress and the round trip of SparseTensors between devices.
// Seeded random inputs with ties, NaN and ±inf, every dtype, square and non-square, every M and several N.
import { describe, expect, it } from 'vitest';
import { nm, tensor, zeros, Tensor, SparseTensor, type DType } from '../../lib/index.js';
import { randomTensor, sameBits, poison } from '../helpers.js';
import { gpuUsable } from './gpu-helpers.js';

const toCpu = (s: SparseTensor): SparseTensor => s.to('cpu');

const DTYPES: DType[] = ['float32', 'float16', 'bfloat16', 'int8', 'uint8'];
const PATTERNS: Array<[number, number]> = [[1, 4], [2, 4], [3, 4], [2, 8], [3, 8], [4, 8], [5, 16], [8, 16], [16, 32], [31, 32], [1, 32]];
// cols are multiples of 32 (every M); rows odd and even; rank 3 too.
const SHAPES: number[][] = [[8, 32], [33, 96], [1, 64], [3, 5, 32], [128, 256]];

/** Random values with extra ties (repeated magnitudes of both signs) and, for floats, NaN and ±inf. */
function spiced(shape: number[], dtype: DType, seed: number): Tensor {
  const t = randomTensor(shape, dtype, seed);
  const v = t.toArray();
  for (let i = 0; i < v.length; i += 7) v[i] = (i % 3 === 0 ? -1 : 1) * Math.abs(v[(i * 13) % v.length]);
  if (dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16') {
    for (let i = 5; i < v.length; i += 61) v[i] = NaN;
    for (let i = 11; i < v.length; i += 97) v[i] = i % 2 ? Infinity : -Infinity;
    for (let i = 3; i < v.length; i += 41) v[i] = -0;
  }
  return tensor(v, shape, { dtype });
}

function onGpu(t: Tensor): Tensor {
  return t.to('cuda');
}

describe.skipIf(!gpuUsable)('N:M ops on cuda match the CPU bit for bit', () => {
  for (const dtype of DTYPES)
    it(`mask / prune / check / compress, ${dtype}`, () => {
      let seed = 1;
      for (const shape of SHAPES)
        for (const [n, m] of PATTERNS) {
          const w = spiced(shape, dtype, seed++);
          const g = onGpu(w);
          const what = `${dtype} [${shape}] ${n}:${m}`;
          const mc = nm.mask(w, { n, m }), mg = nm.mask(g, { n, m });
          expect(mg.device, what).toBe('cuda');
          expect(sameBits(mg.to('cpu'), mc), `mask ${what}`).toBe(true);
          const pc = nm.prune(w, { n, m }), pg = nm.prune(g, { n, m });
          expect(sameBits(pg.to('cpu'), pc), `prune ${what}`).toBe(true);
          expect(nm.check(pg, { n, m })).toEqual(nm.check(pc, { n, m }));
          expect(nm.check(g, { n, m })).toEqual(nm.check(w, { n, m }));
          const sg = nm.compress(g, { n, m });
          expect(sg.device).toBe('cuda');
          expect(sameBits(sg.decompress().to('cpu'), pc), `decompress(compress) ${what}`).toBe(true);
          const back = toCpu(sg), sc = nm.compress(w, { n, m });
          expect(sameBits(back.values, sc.values), `values ${what}`).toBe(true);
          expect(Buffer.from(back.positions).equals(Buffer.from(sc.positions)), `positions ${what}`).toBe(true);
          for (const t of [g, mg, pg, sg]) t.dispose();
        }
    });

  it('positions pack correctly when rows share 32-bit words (narrow rows) and when a group spans several words', () => {
    for (const [rows, cols, n, m] of [[97, 4, 1, 4], [65, 12, 2, 4], [33, 8, 3, 8], [17, 32, 16, 32], [9, 64, 31, 32], [1000, 20, 2, 4]]) {
      const w = randomTensor([rows, cols], 'float16', rows * cols + n);
      const sc = nm.compress(w, { n, m });
      const sg = toCpu(nm.compress(w.to('cuda'), { n, m }));
      expect(Buffer.from(sg.positions).equals(Buffer.from(sc.positions)), `[${rows}, ${cols}] ${n}:${m}`).toBe(true);
      expect(sameBits(sg.values, sc.values)).toBe(true);
    }
  });

  it('prune in place (out = w) and into a poisoned out tensor', () => {
    for (const dtype of DTYPES) {
      const w = randomTensor([16, 64], dtype, 7);
      const ref = nm.prune(w, '2:4');
      const g = w.to('cuda');
      expect(nm.prune(g, '2:4', { out: g })).toBe(g);
      expect(sameBits(g.to('cpu'), ref)).toBe(true);
      const out = poison(zeros([16, 64], { dtype })).to('cuda');
      nm.prune(w.to('cuda'), '2:4', { out });
      expect(sameBits(out.to('cpu'), ref)).toBe(true);
      const mout = poison(zeros([16, 64], { dtype: 'uint8' })).to('cuda');
      nm.mask(w.to('cuda'), '2:4', { out: mout });
      expect(sameBits(mout.to('cpu'), nm.mask(w, '2:4'))).toBe(true);
    }
  });

  it('check reports the same first violation as the CPU', () => {
    const w = randomTensor([40, 64], 'float32', 3);
    const p = nm.prune(w, '2:4');
    const s = p.storage() as Float32Array;
    s[17 * 64 + 36] = 1;  // a third non-zero in the group [17, 36..39] (and maybe more later)
    s[17 * 64 + 37] = 1;
    s[17 * 64 + 38] = 1;
    s[30 * 64 + 4] = 5;
    s[30 * 64 + 5] = 5;
    s[30 * 64 + 6] = 5;
    const rc = nm.check(p, '2:4'), rg = nm.check(p.to('cuda'), '2:4');
    expect(rc.ok).toBe(false);
    expect(rg).toEqual(rc);
    expect(nm.check(nm.prune(w, '2:4').to('cuda'), '2:4')).toEqual({ ok: true });
    expect(nm.check(w.to('cuda'), '3:4').ok).toBe(false);
  });

  for (const dtype of DTYPES)
    it(`transposableMask, ${dtype}`, () => {
      let seed = 100;
      for (const shape of [[4, 4], [8, 12], [16, 4], [64, 128], [132, 68]]) {
        const w = spiced(shape, dtype, seed++);
        expect(sameBits(nm.transposableMask(w.to('cuda')).to('cpu'), nm.transposableMask(w)), `${dtype} [${shape}]`).toBe(true);
      }
      // all ties: the first pattern in ascending code order, everywhere
      const flat = tensor(new Array(64).fill(1), [8, 8], { dtype });
      expect(sameBits(nm.transposableMask(flat.to('cuda')).to('cpu'), nm.transposableMask(flat))).toBe(true);
    });

  it('sad matches the CPU, with vector bodies and odd tails', () => {
    for (const size of [1, 15, 16, 17, 1000, 4096 + 3, 1 << 20, (1 << 20) + 13]) {
      const a = randomTensor([size], 'uint8', size), b = randomTensor([size], 'uint8', size + 1);
      const av = a.storage() as Uint8Array, bv = b.storage() as Uint8Array;
      for (let i = 0; i < size; i += 3) bv[i] = av[i] === 0 ? 0 : av[i] + 1;  // many equal kept states
      expect(nm.sad(a.to('cuda'), b.to('cuda')), `size ${size}`).toEqual(nm.sad(a, b));
    }
  });

  it("a CPU SparseTensor moved to cuda and back with .to() is unchanged (SparseTensor.to, lib/compress.ts)", () => {
    for (const dtype of DTYPES) {
      const w = randomTensor([24, 64], dtype, 9);
      const s = nm.compress(w, '2:8');
      const g = s.to('cuda');
      expect(g.device).toBe('cuda');
      const back = g.to('cpu');
      expect(sameBits(back.values, s.values)).toBe(true);
      expect(Buffer.from(back.positions).equals(Buffer.from(s.positions))).toBe(true);
    }
  });

  it('sparseFromCpu / sparseToCpu move the portable form exactly, and the cuda form multiplies like a fresh one', () => {
    for (const dtype of DTYPES) {
      const w = randomTensor([32, 64], dtype, 21);
      const s = nm.compress(w, '2:4');
      const g = s.to('cuda');
      expect(g.device).toBe('cuda');
      expect(sameBits(g.decompress().to('cpu'), nm.prune(w, '2:4'))).toBe(true);
      const back = toCpu(g);
      expect(sameBits(back.values, s.values)).toBe(true);
      expect(Buffer.from(back.positions).equals(Buffer.from(s.positions))).toBe(true);
    }
  });

  it('a large 2:4 float16 weight (the shape sparse GEMM uses)', () => {
    const w = randomTensor([1024, 4096], 'float16', 11);
    const g = w.to('cuda');
    expect(sameBits(nm.prune(g, '2:4').to('cpu'), nm.prune(w, '2:4'))).toBe(true);
    expect(sameBits(nm.compress(g, '2:4').decompress().to('cpu'), nm.prune(w, '2:4'))).toBe(true);
  });
});
