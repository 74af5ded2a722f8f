import { describe, expect, it } from 'vitest';
import { NmSparseError, SparseTensor, Tensor, nm, zeros, type DType } from '../lib/index.js';
import { poison, randomTensor, refMask, sameBits } from './helpers.js';

describe('nm.compress / SparseTensor', () => {
  it('stores the kept values in ascending position and the positions in log2(M) bits', () => {
    const w = randomTensor([3, 16], 'float32', 4);
    const s = nm.compress(w, '2:4');
    const wv = w.toArray(), mask = refMask(wv, 16, 2, 4);
    const expectedValues = wv.filter((_, i) => mask[i]);
    expect(s.values.shape).toEqual([3, 8]);
    expect(s.values.toArray()).toEqual(expectedValues);
    // positions: row-wise bit stream of 2-bit fields, little-endian
    const pos = s.positions;
    expect(pos.length).toBe(3 * 2);
    for (let r = 0; r < 3; r++) {
      const kept: number[] = [];
      for (let c = 0; c < 16; c++) if (mask[r * 16 + c]) kept.push(c % 4);
      kept.forEach((p, j) => expect((pos[r * 2 + (j >> 2)] >> ((j & 3) * 2)) & 3).toBe(p));
    }
  });

  for (const dtype of ['float32', 'float16', 'bfloat16', 'int8', 'uint8'] as DType[])
    for (const [n, m] of [[2, 4], [1, 4], [3, 8], [4, 8], [5, 16], [16, 32], [31, 32]])
      it(`decompress(compress(x)) == prune(x) bit for bit, ${dtype} ${n}:${m}`, () => {
        const w = randomTensor([5, m * 2], dtype, n * 31 + m);
        const s = nm.compress(w, { n, m });
        const out = poison(zeros([5, m * 2], { dtype }));
        const d = s.decompress({ out });
        expect(d).toBe(out);
        expect(sameBits(d, nm.prune(w, { n, m }))).toBe(true);
      });

  it('2:4 float32 takes at most 0.6x the dense bytes', () => {
    const s = nm.compress(randomTensor([64, 256], 'float32', 1), '2:4');
    expect(s.bytes).toBe(64 * 128 * 4 + 64 * 128 * 2 / 8);
    expect(s.bytes / s.denseBytes).toBeLessThanOrEqual(0.6);
  });

  it('keeps the shape of higher-rank tensors and rejects use after dispose', () => {
    const s = nm.compress(randomTensor([2, 3, 8], 'float32', 9), '2:8');
    expect(s.shape).toEqual([2, 3, 8]);
    expect(s.values.shape).toEqual([2, 3, 2]);
    expect(s.decompress().shape).toEqual([2, 3, 8]);
    s.dispose();
    s.dispose();
    expect(() => s.decompress()).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
  });
});

describe('crafted SparseTensors are checked like loaded ones', () => {
  it('corrupt positions (all 0xFF), wrong sizes and wrong values shapes are typed errors', () => {
    const w = randomTensor([4, 16], 'float32', 31);
    const s = nm.compress(w, '2:4');
    const make = (values: unknown, positions: unknown) => () => new SparseTensor([4, 16], { n: 2, m: 4 }, 'float32', { values: values as Tensor, positions: positions as Uint8Array });
    const expectCode = (f: () => unknown, code: string, text: string) => {
      let e: unknown = null;
      try { f(); } catch (x) { e = x; }
      expect(e).toBeInstanceOf(NmSparseError);
      expect((e as NmSparseError).code).toBe(code);
      expect((e as Error).message).toContain(text);
    };
    expectCode(make(s.values, new Uint8Array(s.positions.length).fill(0xff)), 'E_VALUE', 'row 0, group 0');
    expectCode(make(s.values, s.positions.subarray(1)), 'E_SHAPE', 'parts.positions');
    expectCode(make(s.values.reshape([8, 4]), s.positions), 'E_SHAPE', 'parts.values');
    expectCode(make(s.values, [1, 2]), 'E_SHAPE', 'parts.positions');
    // the genuine parts still make a tensor that decompresses to the pruned weight
    const ok = make(s.values, s.positions.slice())() as SparseTensor;
    expect(Array.from(ok.decompress().storage())).toEqual(Array.from(s.decompress().storage()));
  });
});
