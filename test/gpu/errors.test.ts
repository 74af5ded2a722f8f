// Bad input on 'cuda': every case throws NmSparseError with the stated code (never a crash), and the process and
// the GPU stay usable afterwards. Plus the facts backendInfo() must report on a GPU machine.
import { describe, expect, it } from 'vitest';
import { linear, matmul, nm, zeros, type DType } from '../../lib/index.js';
import { cudaBackend, sparseInfo } from '../../lib/cuda.js';
import { randomTensor, sameBits } from '../helpers.js';
import { gpuUsable, gpuInfo } from './gpu-helpers.js';

const g = (shape: number[], dtype: DType = 'float16', seed = 1) => randomTensor(shape, dtype, seed).to('cuda');

describe.skipIf(!gpuUsable)('backendInfo() on a GPU machine', () => {
  it('names the device and the libraries', () => {
    const c = gpuInfo.cuda;
    expect(c.usable).toBe(true);
    expect(c.reason).toBeNull();
    expect(c.device?.name).toBeTruthy();
    expect(Number(c.device?.sm)).toBeGreaterThanOrEqual(8);
    expect(c.device?.memoryBytes).toBeGreaterThan(2 ** 30);
    const [maj, min] = (c.cusparselt?.version ?? '0.0').split('.').map(Number);
    expect(maj * 100 + min).toBeGreaterThanOrEqual(6);
    expect(c.cusparselt?.path).toMatch(/libcusparseLt/);
    // Usable without cuSPARSELt is a fallback, not a pass: on a GPU machine the sparse path must be there.
    expect(c.sparseReason, c.sparseReason).toBeUndefined();
    expect(c.cublaslt?.error, c.cublaslt?.error).toBeUndefined();
  });
});

describe.skipIf(!gpuUsable)('bad input on cuda', () => {
  const cases: Array<[string, string, () => unknown]> = [
    ['sad: masks on different devices', 'E_DEVICE', () => nm.sad(zeros([8], { dtype: 'uint8' }), zeros([8], { dtype: 'uint8' }).to('cuda'))],
    ['mask: out on the cpu', 'E_DEVICE', () => nm.mask(g([4, 8]), '2:4', { out: zeros([4, 8], { dtype: 'uint8' }) })],
    ['mask: out of the wrong dtype', 'E_DTYPE', () => nm.mask(g([4, 8]), '2:4', { out: zeros([4, 8]).to('cuda') })],
    ['prune: out of the wrong shape', 'E_SHAPE', () => nm.prune(g([4, 8]), '2:4', { out: zeros([8, 4], { dtype: 'float16' }).to('cuda') })],
    ['mask: last dim not divisible', 'E_SHAPE', () => nm.mask(g([4, 6]), '2:4')],
    ['mask: bad pattern', 'E_PATTERN', () => nm.mask(g([4, 8]), '4:4')],
    ['transposableMask: not multiples of 4', 'E_SHAPE', () => nm.transposableMask(g([6, 8]))],
    ['sparseLinear: x on the cpu', 'E_DEVICE', () => nm.linear(randomTensor([2, 16], 'float16', 1), nm.compress(g([8, 16]), '2:4'))],
    ['sparseLinear: dtype mismatch', 'E_DTYPE', () => nm.linear(g([2, 16], 'bfloat16'), nm.compress(g([8, 16]), '2:4'))],
    ['sparseLinear: in mismatch', 'E_SHAPE', () => nm.linear(g([2, 32]), nm.compress(g([8, 16]), '2:4'))],
    ['sparseLinear: bias length', 'E_SHAPE', () => nm.linear(g([2, 16]), nm.compress(g([8, 16]), '2:4'), g([7]))],
    ['sparseLinear: bias dtype', 'E_DTYPE', () => nm.linear(g([2, 16]), nm.compress(g([8, 16]), '2:4'), g([8], 'float32'))],
    ['sparseLinear: int8 bias must be float32', 'E_DTYPE', () => nm.linear(g([2, 32], 'int8'), nm.compress(g([8, 32], 'int8'), '2:4'), g([8], 'int8'))],
    ['sparseLinear: unknown activation', 'E_VALUE', () => nm.linear(g([2, 16]), nm.compress(g([8, 16]), '2:4'), null, { activation: 'tanh' as 'relu' })],
    // A bias is [out] on every device (docs/design.md §4): a [1, out] one is E_SHAPE here as on the CPU.
    ['sparseLinear: a [1, out] bias', 'E_SHAPE', () => nm.linear(g([2, 16]), nm.compress(g([8, 16]), '2:4'), g([1, 8]))],
    ['linear: a [1, out] bias', 'E_SHAPE', () => linear(g([2, 16]), g([8, 16]), g([1, 8]))],
    ['matmul: a [1, n] bias', 'E_SHAPE', () => matmul(g([4, 8]), g([8, 4]), { bias: g([1, 4]) })],
    ['linear: empty x', 'E_SHAPE', () => linear(g([0, 16]), g([8, 16]))],
    ['linear: out is x', 'E_VALUE', () => { const x = g([8, 8]); return linear(x, g([8, 8]), null, { out: x }); }],
    ['sparseLinear: out is the bias', 'E_VALUE', () => { const b = g([8]); return nm.linear(g([1, 16]), nm.compress(g([8, 16]), '2:4'), b, { out: b.reshape([1, 8]) }); }],
    ['sparseLinear: out of the wrong dtype', 'E_DTYPE', () => nm.linear(g([2, 16]), nm.compress(g([8, 16]), '2:4'), null, { out: g([2, 8], 'float32') })],
    ['sparseLinear: uint8', 'E_UNSUPPORTED', () => nm.linear(g([2, 16], 'uint8'), nm.compress(g([8, 16], 'uint8'), '2:4'))],
    ['sparseLinear: disposed weight', 'E_DISPOSED', () => {
      const s = nm.compress(g([8, 16]), '2:4');
      s.dispose();
      return nm.linear(g([2, 16]), s);
    }],
    ['sparseLinear: disposed x', 'E_DISPOSED', () => {
      const x = g([2, 16]);
      x.dispose();
      return nm.linear(x, nm.compress(g([8, 16]), '2:4'));
    }],
    ['sparseMatmul: b rows', 'E_SHAPE', () => nm.compress(g([8, 16]), '2:4').matmul(g([8, 4]))],
    ['matmul: inner dimensions', 'E_SHAPE', () => matmul(g([4, 8]), g([4, 8]))],
    ['matmul: dtypes differ', 'E_DTYPE', () => matmul(g([4, 8]), g([8, 4], 'float32'))],
    ['matmul: uint8', 'E_UNSUPPORTED', () => matmul(g([4, 8], 'uint8'), g([8, 4], 'uint8'))],
    ['matmul: 3-D', 'E_SHAPE', () => matmul(g([2, 4, 8]), g([8, 4]))],
    ['linear: weight on the cpu', 'E_DEVICE', () => linear(g([2, 8]), randomTensor([4, 8], 'float16', 1))],
    ['matmul: out is an input', 'E_VALUE', () => {
      const a = g([8, 8]);
      return matmul(a, g([8, 8]), { out: a });
    }],
    ['alloc: more than the device has', 'E_OOM', () => cudaBackend.alloc(2 ** 40)],
    ['alloc: negative size', 'E_VALUE', () => cudaBackend.alloc(-1)],
  ];
  for (const [name, code, fn] of cases)
    it(name, () => {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(err, `${name} did not throw`).toBeDefined();
      expect((err as { code?: string }).code, String(err)).toBe(code);
      expect((err as Error).name).toBe('NmSparseError');
    });

  it('the GPU still works after all of the above', () => {
    const t = randomTensor([16, 32], 'float16', 2);
    expect(sameBits(nm.prune(t.to('cuda'), '2:4').to('cpu'), nm.prune(t, '2:4'))).toBe(true);
  });

  it("sparseInfo() says whether cuSPARSELt holds the weight, and why not", () => {
    expect(sparseInfo(nm.compress(g([64, 64]), '2:4')).cusparselt).toBe(true);
    const u = sparseInfo(nm.compress(g([64, 64], 'uint8'), '2:4'));
    expect(u.cusparselt).toBe(false);
    expect(String(u.reason)).toMatch(/uint8/);
    const f = sparseInfo(nm.compress(g([64, 64], 'float16'), '3:4'));
    expect(f.cusparselt).toBe(false);
    expect(String(f.reason)).toMatch(/2:4/);
  });
});
