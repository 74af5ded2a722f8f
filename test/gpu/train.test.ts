// Training ops on 'cuda' against the same public functions on the CPU (lib/nn/elementwise.ts, lib/optim): bit for
// bit where the GPU adds in the CPU's order (bias and LayerNorm parameter gradients, col2im, max pooling, dropout,
// masks, ReLU, the fused N:M training pass), to float32 rounding elsewhere (erf/exp, row reductions in float64
// trees). Plus a few SGD/AdamW steps and gradient clipping.
import { describe, expect, it } from 'vitest';
import { Tensor, randn, tensor, nm } from '../../lib/index.js';
import * as E from '../../lib/nn/elementwise.js';
import { Parameter } from '../../lib/nn/module.js';
import { SGD, AdamW } from '../../lib/optim/index.js';
import { expectPortableForm, poison, prng, refMask, sameBits } from '../helpers.js';
import { sparseInfo } from '../../lib/cuda.js';
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

describe.skipIf(!gpuUsable)('nmTrainPass on cuda: the CPU pass and a float64 reference', () => {
  /** Overwrites a float32 tensor on 'cuda' with NaN (device memory has no host view to fill). */
  const poisonCuda = (t: Tensor) => E.add(gpu(poison(r([...t.shape], 0))), gpu(r([...t.shape], 0)), { out: t });

  it('mask, W ⊙ m, portable form and SAD for every M, ragged shapes, NaN / ±0 / ties, selecting or not', () => {
    const rnd = prng(4242);
    const gen = () => {
      const u = rnd();
      if (u < 0.04) return NaN;
      if (u < 0.1) return u < 0.07 ? 0 : -0;
      if (u < 0.3) return [0.5, -0.5, 1, -1][Math.floor(rnd() * 4)];
      return 2 * rnd() - 1;
    };
    for (const [n, m] of [[2, 4], [1, 4], [3, 4], [1, 8], [2, 8], [4, 8], [7, 8], [1, 16], [3, 16], [8, 16], [5, 32], [16, 32]]) {
      const p = { n, m };
      for (const [rows, groups] of [[1, 1], [3, 5], [9, 7], [37, 70]]) {
        const cols = m * groups, label = `${n}:${m} [${rows}, ${cols}]`;
        const w0 = tensor(Array.from({ length: rows * cols }, gen)).reshape([rows, cols]);
        const w1 = tensor(Array.from({ length: rows * cols }, gen)).reshape([rows, cols]);
        const c0 = E.nmTrainPass(w0, p);
        const c1 = E.nmTrainPass(w1, p, { mask: c0.mask.clone(), buffers: null });
        const g0 = E.nmTrainPass(gpu(w0), p);
        expect(g0.sad, label).toBe(0);
        const prev = Array.from(cpu(g0.mask).storage());
        poisonCuda(g0.buffers.out);
        const first = g0.buffers.sparse;
        const g1 = E.nmTrainPass(gpu(w1), p, { mask: g0.mask, buffers: g0.buffers });
        expect(g1.buffers.out, label).toBe(g0.buffers.out);
        expect(first.disposed, `${label}: the previous step's compressed weight is freed`).toBe(true);
        // Against the float64 reference: the mask, the SAD, w ⊙ m, the kept values and their positions.
        const want = refMask(w1.toArray(), cols, n, m);
        expect(Array.from(cpu(g1.mask).storage()), label).toEqual(want);
        expect(g1.sad, label).toBe(want.reduce((acc, k, i) => acc + (k !== prev[i] ? 1 : 0), 0));
        const wv = w1.storage() as Float32Array, e = cpu(g1.buffers.out).storage() as Float32Array;
        for (let i = 0; i < e.length; i++) if (!Object.is(e[i], want[i] ? wv[i] : 0)) expect.fail(`${label} out[${i}]: ${e[i]}`);
        const host = g1.buffers.sparse.to('cpu');
        const vals = host.values.storage() as Float32Array, pos = host.positions;
        expectPortableForm(label, want, wv, vals, pos, rows, cols, n, m);
        // And bit for bit the CPU pass (padding bits of the positions included).
        expect(sameBits(cpu(g1.buffers.out), c1.buffers.out), label).toBe(true);
        expect(sameBits(host.values, c1.buffers.sparse.values), label).toBe(true);
        expect(Array.from(pos), label).toEqual(Array.from(c1.buffers.sparse.positions));
        expect(g1.sad, label).toBe(c1.sad);
        // 2:4 and wider float32 patterns have no cuSPARSELt form (1:2 pairs); 1:M may (the library decides).
        const info = sparseInfo(g1.buffers.sparse);
        if (n > 1) expect(info.cusparselt, label).toBe(false);
        // Without selection: the mask as given, w0 ⊙ m, the SAD counter untouched (0).
        const held = cpu(g1.mask).storage().slice();
        poisonCuda(g1.buffers.out);
        const g2 = E.nmTrainPass(gpu(w0), p, { mask: g1.mask, buffers: g1.buffers, select: false });
        expect(g2.sad).toBe(0);
        expect(sameBits(cpu(g2.mask), new Tensor([rows, cols], 'uint8', held)), label).toBe(true);
        const e2 = cpu(g2.buffers.out).storage() as Float32Array, w0v = w0.storage() as Float32Array;
        for (let i = 0; i < e2.length; i++) if (!Object.is(e2[i], held[i] ? w0v[i] : 0)) expect.fail(`${label} select:false out[${i}]: ${e2[i]}`);
        expect(sameBits(g2.buffers.sparse.decompress().to('cpu'), cpu(g2.buffers.out)), label).toBe(true);
      }
    }
  });
});
