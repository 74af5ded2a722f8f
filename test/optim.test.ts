// Optimizers against float64 re-implementations of torch.optim.SGD / AdamW written here, over several steps;
// schedules at given steps; clipping; argument errors.
import { describe, expect, it } from 'vitest';
import { Tensor } from '../lib/index.js';
import { NmSparseError } from '../lib/errors.js';
import { Parameter } from '../lib/nn/module.js';
import { AdamW, SGD, constant, stepDecay, warmupCosine } from '../lib/optim/index.js';
import { prng } from './helpers.js';

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
