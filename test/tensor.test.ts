import { describe, expect, it } from 'vitest';
import { Tensor, rand, randn, tensor, zeros, ones, full } from '../lib/index.js';

describe('Tensor', () => {
  it('builds from flat and nested arrays and infers the shape', () => {
    const t = tensor([[1, 2, 3], [4, 5, 6]]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.toArray()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(tensor([1, 2, 3, 4], [2, 2]).shape).toEqual([2, 2]);
  });

  it('converts numbers to float16 / bfloat16 with round-to-nearest-even and decodes them back', () => {
    const v = [1, -2.5, 65504, 65520, 1 / 3, 5.960464477539063e-8, 2 ** -25, NaN, -Infinity, 0.1];
    const h = tensor(v, undefined, { dtype: 'float16' });
    expect(Array.from(h.storage())).toEqual([0x3c00, 0xc100, 0x7bff, 0x7c00, 0x3555, 0x0001, 0x0000, 0x7e00, 0xfc00, 0x2e66]);
    const b = tensor([1, 1 / 3, -3.0e38, 1.00390625], undefined, { dtype: 'bfloat16' });
    expect(Array.from(b.storage())).toEqual([0x3f80, 0x3eab, 0xff62, 0x3f80]);
    expect(b.toArray()[1]).toBeCloseTo(0.333984375, 9);
  });

  it('rounds and saturates integers', () => {
    expect(tensor([-300, -1.5, 2.5, 3.7, 300], undefined, { dtype: 'int8' }).toArray()).toEqual([-128, -2, 2, 4, 127]);
    expect(tensor([-5, 255.4, 256], undefined, { dtype: 'uint8' }).toArray()).toEqual([0, 255, 255]);
  });

  it('randn and rand are reproducible with a seed and have the right moments', () => {
    const a = randn([100000], { seed: 42 }), b = randn([100000], { seed: 42 }), c = randn([100000], { seed: 43 });
    expect(a.toArray()).toEqual(b.toArray());
    expect(a.toArray()).not.toEqual(c.toArray());
    const v = a.toArray();
    const mean = v.reduce((s, x) => s + x, 0) / v.length;
    const std = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
    expect(Math.abs(mean)).toBeLessThan(0.02);
    expect(Math.abs(std - 1)).toBeLessThan(0.02);
    const u = rand([10000], { seed: 1, low: 2, high: 3 }).toArray();
    expect(Math.min(...u)).toBeGreaterThanOrEqual(2);
    expect(Math.max(...u)).toBeLessThan(3);
  });

  it('reshape shares storage, transpose and astype copy', () => {
    const t = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    const r = t.reshape(3, -1);
    expect(r.shape).toEqual([3, 2]);
    r.storage()[0] = 9;
    expect(t.toArray()[0]).toBe(9);
    expect(t.transpose().toArray()).toEqual([9, 4, 2, 5, 3, 6]);
    expect(t.transpose().shape).toEqual([3, 2]);
    const h = t.astype('bfloat16');
    expect(h.dtype).toBe('bfloat16');
    expect(h.toArray()).toEqual([9, 2, 3, 4, 5, 6]);
  });

  it('data() and dataSync() return copies', async () => {
    const t = tensor([1, 2, 3]);
    const d = await t.data();
    d[0] = 7;
    expect(t.toArray()).toEqual([1, 2, 3]);
    expect(Array.from(t.dataSync())).toEqual([1, 2, 3]);
  });

  it('dispose is idempotent and use after dispose throws E_DISPOSED', () => {
    const t = zeros([2, 2]);
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    for (const f of [() => t.toArray(), () => t.reshape(4), () => t.transpose(), () => t.astype('float16'), () => t.storage()])
      expect(f).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
  });

  it('zeros, ones and full fill every dtype', () => {
    expect(ones([3], { dtype: 'float16' }).toArray()).toEqual([1, 1, 1]);
    expect(full([2], -3, { dtype: 'int8' }).toArray()).toEqual([-3, -3]);
    expect(zeros([2, 0]).size).toBe(0);
    expect(new Tensor([2], 'float32', new Float32Array([1, 2])).toArray()).toEqual([1, 2]);
  });
});
