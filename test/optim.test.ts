// Optimizers against float64 re-implementations of torch.optim.SGD / AdamW written here, over several steps;
// schedules at given steps; clipping; argument errors.
import { describe, expect, it } from 'vitest';
import { Tensor } from '../lib/index.js';
import { NmSparseError } from '../lib/errors.js';
import { Parameter } from '../lib/nn/module.js';
import { AdamW, SGD, constant, stepDecay, warmupCosine } from '../lib/optim/index.js';
import { Optimizer, applyGradTerms, scaleGrads } from '../lib/optim/optimizer.js';
import { poison, prng } from './helpers.js';

const vals = (n: number, seed: number) => {
  const r = prng(seed);
  return Array.from({ length: n }, () => 2 * r() - 1);
};
const param = (v: number[], decay = true) => new Parameter(new Tensor([v.length], 'float32', Float32Array.from(v)), decay);
const arr = (t: Tensor) => Array.from(t.storage() as Float32Array);

function expectNear(got: number[], want: number[], tol = 2e-6): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => {
    if (!(Math.abs(g - want[i]) <= tol * (1 + Math.abs(want[i])))) expect.fail(`[${i}]: ${g} vs ${want[i]}`);
  });
}

describe('SGD', () => {
  const cases = [
    { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false },
    { momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false },
    { momentum: 0.9, dampening: 0, weightDecay: 5e-4, nesterov: true },
    { momentum: 0.5, dampening: 0.3, weightDecay: 1e-2, nesterov: false },
  ];
  for (const c of cases) {
    it(`matches torch.optim.SGD semantics over 5 steps: ${JSON.stringify(c)}`, () => {
      const n = 37;
      const p = param(vals(n, 1));
      const ref = Float64Array.from(arr(p.value));
      const buf = new Float64Array(n);
      const opt = new SGD([p], { lr: 0.1, ...c });
      for (let t = 0; t < 5; t++) {
        const g = vals(n, 10 + t);
        (p.grad.storage() as Float32Array).set(g);
        opt.lr = 0.1 / (t + 1);
        opt.step();
        for (let i = 0; i < n; i++) {
          let d = Math.fround(g[i]) + c.weightDecay * ref[i];
          if (c.momentum) {
            buf[i] = t === 0 ? d : c.momentum * buf[i] + (1 - c.dampening) * d;
            d = c.nesterov ? d + c.momentum * buf[i] : buf[i];
          }
          ref[i] -= opt.lr * d;
        }
      }
      expectNear(arr(p.value), Array.from(ref));
    });
  }

  it('applies weight decay only to parameters marked for it', () => {
    const w = param([1, 1]), b = param([1, 1], false);
    const opt = new SGD([w, b], { lr: 0.5, weightDecay: 0.1 });
    opt.step(); // zero gradients: only decay moves w
    expect(arr(w.value)).toEqual([Math.fround(1 - 0.5 * 0.1), Math.fround(1 - 0.5 * 0.1)]);
    expect(arr(b.value)).toEqual([1, 1]);
  });

  it('rejects Nesterov without momentum, and bad learning rates, naming the option', () => {
    expect(() => new SGD([param([1])], { lr: 0.1, nesterov: true })).toThrowError(/nesterov/);
    expect(() => new SGD([param([1])], { lr: -1 })).toThrowError(/lr: got -1/);
    expect(() => new SGD([], { lr: 1 })).toThrowError(NmSparseError);
    const opt = new SGD([param([1])], { lr: 1 });
    opt.lr = NaN;
    expect(() => opt.step()).toThrowError(/optimizer.lr: got NaN/);
  });
});

describe('AdamW', () => {
  it('matches torch.optim.AdamW semantics over 6 steps (decoupled decay, bias corrections)', () => {
    const n = 29, [b1, b2, eps, wd, lr] = [0.9, 0.999, 1e-8, 0.05, 1e-2];
    const p = param(vals(n, 3));
    const ref = Float64Array.from(arr(p.value));
    const m = new Float64Array(n), v = new Float64Array(n);
    const opt = new AdamW([p], { lr, betas: [b1, b2], eps, weightDecay: wd });
    for (let t = 1; t <= 6; t++) {
      const g = vals(n, 20 + t).map((x) => x * t);
      (p.grad.storage() as Float32Array).set(g);
      opt.step();
      for (let i = 0; i < n; i++) {
        const gi = Math.fround(g[i]);
        ref[i] *= 1 - lr * wd;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        ref[i] -= (lr / (1 - b1 ** t)) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(1 - b2 ** t) + eps));
      }
    }
    expectNear(arr(p.value), Array.from(ref), 1e-5);
  });
});

describe('the SR-STE term fused into the step (Parameter.term)', () => {
  // λ·(1 − m)⊙p read by the step on the fly. n spans several blocks of the thread pool; λ is large enough that a
  // step that missed the term, or added it on the kept weights, fails the float64 reference by far.
  const n = 40_000, lambda = 0.03;
  const mask = (seed: number) => {
    const r = prng(seed);
    return new Tensor([n], 'uint8', Uint8Array.from({ length: n }, () => (r() < 0.5 ? 1 : 0)));
  };
  type Make = (ps: Parameter[]) => Optimizer;
  const sgdCases = [
    { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false },
    { momentum: 0, dampening: 0, weightDecay: 1e-2, nesterov: false },
    { momentum: 0.9, dampening: 0, weightDecay: 5e-4, nesterov: true },
    { momentum: 0.5, dampening: 0.3, weightDecay: 1e-2, nesterov: false },
  ];
  const optimizers: [string, Make, (ref: Float64Array, g: number[], m: Uint8Array, t: number, lr: number) => void][] = [
    ...sgdCases.map((c): [string, Make, (ref: Float64Array, g: number[], m: Uint8Array, t: number, lr: number) => void] => {
      const buf = new Float64Array(n);
      return [`SGD ${JSON.stringify(c)}`, (ps) => new SGD(ps, { lr: 0.1, ...c }), (ref, g, m, t, lr) => {
        for (let i = 0; i < n; i++) {
          let d = Math.fround(g[i]) + (m[i] ? 0 : lambda * ref[i]) + c.weightDecay * ref[i];
          if (c.momentum) {
            buf[i] = t === 0 ? d : c.momentum * buf[i] + (1 - c.dampening) * d;
            d = c.nesterov ? d + c.momentum * buf[i] : buf[i];
          }
          ref[i] -= lr * d;
        }
      }];
    }),
    (() => {
      const m1 = new Float64Array(n), v1 = new Float64Array(n), [b1, b2, eps, wd] = [0.9, 0.999, 1e-8, 1e-2];
      return ['AdamW', (ps: Parameter[]) => new AdamW(ps, { lr: 0.1, weightDecay: wd }), (ref: Float64Array, g: number[], m: Uint8Array, t: number, lr: number) => {
        for (let i = 0; i < n; i++) {
          const gi = Math.fround(g[i]) + (m[i] ? 0 : lambda * ref[i]);
          m1[i] = b1 * m1[i] + (1 - b1) * gi;
          v1[i] = b2 * v1[i] + (1 - b2) * gi * gi;
          ref[i] = ref[i] * (1 - lr * wd) - (lr / (1 - b1 ** (t + 1))) * m1[i] / (Math.sqrt(v1[i]) / Math.sqrt(1 - b2 ** (t + 1)) + eps);
        }
      }] as [string, Make, (ref: Float64Array, g: number[], m: Uint8Array, t: number, lr: number) => void];
    })(),
  ];
  for (const [name, make, refStep] of optimizers) {
    it(`${name}: g + λ(1 − m)⊙p against float64 over 4 steps, the same bits as the separate pass`, () => {
      const fused = param(vals(n, 3)), apart = param(vals(n, 3));
      const ref = Float64Array.from(arr(fused.value));
      const [of, oa] = [make([fused]), make([apart])];
      for (let t = 0; t < 4; t++) {
        const g = vals(n, 20 + t), m = mask(40 + t);
        for (const p of [fused, apart]) (poison(p.grad).storage() as Float32Array).set(g);
        fused.term = { mask: m, lambda };
        apart.term = { mask: m, lambda };
        applyGradTerms([apart]); // the unfused path: g += λ(1 − m)⊙p (maskedAdd), then the step
        expect(apart.term).toBeNull();
        for (const o of [of, oa]) o.lr = 0.1 / (t + 1);
        of.step();
        oa.step();
        expect(fused.term).toBeNull(); // consumed by the step
        refStep(ref, g, m.storage() as Uint8Array, t, of.lr);
      }
      expectNear(arr(fused.value), Array.from(ref), 1e-5);
      expect(arr(fused.value)).toEqual(arr(apart.value));
    });
  }

  it('scaling the gradient scales a pending term with it at a power of two, and adds it first otherwise', () => {
    const m = mask(7);
    for (const s of [2 ** -16, 0.37]) {
      const a = param(vals(n, 5)), b = param(vals(n, 5));
      for (const p of [a, b]) {
        (p.grad.storage() as Float32Array).set(vals(n, 6));
        p.term = { mask: m, lambda };
      }
      scaleGrads([a], s);
      expect(a.term === null).toBe(s === 0.37);
      applyGradTerms([a, b]);
      scaleGrads([b], s);
      // s·(g + t) either way: exactly at a power of two; at 0.37 a pre-added term is exactly the same pass.
      expect(arr(a.grad)).toEqual(arr(b.grad));
    }
  });
});

describe('gradient clipping', () => {
  it('scales all gradients to the max norm and returns the norm before clipping', () => {
    const a = param([0, 0]), b = param([0]);
    (a.grad.storage() as Float32Array).set([3, 0]);
    (b.grad.storage() as Float32Array).set([4]);
    const opt = new SGD([a, b], { lr: 1 });
    expect(opt.clipGradNorm(10)).toBeCloseTo(5, 6);
    expect(arr(a.grad)).toEqual([3, 0]);
    expect(opt.clipGradNorm(1)).toBeCloseTo(5, 6);
    expectNear([...arr(a.grad), ...arr(b.grad)], [0.6, 0, 0.8], 1e-5);
  });
});

it('clipGradNorm takes the norm of the whole gradient, pending term included', () => {
  const p = param([3, 4]), q = param([3, 4]);
  for (const x of [p, q]) (x.grad.storage() as Float32Array).set([0, 0]);
  p.term = { mask: new Tensor([2], 'uint8', Uint8Array.of(0, 0)), lambda: 1 }; // the term is (3, 4): norm 5
  expect(new SGD([p], { lr: 1 }).clipGradNorm(1)).toBeCloseTo(5, 5);
  expect(p.term).toBeNull();
  expect(arr(p.grad)).toEqual([Math.fround(3 * (1 / (5 + 1e-6))), Math.fround(4 * (1 / (5 + 1e-6)))].map((v) => expect.closeTo(v, 6)));
  expect(new SGD([q], { lr: 1 }).clipGradNorm(1)).toBe(0);
});

it("an optimizer that does not read the pending term (a user's subclass) gets it added to grad before its update", () => {
  // p = (3, −4, 5), g = (1, 1, 1), the mask keeps only the first: the whole gradient is g + 0.5·(0, −4, 5) = (1, −1, 3.5).
  const seen: number[][] = [];
  class PlainSgd extends Optimizer {
    protected update(q: Parameter): void {
      seen.push(arr(q.grad));
      const v = q.value.storage() as Float32Array, g = q.grad.storage() as Float32Array;
      for (let i = 0; i < v.length; i++) v[i] -= this.lr * g[i];
    }
  }
  const p = param([3, -4, 5]);
  (p.grad.storage() as Float32Array).set([1, 1, 1]);
  p.term = { mask: new Tensor([3], 'uint8', Uint8Array.of(1, 0, 0)), lambda: 0.5 };
  new PlainSgd([p], 0.1).step();
  expect(seen).toEqual([[1, -1, 3.5]]);
  expect(p.term).toBeNull();
  expect(arr(p.value)).toEqual([3 - 0.1, -4 + 0.1, 5 - 0.35].map((v) => expect.closeTo(v, 6)));
});

describe('schedules', () => {
  it('warm-up + cosine: linear ramp, peak, half-way, minimum at the last step', () => {
    const s = warmupCosine({ lr: 0.1, warmup: 10, minLr: 0.001 });
    expect(s(0, 110)).toBeCloseTo(0.01, 12);
    expect(s(9, 110)).toBeCloseTo(0.1, 12);
    expect(s(10, 110)).toBeCloseTo(0.1, 12);
    expect(s(10 + 49.5, 110)).toBeCloseTo(0.001 + 0.5 * 0.099, 12);
    expect(s(109, 110)).toBeCloseTo(0.001, 12);
    // A fractional warm-up is a share of the run.
    expect(warmupCosine({ lr: 1, warmup: 0.1 })(4, 100)).toBeCloseTo(0.5, 12);
  });

  it('step decay and constant', () => {
    const s = stepDecay({ lr: 1, stepSize: 30, gamma: 0.5 });
    expect([s(0, 100), s(29, 100), s(30, 100), s(65, 100)]).toEqual([1, 1, 0.5, 0.25]);
    expect(stepDecay({ lr: 1, stepSize: 0.5 })(50, 100)).toBeCloseTo(0.1, 12);
    expect(constant({ lr: 0.3 })(99, 100)).toBe(0.3);
    expect(() => stepDecay({ lr: 1, stepSize: 0 })).toThrowError(/stepSize/);
  });
});
