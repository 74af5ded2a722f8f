// Finite-difference gradient checks for every module: each test writes an independent float64 reference forward
// (direct loops: no im2col, no GEMM), takes central differences of L = Σ f(θ)·r in float64, and compares them
// with the float32 analytic gradients of the module's backward(r). Forward outputs are compared too.
import { describe, expect, it } from 'vitest';
import { Tensor, nm, tensor } from '../lib/index.js';
import {
  Conv2d, Dropout, Flatten, GELU, LayerNorm, Linear, MaxPool2d, ReLU, Reshape, Sequential, SparseConv2d, SparseLinear,
} from '../lib/nn/layers.js';
import { SoftmaxCrossEntropy } from '../lib/nn/loss.js';
import { col2im, dropout, im2col, maskedAdd, maskedScale, nmMaskScale, nmTrainPass } from '../lib/nn/elementwise.js';
import { native } from '../lib/native.js';
import { STE, MaskDecay } from '../lib/recipes/index.js';
import { NmSparseError } from '../lib/errors.js';
import { ISAS, erf, expectPortableForm, poison, prng, refMask } from './helpers.js';
import { arr, dot, expectClose, expectGrad, f32, f64, refKeep, refLayerNorm, refLinear, run, values } from './nn-helpers.js';

// ------------------------------------------------------------------ float64 references

/** Direct convolution, NHWC input, weight [co, kh, kw, ci]. */
function refConv(x: Float64Array, w: Float64Array, b: Float64Array | null, [n, h, wd, ci]: number[], co: number, k: number, stride: number, pad: number) {
  const oh = Math.floor((h + 2 * pad - k) / stride) + 1, ow = Math.floor((wd + 2 * pad - k) / stride) + 1;
  const y = new Float64Array(n * oh * ow * co);
  for (let b0 = 0; b0 < n; b0++)
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++)
        for (let o = 0; o < co; o++) {
          let s = b ? b[o] : 0;
          for (let ky = 0; ky < k; ky++)
            for (let kx = 0; kx < k; kx++) {
              const iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
              if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
              for (let c = 0; c < ci; c++) s += x[((b0 * h + iy) * wd + ix) * ci + c] * w[((o * k + ky) * k + kx) * ci + c];
            }
          y[((b0 * oh + oy) * ow + ox) * co + o] = s;
        }
  return y;
}

function refMaxPool(x: Float64Array, [n, h, wd, c]: number[], k: number, stride: number): Float64Array {
  const oh = Math.floor((h - k) / stride) + 1, ow = Math.floor((wd - k) / stride) + 1;
  const y = new Float64Array(n * oh * ow * c).fill(-Infinity);
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++)
        for (let ch = 0; ch < c; ch++)
          for (let ky = 0; ky < k; ky++)
            for (let kx = 0; kx < k; kx++) {
              const v = x[((b * h + oy * stride + ky) * wd + ox * stride + kx) * c + ch];
              const o = ((b * oh + oy) * ow + ox) * c + ch;
              if (v > y[o]) y[o] = v;
            }
  return y;
}

// ------------------------------------------------------------------ tests

describe('Linear', () => {
  it('forward and gradients (x, W, b) match float64 central differences', () => {
    const [rows, inF, outF] = [5, 12, 7];
    const m = new Linear(inF, outF, { seed: 3 });
    const x = values(rows * inF, 1);
    const { y, dx, r } = run(m, x, [rows, inF], 2);
    const w = f64(m.weight.value), b = f64(m.bias!.value);
    const ref = () => dot(refLinear(x, w, b, rows, inF, outF), r);
    expectClose('y', y, refLinear(x, w, b, rows, inF, outF));
    expectGrad('dx', x, dx!, ref);
    expectGrad('dW', w, arr(m.weight.grad), ref);
    expectGrad('db', b, arr(m.bias!.grad), ref);
  });

  it('takes inputs of rank 3 and returns dx of the input shape; skips dx when not required', () => {
    const m = new Linear(8, 4, { seed: 1, bias: false });
    const x = values(2 * 3 * 8, 4);
    const out = run(m, x, [2, 3, 8], 5);
    expect(out.yShape).toEqual([2, 3, 4]);
    const w = f64(m.weight.value);
    expectGrad('dx', x, out.dx!, () => dot(refLinear(x, w, null, 6, 8, 4), out.r));
    m.requiresInputGrad = false;
    m.forward(f32(x, [2, 3, 8]));
    expect(m.backward(f32(out.r, [2, 3, 4]))).toBeNull();
  });

  it('rejects inputs of the wrong width with E_SHAPE naming x', () => {
    const m = new Linear(8, 4, { seed: 1 });
    expect(() => m.forward(f32(values(10, 1), [2, 5]))).toThrowError(/x: got float32 tensor \[2, 5\]/);
  });
});

describe('SparseLinear', () => {
  it('forward uses W ⊙ m; dx and the STE weight gradient match differences through the masked product', () => {
    const [rows, inF, outF] = [4, 16, 6];
    const m = new SparseLinear(inF, outF, '2:4', new STE(), { seed: 7 });
    const x = values(rows * inF, 8);
    const w = f64(m.weight.value), b = f64(m.bias!.value);
    const mask = Array.from(nm.mask(m.weight.value, '2:4').storage());
    const { y, dx, r } = run(m, x, [rows, inF], 9);
    const weff = () => w.map((v, i) => v * mask[i]);
    const ref = () => dot(refLinear(x, weff(), b, rows, inF, outF), r);
    expectClose('y', y, refLinear(x, weff(), b, rows, inF, outF));
    expectGrad('dx', x, dx!, ref);
    // STE: the dense W receives ∂L/∂W̃ at every position, pruned ones included.
    const wt = w.map((v, i) => v * mask[i]);
    expectGrad('dW̃ (STE)', wt, arr(m.weight.grad), () => dot(refLinear(x, wt, b, rows, inF, outF), r));
    expect(arr(m.weight.grad).some((g, i) => !mask[i] && g !== 0)).toBe(true);
  });

  it('mask decay with autodiff: the weight gradient is the true derivative of W ⊙ (m + (1 − m)α)', () => {
    const [rows, inF, outF] = [3, 8, 4];
    const recipe = new MaskDecay({ alpha: 'linear', gradient: 'autodiff', coefficient: 0.25 });
    recipe.plan(100);
    recipe.setStep(2); // α = 1 − 0.25·2 = 0.5
    const m = new SparseLinear(inF, outF, '1:4', recipe, { seed: 11 });
    const x = values(rows * inF, 12);
    const w = f64(m.weight.value), b = f64(m.bias!.value);
    const mask = Array.from(nm.mask(m.weight.value, '1:4').storage());
    const { r } = run(m, x, [rows, inF], 13);
    expect(m.sparse!.alpha).toBe(0.5);
    const ref = () => dot(refLinear(x, w.map((v, i) => v * (mask[i] ? 1 : 0.5)), b, rows, inF, outF), r);
    expectGrad('dW', w, arr(m.weight.grad), ref);
  });
});

describe('Conv2d', () => {
  for (const [stride, pad] of [[1, 1], [2, 1], [1, 0]] as const) {
    it(`stride ${stride}, padding ${pad}: forward and gradients (x, W, b) match a direct float64 convolution`, () => {
      const shape = [2, 6, 5, 4], co = 3, k = 3;
      const m = new Conv2d(4, co, k, { stride, padding: pad, seed: 21 });
      expect(m.weight.shape).toEqual([co, k, k, 4]);
      expect(m.weight.layout).toBe('OHWI');
      const x = values(shape.reduce((a, b) => a * b), 22);
      const { y, dx, r } = run(m, x, shape, 23);
      const w = f64(m.weight.value), b = f64(m.bias!.value);
      const ref = () => dot(refConv(x, w, b, shape, co, k, stride, pad), r);
      expectClose('y', y, refConv(x, w, b, shape, co, k, stride, pad));
      expectGrad('dx', x, dx!, ref);
      expectGrad('dW', w, arr(m.weight.grad), ref);
      expectGrad('db', b, arr(m.bias!.grad), ref);
    });
  }

  it('sparse: N:M groups run along input channels at fixed (out, kh, kw)', () => {
    const m = new SparseConv2d(8, 4, 3, '2:4', new STE(), { padding: 1, seed: 31 });
    const shape = [1, 4, 4, 8];
    const x = values(128, 32);
    const { y, dx, r } = run(m, x, shape, 33);
    const w = f64(m.weight.value), b = f64(m.bias!.value);
    // Reference mask: for every (o, ky, kx), the 2 largest |w| of each run of 4 input channels.
    const mask = new Float64Array(w.length);
    for (let g = 0; g < w.length; g += 4) {
      const idx = [0, 1, 2, 3].sort((a, c) => Math.abs(w[g + c]) - Math.abs(w[g + a]) || a - c);
      mask[g + idx[0]] = mask[g + idx[1]] = 1;
    }
    const weff = w.map((v, i) => v * mask[i]);
    expectClose('y', y, refConv(x, weff, b, shape, 4, 3, 1, 1));
    expectGrad('dx', x, dx!, () => dot(refConv(x, weff, b, shape, 4, 3, 1, 1), r));
    expect(nm.check(m.sparse!.deployWeight(), '2:4').ok).toBe(true);
  });

  it('a sparse Conv2d whose input channels do not divide M is an E_SHAPE error naming inChannels', () => {
    expect(() => new SparseConv2d(2, 4, 2, '2:4', new STE())).toThrowError(/inChannels: got 2, expected a multiple of m = 4/);
  });

  it('im2col and col2im are adjoint: <im2col(x), c> = <x, col2im(c)>', () => {
    const w = { kernel: [3, 2] as [number, number], stride: [2, 1] as [number, number], padding: [1, 1] as [number, number] };
    const x = f32(values(2 * 5 * 4 * 3, 41), [2, 5, 4, 3]);
    const cols = im2col(x, w);
    const c = f32(values(cols.size, 42), [...cols.shape]);
    const back = col2im(c, x.shape, w);
    const lhs = dot(Float64Array.from(arr(cols)), Float64Array.from(arr(c)));
    const rhs = dot(Float64Array.from(arr(x)), Float64Array.from(arr(back)));
    expect(Math.abs(lhs - rhs)).toBeLessThan(1e-4 * (1 + Math.abs(lhs)));
  });
});

describe('MaxPool2d, Flatten, Reshape', () => {
  it('max-pool 2x2 forward and dx match float64 differences', () => {
    const shape = [2, 4, 6, 3];
    const x = values(144, 51);
    const m = new MaxPool2d(2);
    const { y, dx, r } = run(m, x, shape, 52);
    expectClose('y', y, refMaxPool(x, shape, 2, 2));
    expectGrad('dx', x, dx!, () => dot(refMaxPool(x, shape, 2, 2), r));
  });

  it('overlapping windows (3x3, stride 2) route every gradient to the winner', () => {
    const shape = [1, 7, 7, 2];
    const x = values(98, 53);
    const { dx, r } = run(new MaxPool2d(3, { stride: 2 }), x, shape, 54);
    expectGrad('dx', x, dx!, () => dot(refMaxPool(x, shape, 3, 2), r));
  });

  it('NaN wins its window (first NaN), ties go to the first position, padding never wins over negative values', () => {
    const m = new MaxPool2d(3, { stride: 1, padding: 1 });
    // One image 2x2, one channel, all negative: every (padded) 3x3 window covers the whole image.
    const y = m.forward(f32([-4, -1, -1, -3], [1, 2, 2, 1]));
    expect(Array.from(arr(y))).toEqual([-1, -1, -1, -1]);
    const dx = m.backward(f32([1, 2, 3, 4], [1, 2, 2, 1]));
    expect(Array.from(arr(dx))).toEqual([0, 10, 0, 0]); // the first -1 (index 1) takes every gradient
    const p = new MaxPool2d(2);
    const z = p.forward(f32([1, NaN, 5, NaN, 0, 0, 0, 0], [1, 2, 2, 2]));
    expect(Array.from(arr(z)).map(String)).toEqual(['5', 'NaN']);
    expect(Array.from(arr(p.backward(f32([7, 8], [1, 1, 1, 2]))))).toEqual([0, 8, 7, 0, 0, 0, 0, 0]);
  });

  it('Flatten and Reshape pass values and gradients through unchanged', () => {
    const x = values(24, 55);
    const s = new Sequential([new Reshape([2, 3, 2]), new Flatten()]);
    const { y, dx, r, yShape } = run(s, x, [2, 12], 56);
    expect(yShape).toEqual([2, 12]);
    expectClose('y', y, x);
    expectClose('dx', dx!, r);
  });
});

describe('activations, LayerNorm, Dropout', () => {
  it('ReLU', () => {
    const x = values(40, 61).map((v) => (Math.abs(v) < 0.01 ? 0.5 : v));
    const { y, dx, r } = run(new ReLU(), x, [4, 10], 62);
    const f = () => dot(x.map((v) => Math.max(v, 0)), r);
    expectClose('y', y, x.map((v) => Math.max(v, 0)));
    expectGrad('dx', x, dx!, f);
  });

  it('GELU (erf form)', () => {
    const x = values(40, 63, 2.9);
    const { y, dx, r } = run(new GELU(), x, [4, 10], 64);
    const g = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));
    expectClose('y', y, x.map(g));
    expectGrad('dx', x, dx!, () => dot(x.map(g), r));
  });

  it('LayerNorm: forward and gradients (x, γ, β) match float64 differences', () => {
    const [rows, cols] = [3, 10];
    const m = new LayerNorm(cols);
    // Non-trivial affine parameters.
    arr(m.gamma!.value).set(values(cols, 65, 2).map((v) => v + 0.5));
    arr(m.beta!.value).set(values(cols, 66));
    const x = values(rows * cols, 67, 3);
    const g = f64(m.gamma!.value), b = f64(m.beta!.value);
    const { y, dx, r } = run(m, x, [rows, cols], 68);
    const ref = () => dot(refLayerNorm(x, g, b, rows, cols, 1e-5), r);
    expectClose('y', y, refLayerNorm(x, g, b, rows, cols, 1e-5), 1e-4);
    expectGrad('dx', x, dx!, ref);
    expectGrad('dγ', g, arr(m.gamma!.grad), ref);
    expectGrad('dβ', b, arr(m.beta!.grad), ref);
  });

  it('Dropout: the mask is the documented counter-based generator; dx = the same mask on dy; eval is identity', () => {
    const p = 0.3, seed = 77;
    const m = new Dropout(p, { seed });
    const x = values(500, 69);
    const { y, dx, r } = run(m, x, [5, 100], 70);
    const keep = Array.from({ length: 500 }, (_, i) => refKeep(seed, i, p));
    expectClose('y', y, x.map((v, i) => (keep[i] ? v / (1 - p) : 0)));
    expectGrad('dx', x, dx!, () => dot(x.map((v, i) => (keep[i] ? v / (1 - p) : 0)), r));
    const kept = keep.filter(Boolean).length;
    expect(kept).toBeGreaterThan(300);
    expect(kept).toBeLessThan(400);
    // The next call continues the counter: a different mask.
    const y2 = arr(m.forward(f32(x, [5, 100])));
    expect(Array.from(y2).every((v, i) => (refKeep(seed, 500 + i, p) ? Math.abs(v - x[i] / (1 - p)) < 1e-6 : v === 0))).toBe(true);
    m.eval();
    expectClose('eval', arr(m.forward(f32(x, [5, 100]))), x);
    expect(() => dropout(f32(x, [500]), 1, 0, 0)).toThrowError(NmSparseError);
  });
});

describe('SoftmaxCrossEntropy', () => {
  for (const eps of [0, 0.1]) {
    it(`mean loss, accuracy and d logits (label smoothing ${eps})`, () => {
      const [rows, cols] = [6, 5];
      const z = values(rows * cols, 71, 3);
      const labels = Int32Array.from({ length: rows }, (_, i) => (i * 3) % cols);
      const ref = () => {
        let s = 0;
        for (let r = 0; r < rows; r++) {
          const row = z.subarray(r * cols, (r + 1) * cols);
          const mx = Math.max(...row);
          const lse = mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
          for (let c = 0; c < cols; c++) s -= ((c === labels[r] ? 1 - eps : 0) + eps / cols) * (row[c] - lse);
        }
        return s / rows;
      };
      const loss = new SoftmaxCrossEntropy({ labelSmoothing: eps });
      const out = loss.forward(f32(z, [rows, cols]), labels);
      expect(out.loss).toBeCloseTo(ref(), 5);
      let correct = 0;
      for (let r = 0; r < rows; r++) {
        const row = Array.from(z.subarray(r * cols, (r + 1) * cols));
        correct += row.indexOf(Math.max(...row)) === labels[r] ? 1 : 0;
      }
      expect(out.correct).toBe(correct);
      expectGrad('dz', z, arr(loss.backward()), ref);
    });
  }

  it('rejects labels out of range with E_VALUE naming the label', () => {
    const loss = new SoftmaxCrossEntropy();
    expect(() => loss.forward(f32([1, 2, 3, 4], [2, 2]), Int32Array.from([0, 2]))).toThrowError(/labels\[1\]: got 2/);
  });
});

describe('Sequential networks end to end', () => {
  it('MLP: gradients of every parameter match float64 differences of the whole network', () => {
    const model = new Sequential([
      ['fc1', new Linear(8, 6, { seed: 81 })], ['act', new GELU()], ['ln', new LayerNorm(6)],
      ['fc2', new Linear(6, 4, { seed: 82 })],
    ]);
    const x = values(3 * 8, 83);
    const labels = Int32Array.from([0, 3, 1]);
    const loss = new SoftmaxCrossEntropy();
    loss.forward(model.forward(f32(x, [3, 8])), labels);
    model.backward(loss.backward());
    const P = Object.fromEntries(model.namedParameters().map(([n, p]) => [n, f64(p.value)]));
    const ref = () => {
      let h: Float64Array = refLinear(x, P['fc1.weight'], P['fc1.bias'], 3, 8, 6).map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
      h = refLayerNorm(h, P['ln.gamma'], P['ln.beta'], 3, 6, 1e-5);
      const z = refLinear(h, P['fc2.weight'], P['fc2.bias'], 3, 6, 4);
      let s = 0;
      for (let r = 0; r < 3; r++) {
        const row = z.subarray(r * 4, r * 4 + 4);
        s += Math.log(row.reduce((a, v) => a + Math.exp(v), 0)) - row[labels[r]];
      }
      return s / 3;
    };
    for (const [n, p] of model.namedParameters()) expectGrad(n, P[n], arr(p.grad), ref);
  });

  it('CNN: conv → ReLU → pool → flatten → linear, gradients of every parameter', () => {
    const model = new Sequential([
      ['image', new Reshape([6, 6, 2])], ['conv', new Conv2d(2, 4, 3, { padding: 1, seed: 91 })], ['relu', new ReLU()],
      ['pool', new MaxPool2d(2)], ['flat', new Flatten()], ['fc', new Linear(36, 3, { seed: 92 })],
    ]);
    const x = values(2 * 72, 93);
    const labels = Int32Array.from([2, 0]);
    const loss = new SoftmaxCrossEntropy();
    loss.forward(model.forward(f32(x, [2, 72])), labels);
    model.requiresInputGrad = false;
    expect(model.backward(loss.backward())).toBeNull();
    const P = Object.fromEntries(model.namedParameters().map(([n, p]) => [n, f64(p.value)]));
    const ref = () => {
      const c = refConv(x, P['conv.weight'], P['conv.bias'], [2, 6, 6, 2], 4, 3, 1, 1).map((v) => Math.max(v, 0));
      const z = refLinear(refMaxPool(c, [2, 6, 6, 4], 2, 2), P['fc.weight'], P['fc.bias'], 2, 36, 3);
      let s = 0;
      for (let r = 0; r < 2; r++) {
        const row = z.subarray(r * 3, r * 3 + 3);
        s += Math.log(row.reduce((a, v) => a + Math.exp(v), 0)) - row[labels[r]];
      }
      return s / 2;
    };
    for (const [n, p] of model.namedParameters()) expectGrad(n, P[n], arr(p.grad), ref, { h: 1e-5 });
  });
});

describe('masked recipe terms', () => {
  it('maskedScale and maskedAdd on a hand-made example', () => {
    const w = f32([1, -2, 3, -4], [4]);
    const m = new Tensor([4], 'uint8', Uint8Array.from([1, 0, 1, 0]));
    expect(Array.from(arr(maskedScale(w, m, 0)))).toEqual([1, 0, 3, 0]);
    expect(Array.from(arr(maskedScale(w, m, 0.5)))).toEqual([1, -1, 3, -2]);
    const g = f32([0.5, 0.5, 0.5, -0], [4]);
    maskedAdd(g, w, m, 0.25);
    expect(Array.from(arr(g))).toEqual([0.5, 0, 0.5, -1]);
    const z = f32([-0, 1], [2]);
    maskedAdd(z, f32([Infinity, 1], [2]), new Tensor([2], 'uint8', Uint8Array.from([0, 0])), 0);
    expect(Object.is(arr(z)[0], -0)).toBe(true); // λ = 0 leaves g bit for bit
  });
});

describe('nmMaskScale (the fused mask refresh)', () => {
  it('gives exactly nm.mask and w ⊙ (m + (1 − m)α) for every M, with ties, ±0, ±inf, NaN and ragged tails', () => {
    const r = prng(123);
    for (const [n, m] of [[1, 4], [2, 4], [3, 4], [1, 8], [2, 8], [4, 8], [7, 8], [1, 16], [3, 16], [8, 16], [5, 32], [16, 32]]) {
      for (const rows of [1, 3, 7]) {
        const cols = m * 3;
        const v = Array.from({ length: rows * cols }, () => {
          const u = r();
          if (u < 0.05) return NaN;
          if (u < 0.08) return u < 0.065 ? Infinity : -Infinity;
          if (u < 0.15) return u < 0.11 ? 0 : -0;
          if (u < 0.35) return [0.5, -0.5, 1, -1][Math.floor(r() * 4)]; // ties
          return 2 * r() - 1;
        });
        const w = f32(v, [rows, cols]);
        const want = nm.mask(w, { n, m }).storage();
        for (const alpha of [0, 0.375]) {
          const { mask, out } = nmMaskScale(w, { n, m }, alpha);
          expect(Array.from(mask.storage()), `${n}:${m} rows ${rows}`).toEqual(Array.from(want));
          const e = arr(out), ws = arr(w);
          for (let i = 0; i < e.length; i++) {
            const expected = want[i] ? ws[i] : alpha === 0 ? 0 : Math.fround(Math.fround(alpha) * ws[i]);
            if (!Object.is(e[i], expected)) expect.fail(`${n}:${m} α=${alpha} [${i}]: ${e[i]} vs ${expected}`);
          }
        }
      }
    }
  });

  it('refuses an output that aliases w', () => {
    const w = f32(values(8, 1), [2, 4]);
    expect(() => nmMaskScale(w, { n: 2, m: 4 }, 0, { out: w })).toThrowError(/options.out/);
  });
});

describe('nmTrainPass (mask, W ⊙ m, compressed form and SAD in one pass)', () => {

  it('equals nm.mask, w ⊙ m, the portable compressed form and the changed-entry count, for every M and ISA', () => {
    const r = prng(321);
    for (const [n, m] of [[2, 4], [1, 4], [3, 4], [1, 8], [2, 8], [4, 8], [3, 16], [8, 16], [5, 32]]) {
      for (const [rows, groups] of [[1, 1], [3, 5], [9, 7], [3, 2 * 64 / m + 1]]) {
        const cols = m * groups;
        const gen = () => {
          const u = r();
          if (u < 0.04) return NaN;
          if (u < 0.06) return u < 0.05 ? Infinity : -Infinity;
          if (u < 0.1) return u < 0.08 ? 0 : -0;
          if (u < 0.3) return [0.5, -0.5, 1, -1][Math.floor(r() * 4)];
          return 2 * r() - 1;
        };
        const w0 = f32(Array.from({ length: rows * cols }, gen), [rows, cols]);
        const w1 = f32(Array.from({ length: rows * cols }, gen), [rows, cols]);
        // NaNs of other payloads and signs: every NaN ranks the same.
        const bits = new Uint32Array(arr(w1).buffer, arr(w1).byteOffset, rows * cols);
        bits.forEach((b, i) => { if (Number.isNaN(arr(w1)[i])) bits[i] = [0x7f800001, 0xffffffff, 0x7fc00000, 0xff800123][i % 4]; });
        // dense: false leaves out unwritten (the products read only the compressed form); the rest is the same.
        for (const isa of ISAS) for (const dense of [true, false]) {
          native.cpuIsa(isa);
          const first = nmTrainPass(w0, { n, m });
          expect(first.sad).toBe(0);
          const prev = Array.from(first.mask.storage());
          poison(first.buffers.out);
          poison(first.buffers.sparse.values);
          first.buffers.sparse.positions.fill(0xa5);
          const { mask, buffers, sad } = nmTrainPass(w1, { n, m }, { mask: first.mask, buffers: first.buffers, dense });
          expect(buffers).toBe(first.buffers);
          const want = refMask(w1.toArray(), cols, n, m);
          const label = `${n}:${m} [${rows}, ${cols}] ${isa} dense ${dense}`;
          expect(Array.from(mask.storage()), label).toEqual(want);
          expect(sad, label).toBe(want.reduce((acc, k, i) => acc + (k !== prev[i] ? 1 : 0), 0));
          const wv = arr(w1), e = arr(buffers.out), vals = arr(buffers.sparse.values), pos = buffers.sparse.positions;
          for (let i = 0; i < e.length; i++) if (!Object.is(e[i], dense ? (want[i] ? wv[i] : 0) : NaN)) expect.fail(`${label} out[${i}]: ${e[i]}`);
          expectPortableForm(label, want, wv, vals, pos, rows, cols, n, m);
          // The same mask given (select: false) on other weights: applied, not changed.
          poison(buffers.out);
          poison(buffers.sparse.values);
          buffers.sparse.positions.fill(0xa5);
          const given = nmTrainPass(w0, { n, m }, { mask, buffers, select: false, dense });
          expect(Array.from(given.mask.storage()), label).toEqual(want);
          const w0v = arr(w0), e0 = arr(given.buffers.out);
          for (let i = 0; i < e0.length; i++) if (!Object.is(e0[i], dense ? (want[i] ? w0v[i] : 0) : NaN)) expect.fail(`${label} given out[${i}]: ${e0[i]}`);
          expectPortableForm(`${label} given`, want, w0v, arr(given.buffers.sparse.values), given.buffers.sparse.positions, rows, cols, n, m);
        }
        native.cpuIsa('auto');
      }
    }
  });

  it('applies the mask it is given without selecting (ASP, refresh intervals)', () => {
    const w = f32(values(32, 5), [2, 16]);
    const first = nmTrainPass(w, { n: 2, m: 4 });
    const held = Array.from(first.mask.storage());
    const w2 = f32(values(32, 6), [2, 16]);
    const r = nmTrainPass(w2, { n: 2, m: 4 }, { mask: first.mask, buffers: first.buffers, select: false });
    expect(r.sad).toBe(0);
    expect(Array.from(r.mask.storage())).toEqual(held);
    expect(Array.from(arr(r.buffers.out))).toEqual(Array.from(arr(w2)).map((v, i) => (held[i] ? v : 0)));
    expect(Array.from(arr(r.buffers.sparse.decompress()))).toEqual(Array.from(arr(r.buffers.out)));
    const w3 = f32(values(32, 7), [2, 16]);
    poison(r.buffers.out);
    nmTrainPass(w3, { n: 2, m: 4 }, { mask: r.mask, buffers: r.buffers, select: false, dense: false });
    expect(Array.from(arr(r.buffers.out)).every(Number.isNaN)).toBe(true);
    expect(Array.from(arr(r.buffers.sparse.decompress()))).toEqual(Array.from(arr(w3)).map((v, i) => (held[i] ? v : 0)));
    expect(() => nmTrainPass(w2, { n: 2, m: 4 }, { select: false })).toThrowError(expect.objectContaining({ code: 'E_VALUE' }));
    // A given mask that keeps more or fewer than n in a group: E_VALUE naming the group; its row is not written.
    for (const group of [[1, 1, 1, 0], [0, 0, 1, 0]]) {
      const bad = first.mask.storage().slice();
      bad.set(group, 16 + 4);  // row 1, columns 4..7
      const row1 = r.buffers.sparse.values.storage().slice(8, 16);
      const kept = group.reduce((a, b) => a + b, 0);
      expect(() => nmTrainPass(w, { n: 2, m: 4 }, { mask: tensor(bad, [2, 16], { dtype: 'uint8' }), buffers: r.buffers, select: false }))
        .toThrowError(expect.objectContaining({ code: 'E_VALUE', message: expect.stringContaining(`keeps ${kept} of the group at row 1, columns 4..7`) }));
      expect(r.buffers.sparse.values.storage().slice(8, 16)).toEqual(row1);
    }
    expect(() => nmTrainPass(f32(values(6, 1), [1, 6]), { n: 2, m: 4 })).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
  });
});
