// 1,200 random shapes, patterns and dtypes: mask against the float64 reference, prune/check consistency and
// decompress(compress(x)) == prune(x) bit for bit, with ties and NaN mixed in.
import { describe, expect, it } from 'vitest';
import { nm, tensor, zeros, type DType } from '../lib/index.js';
import { poison, prng, refMask, sameBits } from './helpers.js';

const DTYPES: DType[] = ['float32', 'float16', 'bfloat16', 'int8', 'uint8'];
const MS = [4, 8, 16, 32];

describe('fuzz', () => {
  it('1,200 random cases agree with the reference', () => {
    const r = prng(2024);
    for (let iter = 0; iter < 1200; iter++) {
      const m = MS[Math.floor(r() * MS.length)];
      const n = 1 + Math.floor(r() * (m - 1));
      const dtype = DTYPES[Math.floor(r() * DTYPES.length)];
      const rank = 1 + Math.floor(r() * 3);
      const shape = Array.from({ length: rank - 1 }, () => 1 + Math.floor(r() * 4));
      shape.push(m * (1 + Math.floor(r() * 3)));
      const size = shape.reduce((a, b) => a * b, 1);
      // A few distinct magnitudes so ties are common; NaN only where the dtype has it.
      const v = Array.from({ length: size }, () => {
        const k = r();
        if (dtype.startsWith('float') || dtype === 'bfloat16') {
          if (k < 0.02) return NaN;
          if (k < 0.3) return [0, 1, -1, 2][Math.floor(r() * 4)];
          return (r() - 0.5) * 10;
        }
        return Math.floor(r() * (dtype === 'int8' ? 256 : 256)) - (dtype === 'int8' ? 128 : 0);
      });
      const w = tensor(v, shape, { dtype });
      const ctx = `case ${iter}: ${dtype} [${shape}] ${n}:${m}`;
      const mask = nm.mask(w, { n, m }, { out: poison(zeros(shape, { dtype: 'uint8' })) }).toArray();
      expect(mask, ctx).toEqual(refMask(w.toArray(), shape[shape.length - 1], n, m));
      const pruned = nm.prune(w, { n, m });
      expect(nm.check(pruned, { n, m }).ok, ctx).toBe(true);
      const back = nm.compress(w, { n, m }).decompress({ out: poison(zeros(shape, { dtype })) });
      expect(sameBits(back, pruned), ctx).toBe(true);
    }
  });
});
