// Bad input: every case must throw NmSparseError with the stated code, name the argument, and leave outputs and
// inputs untouched.
import { describe, expect, it } from 'vitest';
import { NmSparseError, nm, tensor, zeros, randn, rand, full, Tensor, setNumThreads, parsePattern } from '../lib/index.js';
import { poison } from './helpers.js';
import { native } from '../lib/native.js';

const w8 = () => randn([4, 8], { seed: 1 });
const disposed = () => {
  const t = zeros([4, 8]);
  t.dispose();
  return t;
};

const cases: Array<[string, string, () => unknown, RegExp?]> = [
  ['mask: m not supported', 'E_PATTERN', () => nm.mask(w8(), '2:3'), /pattern\.m/],
  ['mask: m = 6', 'E_PATTERN', () => nm.mask(w8(), { n: 2, m: 6 })],
  ['mask: n = m', 'E_PATTERN', () => nm.mask(w8(), '4:4'), /pattern\.n/],
  ['mask: n > m', 'E_PATTERN', () => nm.mask(w8(), '5:4')],
  ['mask: n = 0', 'E_PATTERN', () => nm.mask(w8(), '0:4')],
  ['mask: fractional n', 'E_PATTERN', () => nm.mask(w8(), { n: 1.5, m: 4 })],
  ['mask: pattern garbage', 'E_PATTERN', () => nm.mask(w8(), 'two:four')],
  ['mask: pattern missing', 'E_PATTERN', () => nm.mask(w8(), undefined as never)],
  ['mask: last dim not divisible', 'E_SHAPE', () => nm.mask(randn([4, 6]), '2:4'), /divisible by m = 4/],
  ['mask: empty tensor', 'E_SHAPE', () => nm.mask(zeros([0, 4]), '2:4'), /non-empty/],
  ['mask: scalar', 'E_SHAPE', () => nm.mask(zeros([]), '2:4')],
  ['mask: not a tensor', 'E_TYPE', () => nm.mask([1, 2, 3, 4] as never, '2:4'), /a Tensor/],
  ['mask: disposed', 'E_DISPOSED', () => nm.mask(disposed(), '2:4')],
  ['mask: out of wrong dtype', 'E_DTYPE', () => nm.mask(w8(), '2:4', { out: zeros([4, 8]) }), /options\.out/],
  ['mask: out of wrong shape', 'E_SHAPE', () => nm.mask(w8(), '2:4', { out: zeros([8, 4], { dtype: 'uint8' }) })],
  ['prune: out of wrong dtype', 'E_DTYPE', () => nm.prune(w8(), '2:4', { out: zeros([4, 8], { dtype: 'float16' }) })],
  ['prune: disposed out', 'E_DISPOSED', () => nm.prune(w8(), '2:4', { out: disposed() })],
  ['check: m = 64', 'E_PATTERN', () => nm.check(w8(), '2:64')],
  ['check: last dim 7', 'E_SHAPE', () => nm.check(randn([2, 7]), '1:4')],
  ['compress: last dim not divisible', 'E_SHAPE', () => nm.compress(randn([4, 12]), '2:8')],
  ['compress: disposed', 'E_DISPOSED', () => nm.compress(disposed(), '2:4')],
  ['compress: not a tensor', 'E_TYPE', () => nm.compress(new Float32Array(8) as never, '2:4')],
  ['transposableMask: rows not multiple of 4', 'E_SHAPE', () => nm.transposableMask(randn([6, 8]))],
  ['transposableMask: 1-D', 'E_SHAPE', () => nm.transposableMask(randn([16]))],
  ['transposableMask: 3-D', 'E_SHAPE', () => nm.transposableMask(randn([4, 4, 4]))],
  ['sad: shapes differ', 'E_SHAPE', () => nm.sad(zeros([4], { dtype: 'uint8' }), zeros([8], { dtype: 'uint8' }))],
  ['sad: not uint8', 'E_DTYPE', () => nm.sad(zeros([4]), zeros([4], { dtype: 'uint8' }))],
  ['sad: empty', 'E_SHAPE', () => nm.sad(zeros([0], { dtype: 'uint8' }), zeros([0], { dtype: 'uint8' }))],
  ['tensor: length does not match shape', 'E_SHAPE', () => tensor([1, 2, 3], [2, 2]), /shape/],
  ['tensor: ragged nested array', 'E_SHAPE', () => tensor([[1, 2], [3]])],
  ['tensor: unknown dtype', 'E_DTYPE', () => tensor([1], [1], { dtype: 'float64' as never }), /options\.dtype/],
  ['tensor: unknown device', 'E_DEVICE', () => tensor([1], [1], { device: 'tpu' as never })],
  ['tensor: strings', 'E_TYPE', () => tensor(['a'] as never)],
  ['zeros: negative size', 'E_SHAPE', () => zeros([2, -1])],
  ['zeros: NaN size', 'E_SHAPE', () => zeros([NaN])],
  ['zeros: Infinity size', 'E_SHAPE', () => zeros([Infinity, 2])],
  ['zeros: fractional size', 'E_SHAPE', () => zeros([1.5])],
  ['zeros: too many elements', 'E_SHAPE', () => zeros([2 ** 30, 2 ** 30])],
  ['zeros: shape not an array', 'E_SHAPE', () => zeros(5 as never)],
  ['full: value not a number', 'E_TYPE', () => full([2], '1' as never)],
  ['randn: negative std', 'E_VALUE', () => randn([2], { std: -1 })],
  ['randn: fractional seed', 'E_VALUE', () => randn([2], { seed: 0.5 })],
  ['rand: high < low', 'E_VALUE', () => rand([2], { low: 1, high: 0 })],
  ['reshape: wrong element count', 'E_SHAPE', () => zeros([2, 3]).reshape(4, 2)],
  ['reshape: two -1', 'E_SHAPE', () => zeros([2, 3]).reshape(-1, -1)],
  ['transpose: 1-D', 'E_SHAPE', () => zeros([3]).transpose()],
  ['astype: unknown dtype', 'E_DTYPE', () => zeros([3]).astype('int32' as never)],
  ['to: unknown device', 'E_DEVICE', () => zeros([3]).to('gpu' as never)],
  ['Tensor: storage of the wrong class', 'E_SHAPE', () => new Tensor([2], 'float16', new Float32Array(2))],
  ['setNumThreads: 0', 'E_VALUE', () => setNumThreads(0)],
  ['setNumThreads: fractional', 'E_VALUE', () => setNumThreads(2.5)],
  ['parsePattern: object without n', 'E_PATTERN', () => parsePattern({ m: 4 })],
  ['native transpose2d: dst overlaps src', 'E_VALUE', () => { const s = new Float32Array(16); return native.transpose2d(s, 0, 1, 2, 4, s.subarray(2)); }, /overlap/],
];

describe('bad input gets a typed NmSparseError', () => {
  it('has at least 30 cases', () => expect(cases.length).toBeGreaterThanOrEqual(30));
  for (const [name, code, fn, message] of cases)
    it(`${name} → ${code}`, () => {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NmSparseError);
      expect((err as NmSparseError).code).toBe(code);
      expect((err as NmSparseError).message).toMatch(/got .*expected|:/);
      if (message) expect((err as NmSparseError).message).toMatch(message);
    });

  it('a failed op leaves its inputs and outputs untouched', () => {
    const w = randn([4, 8], { seed: 3 });
    const before = w.toArray();
    const out = poison(zeros([4, 8], { dtype: 'uint8' }));
    expect(() => nm.mask(w, '2:3', { out })).toThrow(NmSparseError);
    expect(out.toArray().every((v) => v === 0x5a)).toBe(true);
    expect(w.toArray()).toEqual(before);
  });
});
