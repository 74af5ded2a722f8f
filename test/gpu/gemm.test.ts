// Sparse and dense GEMM on 'cuda' against float64 products written here: compressed matmul vs matmul(x, prune(W)ᵀ)
// for float16, bfloat16, float32 (TF32) and int8; shapes cuSPARSELt takes as they are and shapes it needs padded;
// bias, ReLU and GELU epilogues; forced sparse / forced dense dispatch; the plan cache's record of each shape; and
// cuBLASLt dense matmul/linear with every transpose.
import { describe, expect, it } from 'vitest';
import { linear, matmul, nm, tensor, zeros, type Activation, type DType } from '../../lib/index.js';
import { planInfo, clearPlans, sparseInfo } from '../../lib/cuda.js';
import { SparseTensor } from '../../lib/compress.js';
import { poison, randomTensor } from '../helpers.js';
import { gpuInfo, gpuUsable, refProduct, tolerance, mismatch, values, withDispatch, withEnv } from './gpu-helpers.js';

/** x [tokens, in] and W [out, in] of `dtype`, small values (int8: integers), on both devices. */
function operands(tokens: number, inF: number, outF: number, dtype: DType, seed: number) {
  const x = randomTensor([tokens, inF], dtype, seed);
  const w = randomTensor([outF, inF], dtype, seed + 1);
  const bias = randomTensor([outF], dtype === 'int8' ? 'float32' : dtype, seed + 2);
  return { x, w, bias };
}

function checkLinear(dtype: DType, tokens: number, inF: number, outF: number, pattern: string, opts: { bias?: boolean; act?: Activation } = {}) {
  const { x, w, bias } = operands(tokens, inF, outF, dtype, tokens * 7 + inF + outF);
  const pruned = nm.prune(w, pattern);
  const s = nm.compress(w.to('cuda'), pattern);
  const b = opts.bias ? bias.to('cuda') : null;
  const y = nm.linear(x.to('cuda'), s, b, { activation: opts.act });
  const outDtype = dtype === 'int8' ? 'float32' : dtype;
  expect(y.device).toBe('cuda');
  expect(y.dtype).toBe(outDtype);
  expect(y.shape).toEqual([tokens, outF]);
  // Y[t, o] = Σ_k x[t, k] · W̃[o, k]
  const r = refProduct(values(x), inF, 1, values(pruned), 1, inF, tokens, outF, inF, opts.bias ? values(bias) : null, false, opts.act);
  const tf32 = dtype === 'float32';
  const bad = mismatch(values(y), r, tolerance(dtype, outDtype, tf32));
  expect(bad, `${dtype} linear [${tokens}x${inF}] x [${outF}x${inF}]ᵀ ${pattern} bias=${!!opts.bias} act=${opts.act}`).toBeNull();
  return s;
}

describe.skipIf(!gpuUsable)('sparse linear on cuda = x · prune(W)ᵀ', () => {
  const shapes: Array<[number, number, number]> = [
    [64, 128, 256],   // every dimension in cuSPARSELt's rules
    [33, 96, 80],     // tokens padded
    [7, 64, 10],      // out padded (a classifier head)
    [1, 784, 10],     // MNIST-sized, one token
    [5, 100, 36],     // in and out padded
    [256, 1024, 512], // larger
  ];
  for (const dtype of ['float16', 'bfloat16', 'int8'] as DType[])
    it(`${dtype}, 2:4`, () => {
      for (const [t, i, o] of shapes) if (i % 4 === 0) checkLinear(dtype, t, i, o, '2:4');
    });

  it('a −0.0 kept by a 4:8 mask reaches cuSPARSELt as +0, so its 2:4 check agrees with ours', () => {
    const rows = 64, cols = 128, tokens = 16;
    // Each group of 8: [a, −0, −0, 0, b, 0, 0, 0]. 4:8 keeps a, b and the two lowest-index zeros (both −0.0): 2:4 for
    // us (one non-zero in the first four), three non-zero bit patterns for cuSPARSELt unless they are made +0.
    const data = new Float32Array(rows * cols);
    for (let i = 0; i < rows * cols; i += 8) {
      data[i] = 1 + (i % 5);
      data[i + 1] = data[i + 2] = -0;
      data[i + 4] = -(2 + (i % 3));
    }
    const w = tensor(data, [rows, cols], { dtype: 'float16' });
    const x = randomTensor([tokens, cols], 'float16', 9);
    const s = nm.compress(w.to('cuda'), '4:8');
    expect(sparseInfo(s).cusparselt).toBe(true);
    const y = withDispatch('sparse', () => nm.linear(x.to('cuda'), s));
    const r = refProduct(values(x), cols, 1, values(nm.prune(w, '4:8')), 1, cols, tokens, rows, cols, null, false, undefined);
    expect(mismatch(values(y), r, tolerance('float16', 'float16', false))).toBeNull();
  });

  it('float32 with a pattern cuSPARSELt takes (1:4 ⊂ 1:2 pairs) and one it cannot (2:4: dense, with the reason)', () => {
    for (const [t, i, o] of shapes) checkLinear('float32', t, i, o, '1:4');
    const s = checkLinear('float32', 64, 128, 256, '2:4');
    const inf = sparseInfo(s);
    if (!inf.cusparselt) expect(String(inf.reason)).toMatch(/1:2/);
  });

  it('other N:M patterns (dense fallback where cuSPARSELt cannot run them)', () => {
    for (const p of ['1:4', '1:8', '2:8', '4:8', '3:4', '8:16'])
      checkLinear('float16', 48, 128, 64, p);
  });

  for (const dtype of ['float16', 'bfloat16', 'float32', 'int8'] as DType[])
    it(`${dtype}: bias, relu, gelu`, () => {
      const p = dtype === 'float32' ? '1:4' : '2:4';
      for (const act of [undefined, 'relu', 'gelu'] as Array<Activation | undefined>)
        for (const bias of [false, true]) {
          checkLinear(dtype, 40, 128, 96, p, { bias, act });
          checkLinear(dtype, 17, 64, 30, p, { bias, act });
        }
    });

  it('x with leading batch dimensions', () => {
    const x = randomTensor([2, 3, 64], 'float16', 5), w = randomTensor([32, 64], 'float16', 6);
    const y = nm.linear(x.to('cuda'), nm.compress(w.to('cuda'), '2:4'));
    expect(y.shape).toEqual([2, 3, 32]);
    const r = refProduct(values(x), 64, 1, values(nm.prune(w, '2:4')), 1, 64, 6, 32, 64, null, false, undefined);
    expect(mismatch(values(y), r, tolerance('float16', 'float16', false))).toBeNull();
  });

  it('writes into options.out', () => {
    const { x, w } = operands(16, 64, 32, 'float16', 3);
    const out = randomTensor([16, 32], 'float16', 4).to('cuda');
    const y = nm.linear(x.to('cuda'), nm.compress(w.to('cuda'), '2:4'), null, { out });
    expect(y).toBe(out);
    const r = refProduct(values(x), 64, 1, values(nm.prune(w, '2:4')), 1, 64, 16, 32, 64, null, false, undefined);
    expect(mismatch(values(out), r, tolerance('float16', 'float16', false))).toBeNull();
  });
});

describe.skipIf(!gpuUsable)('S.matmul on cuda = prune(W) · B', () => {
  for (const dtype of ['float16', 'bfloat16', 'int8', 'float32'] as DType[])
    it(dtype, () => {
      const p = dtype === 'float32' ? '1:4' : '2:4';
      for (const [rows, cols, n] of [[64, 128, 32], [30, 64, 7], [256, 512, 100]]) {
        const w = randomTensor([rows, cols], dtype, rows + cols), b = randomTensor([cols, n], dtype, n);
        const bias = randomTensor([rows], dtype === 'int8' ? 'float32' : dtype, 3);
        const s = nm.compress(w.to('cuda'), p);
        for (const withBias of [false, true]) {
          const y = s.matmul(b.to('cuda'), withBias ? { bias: bias.to('cuda') } : {});
          const outDtype = dtype === 'int8' ? 'float32' : dtype;
          expect(y.shape).toEqual([rows, n]);
          const r = refProduct(values(nm.prune(w, p)), cols, 1, values(b), n, 1, rows, n, cols, withBias ? values(bias) : null, true, undefined);
          expect(mismatch(values(y), r, tolerance(dtype, outDtype, dtype === 'float32')), `${dtype} [${rows}x${cols}]·[${cols}x${n}]`).toBeNull();
        }
      }
    });
});

describe.skipIf(!gpuUsable)('dispatch and the plan cache', () => {
  it('forced sparse and forced dense give the same products; auto records its choice and timings', () => {
    clearPlans();
    for (const dtype of ['float16', 'bfloat16', 'int8'] as DType[]) {
      withDispatch('sparse', () => checkLinear(dtype, 128, 256, 128, '2:4', { bias: true, act: 'relu' }));
      withDispatch('dense', () => checkLinear(dtype, 128, 256, 128, '2:4', { bias: true, act: 'relu' }));
      withDispatch('auto', () => checkLinear(dtype, 128, 256, 128, '2:4', { bias: true, act: 'relu' }));
    }
    const plans = planInfo();
    const forcedSparse = plans.filter((p) => p.key.startsWith('[forced sparse]'));
    expect(forcedSparse.length).toBe(3);
    for (const p of forcedSparse) {
      expect(p.path).toBe('sparse');
      expect(p.verified).toBe(true);
      expect(p.algId).toBeGreaterThanOrEqual(0);
    }
    for (const p of plans.filter((q) => q.key.startsWith('[forced dense]'))) expect(p.path).toBe('dense');
    for (const p of plans.filter((q) => !q.key.startsWith('['))) {
      expect(['sparse', 'dense']).toContain(p.path);
      expect(p.verified).toBe(true);
      expect(p.sparseMs).toBeGreaterThan(0);
      expect(p.denseMs).toBeGreaterThan(0);
      if (p.path === 'dense') expect(p.reason).toMatch(/faster/);
    }
  });

  it('one plan per shape: repeated calls reuse it', () => {
    clearPlans();
    const { x, w } = operands(32, 128, 64, 'float16', 1);
    const s = nm.compress(w.to('cuda'), '2:4'), xg = x.to('cuda');
    for (let i = 0; i < 20; i++) nm.linear(xg, s).dispose();
    expect(planInfo().length).toBe(1);
    nm.linear(randomTensor([33, 128], 'float16', 2).to('cuda'), s).dispose();  // 33 pads to 40: a new key
    expect(planInfo().length).toBe(2);
  });

  it('forced sparse on a weight cuSPARSELt cannot take is a typed error naming the constraint', () => {
    const w = randomTensor([64, 128], 'float32', 1), x = randomTensor([8, 128], 'float32', 2);
    const s = nm.compress(w.to('cuda'), '2:4');  // float32 needs 1:2 pairs
    expect(() => withDispatch('sparse', () => nm.linear(x.to('cuda'), s))).toThrow(
      expect.objectContaining({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/1:2/) }));
  });
});

// NMSPARSE_TEST_PLAN_CACHE (test-only, native/cuda/spmm.cu) reaches the cache's rare branches on demand: a searched
// winner that fails its float64 check, a key whose every check fails, and eviction when the cache is full.
describe.skipIf(!gpuUsable || !!gpuInfo.cuda.sparseReason)('the plan cache\'s rare branches (NMSPARSE_TEST_PLAN_CACHE)', () => {
  const inF = 128, outF = 64;
  // Made at the first test (a skipped suite's body still runs, and there may be no GPU).
  let weight: { s: SparseTensor; pruned: number[] } | undefined;
  const theWeight = () => {
    if (!weight) {
      const { w } = operands(8, inF, outF, 'float16', 11);
      weight = { s: nm.compress(w.to('cuda'), '2:4'), pruned: values(nm.prune(w, '2:4')) };
    }
    return weight;
  };
  /** nm.linear on cuda for `tokens` rows, into a poisoned out, checked against the float64 product. */
  const linearChecked = (tokens: number): void => {
    const { s, pruned } = theWeight();
    const x = randomTensor([tokens, inF], 'float16', tokens);
    const out = poison(zeros([tokens, outF], { dtype: 'float16' })).to('cuda');
    nm.linear(x.to('cuda'), s, null, { out });
    const r = refProduct(values(x), inF, 1, pruned, 1, inF, tokens, outF, inF);
    expect(mismatch(values(out), r, tolerance('float16', 'float16', false)), `${tokens} tokens`).toBeNull();
    out.dispose();
  };
  const knob = <T>(value: string, fn: () => T): T => withEnv('NMSPARSE_TEST_PLAN_CACHE', value, fn);

  it('a winner that fails its check is replaced by the default algorithm, which passes and runs', () => {
    clearPlans();
    expect(sparseInfo(theWeight().s).cusparselt).toBe(true);
    knob('reject-winner', () => withDispatch('sparse', () => linearChecked(16)));
    const plans = planInfo();
    expect(plans.length).toBe(1);
    expect(plans[0].path).toBe('sparse');
    expect(plans[0].verified).toBe(true);
    expect(plans[0].reason).toMatch(/gave a wrong result: rejected by NMSPARSE_TEST_PLAN_CACHE/);
    withDispatch('sparse', () => linearChecked(16));  // the entry made under the knob serves the next call
    expect(planInfo().length).toBe(1);
  });

  it('a key whose every check fails runs dense (auto) or is a typed error (forced sparse)', () => {
    clearPlans();
    knob('reject-all', () => withDispatch('auto', () => linearChecked(16)));
    const [p] = planInfo();
    expect(p.path).toBe('dense');
    expect(p.verified).toBe(false);
    expect(p.reason).toMatch(/gave a wrong result: .*failed the reference check: rejected by NMSPARSE_TEST_PLAN_CACHE/);
    clearPlans();
    expect(() => knob('reject-all', () => withDispatch('sparse', () => linearChecked(16)))).toThrow(
      expect.objectContaining({ code: 'E_CUSPARSELT', message: expect.stringMatching(/NMSPARSE_CUDA_DISPATCH=sparse, but .*reference check/) }));
    expect(planInfo().length).toBe(0);
  });

  it('a new key beyond the capacity empties the cache first (eviction), and evicted keys are made again', () => {
    clearPlans();
    knob('capacity=2', () => {
      linearChecked(8);   // tokens pad to n = 8, 16, 24: three keys
      linearChecked(16);
      expect(planInfo().length).toBe(2);
      linearChecked(24);
      const keys = planInfo().map((p) => p.key);
      expect(keys.length).toBe(1);
      expect(keys[0]).toMatch(/ n=24\b/);
      linearChecked(8);
      expect(planInfo().length).toBe(2);
    });
  });

  it('a value it does not know is a typed error', () => {
    clearPlans();
    expect(() => knob('reject-some', () => linearChecked(8))).toThrow(
      expect.objectContaining({ code: 'E_VALUE', message: expect.stringMatching(/NMSPARSE_TEST_PLAN_CACHE/) }));
  });
});

describe.skipIf(!gpuUsable)('dense matmul / linear on cuda (cuBLASLt)', () => {
  for (const dtype of ['float32', 'float16', 'bfloat16', 'int8'] as DType[])
    it(`${dtype}, every transpose`, () => {
      for (const [m, n, k] of [[64, 48, 32], [33, 17, 40], [128, 256, 512]]) {
        if (dtype === 'int8' && (m % 4 || n % 4 || k % 4)) continue;
        for (const transA of [false, true])
          for (const transB of [false, true]) {
            const a = randomTensor(transA ? [k, m] : [m, k], dtype, m + k), b = randomTensor(transB ? [n, k] : [k, n], dtype, n + k);
            const c = matmul(a.to('cuda'), b.to('cuda'), { transA, transB });
            const outDtype = dtype === 'int8' ? 'float32' : dtype;
            expect(c.shape).toEqual([m, n]);
            const r = refProduct(values(a), transA ? 1 : k, transA ? m : 1, values(b), transB ? 1 : n, transB ? k : 1, m, n, k, null, false, undefined);
            expect(mismatch(values(c), r, tolerance(dtype, outDtype, false)), `${dtype} ${m}x${n}x${k} ${transA}/${transB}`).toBeNull();
          }
      }
    });

  it('linear with bias and activations', () => {
    for (const dtype of ['float32', 'float16', 'bfloat16'] as DType[])
      for (const act of [undefined, 'relu', 'gelu'] as Array<Activation | undefined>) {
        const { x, w, bias } = operands(24, 64, 40, dtype, 9);
        const y = linear(x.to('cuda'), w.to('cuda'), bias.to('cuda'), { activation: act });
        const r = refProduct(values(x), 64, 1, values(w), 1, 64, 24, 40, 64, values(bias), false, act);
        expect(mismatch(values(y), r, tolerance(dtype, dtype, false)), `${dtype} ${act}`).toBeNull();
      }
  });
});
