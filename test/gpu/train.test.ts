// Training ops on 'cuda' against the same public functions on the CPU (lib/nn/elementwise.ts, lib/optim): bit for
// bit where the GPU adds in the CPU's order (bias and LayerNorm parameter gradients, col2im, max pooling, dropout,
// masks, ReLU), to float32 rounding elsewhere (erf/exp, row reductions in float64 trees). Plus a few SGD/AdamW
// steps and gradient clipping.
import { describe, expect, it } from 'vitest';
import { Tensor, randn, tensor, nm } from '../../lib/index.js';
import * as E from '../../lib/nn/elementwise.js';
import { Parameter } from '../../lib/nn/module.js';
import { SGD, AdamW } from '../../lib/optim/index.js';
import { sameBits } from '../helpers.js';
import { gpuUsable } from './gpu-helpers.js';

const cpu = (t: Tensor): Tensor => (t.device === 'cpu' ? t : t.to('cpu'));
const gpu = (t: Tensor): Tensor => t.to('cuda');
const r = (shape: number[], seed: number, std = 1) => randn(shape, { seed, std });

function close(a: Tensor, b: Tensor, rel = 2e-6, abs = 1e-6): string | null {
  const x = cpu(a).storage() as Float32Array, y = cpu(b).storage() as Float32Array;
  if (x.length !== y.length) return `length ${x.length} vs ${y.length}`;
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i]) && Number.isNaN(y[i])) continue;
    if (!(Math.abs(x[i] - y[i]) <= abs + rel * Math.abs(y[i]))) return `element ${i}: ${x[i]} vs ${y[i]}`;
  }
  return null;
}

const same = (a: Tensor, b: Tensor): boolean => sameBits(cpu(a), cpu(b));

describe.skipIf(!gpuUsable)('training ops on cuda match the CPU', () => {
  it('bias add / bias grad (bit for bit)', () => {
    for (const [rows, cols] of [[1, 1], [7, 33], [256, 1024], [4096, 10]]) {
      const y = r([rows, cols], 1), b = r([cols], 2);
      expect(same(E.biasAdd(gpu(y), gpu(b)), E.biasAdd(y.clone(), b))).toBe(true);
      expect(same(E.biasGrad(gpu(y)), E.biasGrad(y))).toBe(true);
    }
  });

  it('relu (bit for bit) and gelu, forward and backward', () => {
    const x = r([33, 65], 3, 3), dy = r([33, 65], 4);
    const yc = E.reluForward(x), yg = E.reluForward(gpu(x));
    expect(same(yg, yc)).toBe(true);
    expect(same(E.reluBackward(gpu(dy), yg), E.reluBackward(dy, yc))).toBe(true);
    expect(close(E.geluForward(gpu(x)), E.geluForward(x))).toBeNull();
    expect(close(E.geluBackward(gpu(dy), gpu(x)), E.geluBackward(dy, x), 1e-5, 1e-6)).toBeNull();
    const inplace = gpu(x);
    expect(E.reluForward(inplace, { out: inplace })).toBe(inplace);
    expect(same(inplace, yc)).toBe(true);
  });

  it('layer norm forward and backward, with and without the affine part', () => {
    for (const [rows, cols] of [[4, 7], [64, 768], [3, 5000]]) {
      const x = r([rows, cols], 5, 2), g = r([cols], 6), b = r([cols], 7), dy = r([rows, cols], 8);
      for (const [gamma, beta] of [[g, b], [null, null], [g, null]] as const) {
        const fc = E.layerNormForward(x, gamma, beta, 1e-5);
        const fg = E.layerNormForward(gpu(x), gamma && gpu(gamma), beta && gpu(beta), 1e-5);
        expect(close(fg.y, fc.y, 1e-5, 1e-5)).toBeNull();
        expect(close(fg.mean, fc.mean, 1e-6, 1e-7)).toBeNull();
        expect(close(fg.rstd, fc.rstd, 1e-6, 1e-7)).toBeNull();
        const bc = E.layerNormBackward(dy, x, gamma, fc.mean, fc.rstd, beta !== null);
        const bg = E.layerNormBackward(gpu(dy), gpu(x), gamma && gpu(gamma), gpu(fc.mean), gpu(fc.rstd), beta !== null);
        expect(close(bg.dx, bc.dx, 1e-4, 1e-5)).toBeNull();
        if (bc.dgamma) expect(same(bg.dgamma!, bc.dgamma)).toBe(true);
        if (bc.dbeta) expect(same(bg.dbeta!, bc.dbeta)).toBe(true);
      }
    }
  });

  it('softmax cross-entropy with label smoothing, NaN and ties in the argmax', () => {
    const z = r([50, 10], 9, 3);
    const zs = z.storage() as Float32Array;
    zs[3 * 10 + 4] = zs[3 * 10 + 7] = 100;  // tie: the first maximum counts
    zs[5 * 10 + 2] = NaN;
    const labels = Int32Array.from({ length: 50 }, (_, i) => (i * 7) % 10);
    labels[3] = 4;
    for (const eps of [0, 0.1]) {
      const c = E.softmaxCrossEntropy(z, labels, { labelSmoothing: eps });
      const g = E.softmaxCrossEntropy(gpu(z), labels, { labelSmoothing: eps });
      expect(Number.isNaN(g.loss)).toBe(Number.isNaN(c.loss));
      expect(g.correct).toBe(c.correct);
      expect(close(g.probs, c.probs, 1e-5, 1e-7)).toBeNull();
      const clean = r([50, 10], 10, 3);
      const c2 = E.softmaxCrossEntropy(clean, labels, { labelSmoothing: eps });
      const g2 = E.softmaxCrossEntropy(gpu(clean), labels, { labelSmoothing: eps });
      expect(Math.abs(g2.loss - c2.loss)).toBeLessThan(1e-6 * Math.max(1, Math.abs(c2.loss)));
      expect(close(E.softmaxCrossEntropyBackward(g2.probs, labels, { labelSmoothing: eps, scale: 2 }),
        E.softmaxCrossEntropyBackward(c2.probs, labels, { labelSmoothing: eps, scale: 2 }), 1e-5, 1e-7)).toBeNull();
    }
  });

  it('im2col / col2im / max pooling (bit for bit), overlapping windows and padding', () => {
    const x = r([2, 9, 11, 3], 11);
    for (const w of [
      { kernel: [3, 3], stride: [1, 1], padding: [1, 1] },
      { kernel: [2, 2], stride: [2, 2], padding: [0, 0] },
      { kernel: [3, 2], stride: [2, 1], padding: [1, 0] },
    ] as E.Window2d[]) {
      const cc = E.im2col(x, w), cg = E.im2col(gpu(x), w);
      expect(same(cg, cc)).toBe(true);
      expect(same(E.col2im(cg, x.shape, w), E.col2im(cc, x.shape, w))).toBe(true);
      if (2 * w.padding[0] <= w.kernel[0] && 2 * w.padding[1] <= w.kernel[1]) {
        const pc = E.maxPoolForward(x, w), pg = E.maxPoolForward(gpu(x), w);
        expect(same(pg.y, pc.y)).toBe(true);
        expect(Array.from(pg.argmax)).toEqual(Array.from(pc.argmax));
        const dy = r([...pc.y.shape], 12);
        expect(same(E.maxPoolBackward(gpu(dy), pg.argmax, x.shape, w), E.maxPoolBackward(dy, pc.argmax, x.shape, w))).toBe(true);
      }
    }
  });

  it('dropout, masked scale / add and the N:M mask refresh (bit for bit)', () => {
    const x = r([37, 64], 13), w = r([37, 64], 14);
    expect(same(E.dropout(gpu(x), 0.3, 42, 1000), E.dropout(x, 0.3, 42, 1000))).toBe(true);
    expect(same(E.dropout(gpu(x), 0.3, -7, 0), E.dropout(x, 0.3, -7, 0))).toBe(true);
    const m = nm.mask(w, '2:4');
    for (const alpha of [0, 0.25]) expect(same(E.maskedScale(gpu(x), gpu(m), alpha), E.maskedScale(x, m, alpha))).toBe(true);
    for (const lambda of [0, 2e-4]) expect(close(E.maskedAdd(gpu(x), gpu(w), gpu(m), lambda), E.maskedAdd(x.clone(), w, m, lambda), 1e-7, 1e-9)).toBeNull();
    for (const [p, alpha] of [['2:4', 0], ['1:8', 0.5], ['16:32', 0.1]] as const) {
      const c = E.nmMaskScale(w, p as never, alpha), g = E.nmMaskScale(gpu(w), p as never, alpha);
      expect(same(g.mask, c.mask)).toBe(true);
      expect(same(g.out, c.out)).toBe(true);
    }
  });

  it('SGD (momentum, Nesterov, weight decay), AdamW and gradient clipping follow the CPU', () => {
    const make = (device: 'cpu' | 'cuda') => {
      const p = new Parameter(device === 'cpu' ? r([64, 32], 20) : gpu(r([64, 32], 20)));
      return p;
    };
    for (const kind of ['sgd', 'nesterov', 'adamw'] as const) {
      const pc = make('cpu'), pg = make('cuda');
      const oc = kind === 'adamw' ? new AdamW([pc], { lr: 1e-2 }) : new SGD([pc], { lr: 0.1, momentum: 0.9, weightDecay: 1e-3, nesterov: kind === 'nesterov' });
      const og = kind === 'adamw' ? new AdamW([pg], { lr: 1e-2 }) : new SGD([pg], { lr: 0.1, momentum: 0.9, weightDecay: 1e-3, nesterov: kind === 'nesterov' });
      for (let step = 0; step < 5; step++) {
        const g = r([64, 32], 30 + step);
        pc.grad = g;
        pg.grad = gpu(g);
        const nc = oc.clipGradNorm(5), ng = og.clipGradNorm(5);
        expect(Math.abs(ng - nc)).toBeLessThan(1e-9 * nc);
        oc.step();
        og.step();
      }
      expect(close(pg.value, pc.value, 1e-5, 1e-6), kind).toBeNull();
    }
  });

  it('a whole tiny training step runs on cuda without touching the CPU ops', () => {
    const x = gpu(r([16, 8], 40)), labels = Int32Array.from({ length: 16 }, (_, i) => i % 4);
    const y = E.reluForward(x);
    const loss = E.softmaxCrossEntropy(y.reshape(16, 8).clone(), labels);
    expect(Number.isFinite(loss.loss)).toBe(true);
    expect(loss.probs.device).toBe('cuda');
    void tensor;
  });
});
