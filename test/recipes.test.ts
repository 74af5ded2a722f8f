// The recipe family (docs/design.md §6): exact equalities (SR-STE λ=0 ≡ STE), the SR-STE gradient on a hand-made example,
// schedule values at given steps, ASP's exact zeros, and N:M validity of every recipe's trained weights.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tensor, nm, tensor } from '../lib/index.js';
import { NmSparseError } from '../lib/errors.js';
import { SparseLinear } from '../lib/nn/layers.js';
import { nmKernelMinWidth } from '../lib/nn/linalg.js';
import { mlp, cnn } from '../lib/nn/models.js';
import type { Module } from '../lib/nn/module.js';
import { AdamW, SGD, warmupCosine } from '../lib/optim/index.js';
import { applyGradTerms } from '../lib/optim/optimizer.js';
import { SoftmaxCrossEntropy } from '../lib/nn/loss.js';
import { autocast, GradScaler, setLossScale } from '../lib/nn/amp.js';
import {
  ASP, Dense, MaskDecay, RECIPE_NAMES, SRSTE, STE, StructureDecay, createRecipe, structureFrames, type Recipe,
} from '../lib/recipes/index.js';
import { Batches, mnistSplit, type Dataset } from '../lib/data/mnist.js';
import { Trainer, sparseWeights } from '../lib/train/trainer.js';
import { expectSameWeights, trainSteps } from './train-helpers.js';

let data: Dataset;
beforeAll(() => {
  data = mnistSplit({ train: 1024, test: 0 }).train;
});

const f32 = (v: number[], shape: number[]) => new Tensor(shape, 'float32', Float32Array.from(v));
function transpose(t: Tensor): Tensor {
  const [r, c] = t.shape, a = t.storage() as Float32Array, o = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) o[j * r + i] = a[i * c + j];
  return new Tensor([c, r], 'float32', o);
}
const bits = (t: Tensor) => new Uint32Array((t.storage() as Float32Array).slice().buffer);

/** A plain training loop (no Trainer), calling the recipe hooks the way the Trainer does. */
const train = (model: Module, recipe: Recipe, steps: number, onStep?: (step: number) => void): void => trainSteps(model, recipe, steps, data, { onStep });

describe('SR-STE', () => {
  it('with λ_W = 0 equals STE bit for bit over 12 training steps (and λ_W = 2e-4 does not)', () => {
    const runs = [new STE(), new SRSTE({ lambda: 0 }), new SRSTE()].map((recipe) => {
      const model = mlp({ hidden: [32, 32], pattern: '2:4', recipe, seed: 5 });
      train(model, recipe, 12);
      return model.parameters().map((p) => bits(p.value));
    });
    runs[0].forEach((p, i) => expect(runs[1][i]).toEqual(p));
    expect(runs[2].some((p, i) => p.some((b, j) => b !== runs[0][i][j]))).toBe(true);
  });

  it('20 steps with the term fused into the optimizer step give the bits of the separate pass (SGD, AdamW; clipping; float16 scaled)', () => {
    for (const c of [
      { opt: 'sgd', precision: 'float32', clip: 0 },
      { opt: 'sgd', precision: 'float32', clip: 0.1 },
      { opt: 'adamw', precision: 'float32', clip: 0 },
      { opt: 'sgd', precision: 'float16', clip: 0 },
      { opt: 'sgd', precision: 'float16', clip: 0.1 },
      { opt: 'adamw', precision: 'float16', clip: 0 },
    ] as const) {
      const run = (fuse: boolean) => {
        const recipe = new SRSTE({ lambda: 0.01 }), steps = 20;
        const model = mlp({ hidden: [32, 32], pattern: '2:4', recipe, seed: 5 });
        model.requiresInputGrad = false;
        const params = model.parameters();
        const opt = c.opt === 'sgd' ? new SGD(params, { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 5e-4 }) : new AdamW(params, { lr: 1e-3 });
        const scaler = c.precision === 'float16' ? new GradScaler() : null;
        const loss = new SoftmaxCrossEntropy(), sw = sparseWeights(model).map(({ s }) => s);
        const batches = new Batches(data, 64, { seed: 1 });
        recipe.plan(steps);
        let pending = 0;
        for (const [step, b] of [...batches.epoch(0), ...batches.epoch(1)].slice(0, steps).entries()) {
          recipe.setStep(step);
          autocast(c.precision, () => {
            loss.forward(model.forward(b.x), b.labels);
            model.backward(loss.backward(scaler?.scale ?? 1));
          });
          pending += params.filter((p) => p.term).length;
          if (!fuse) applyGradTerms(params); // today's separate pass, in the scaled gradient under float16
          if (scaler) scaler.step(opt, { clipGradNorm: c.clip || undefined });
          else {
            if (c.clip) opt.clipGradNorm(c.clip);
            opt.step();
          }
          for (const s of sw) s.afterUpdate();
        }
        expect(pending).toBe(steps * sw.length); // every sparse weight's term was left to the step
        return params.map((p) => p.value);
      };
      const [fused, apart] = [run(true), run(false)];
      fused.forEach((t, i) => expect(bits(t), `${JSON.stringify(c)} parameter ${i}`).toEqual(bits(apart[i])));
    }
    setLossScale(1); // the last float16 backward published its scale; the layer-level tests below start from 1
  });

  it('the gradient to the dense W is g + λ_W·(1 − m)⊙W on a hand-made example', () => {
    // W = [4, −0.5, 2, 0.1]: 2:4 keeps 4 and 2. x = [1, 2, 3, 4], dy = 1, so g = x.
    for (const [lambda, want] of [
      [0.5, [1, 2 - 0.25, 3, 4 + 0.05]],
      [undefined, [1, 2 - 2e-4 * 0.5, 3, 4 + 2e-4 * 0.1]],
    ] as const) {
      const layer = new SparseLinear(4, 1, '2:4', new SRSTE(lambda === undefined ? {} : { lambda }), { bias: false });
      (layer.weight.value.storage() as Float32Array).set([4, -0.5, 2, 0.1]);
      const y = layer.forward(f32([1, 2, 3, 4], [1, 4]));
      expect(Array.from(y.storage())).toEqual([10]); // 4·1 + 2·3: the pruned weights do not act
      layer.backward(f32([1], [1, 1]));
      applyGradTerms([layer.weight]); // the term is pending until the optimizer's step (Parameter.term)
      const g = Array.from(layer.weight.grad.storage() as Float32Array);
      want.forEach((w, i) => expect(g[i]).toBeCloseTo(w, 6));
    }
  });

  it('the SR-STE term is exactly float32(g + float32(λ·w)) on pruned positions and nothing elsewhere (random 8x16, 2:8)', () => {
    const mk = (recipe: Recipe) => {
      const l = new SparseLinear(16, 8, '2:8', recipe, { seed: 9 });
      l.forward(f32(Array.from({ length: 48 }, (_, i) => Math.sin(i)), [3, 16]));
      l.backward(f32(Array.from({ length: 24 }, (_, i) => Math.cos(i)), [3, 8]));
      applyGradTerms([l.weight]);
      return l;
    };
    const ste = mk(new STE()), sr = mk(new SRSTE({ lambda: 0.01 }));
    const m = nm.mask(ste.weight.value, '2:8').storage();
    const w = ste.weight.value.storage() as Float32Array, g0 = ste.weight.grad.storage() as Float32Array, g1 = sr.weight.grad.storage() as Float32Array;
    for (let i = 0; i < w.length; i++) expect(g1[i]).toBe(m[i] ? g0[i] : Math.fround(g0[i] + Math.fround(Math.fround(0.01) * w[i])));
  });
});

describe('mask decay α schedules', () => {
  it('step-linear: α_k = max(1 − k·w, 0) with k = ⌊t / interval⌋', () => {
    const r = new MaskDecay({ alpha: 'step-linear', coefficient: 0.25, interval: 10, binaryFraction: 0 });
    r.plan(1000);
    expect([0, 9, 10, 19, 20, 35, 40, 999].map((t) => r.alphaAtStep(t))).toEqual([1, 1, 0.75, 0.75, 0.5, 0.25, 0, 0]);
  });

  it('linear and exp: α_t = max(1 − c·t, 0) and exp(−c·t); α = 0 in the final binary part', () => {
    const lin = new MaskDecay({ alpha: 'linear', coefficient: 0.01, binaryFraction: 0.1 });
    lin.plan(200);
    expect([0, 50, 99, 150, 179, 180].map((t) => lin.alphaAtStep(t))).toEqual([1, 0.5, 1 - 0.99, 0, 0, 0]);
    const ex = new MaskDecay({ alpha: 'exp', coefficient: 2e-4, binaryFraction: 0.5 });
    ex.plan(10000);
    expect(ex.alphaAtStep(1000)).toBeCloseTo(Math.exp(-0.2), 12);
    expect(ex.alphaAtStep(4999)).toBeCloseTo(Math.exp(-2e-4 * 4999), 12);
    expect(ex.alphaAtStep(5000)).toBe(0);
  });

  it('defaults scale to the run: α reaches 0 (or 1e-3 for exp) where the binary part begins', () => {
    const sl = new MaskDecay();
    sl.plan(1000); // 800 decay steps, interval 100, w = 1/8
    expect([sl.refreshInterval, sl.coefficient, sl.gradient]).toEqual([100, 0.125, 'autodiff']);
    expect([0, 99, 100, 799, 800].map((t) => sl.alphaAtStep(t))).toEqual([1, 1, 0.875, 0.125, 0]);
    const lin = new MaskDecay({ alpha: 'linear' });
    lin.plan(1000);
    expect([lin.alphaAtStep(400), lin.gradient, lin.refreshInterval]).toEqual([0.5, 'ste', 1]);
    const ex = new MaskDecay({ alpha: 'exp' });
    ex.plan(1000);
    expect(ex.alphaAtStep(799)).toBeCloseTo(Math.exp((-Math.log(1000) * 799) / 800), 12);
    // With a dense warm-up, t counts from the start of the sparse phase.
    const w = new MaskDecay({ alpha: 'linear', denseWarmup: 0.5, binaryFraction: 0 });
    w.plan(100);
    w.setStep(75);
    expect([w.sparseStep, w.alphaAtStep(w.sparseStep)]).toEqual([25, 0.5]);
  });

  it('the forward weight is W ⊙ (m + (1 − m)·α) and α = 0 at the end', () => {
    const recipe = new MaskDecay({ alpha: 'linear', coefficient: 0.1, binaryFraction: 0.5 });
    recipe.plan(20);
    const layer = new SparseLinear(8, 2, '1:4', recipe, { seed: 3 });
    const w = Array.from(layer.weight.value.storage() as Float32Array);
    const m = nm.mask(layer.weight.value, '1:4').storage();
    for (const [step, alpha] of [[0, 1], [3, 0.7], [9, 0.1], [10, 0]] as const) {
      recipe.setStep(step);
      const eff = Array.from(layer.sparse!.forwardWeight(true).storage() as Float32Array);
      expect(eff).toEqual(w.map((v, i) => (m[i] ? v : alpha === 0 ? 0 : Math.fround(Math.fround(alpha) * v))));
      expect(layer.sparse!.density).toBe(alpha === 0 ? 0.25 : 1);
    }
  });
});

describe('structure decay', () => {
  const s = (ps: { n: number; m: number }[]) => ps.map((p) => `${p.n}:${p.m}`);
  it('frame lists: kao (AQT), stepwise and geometric (PGF)', () => {
    expect(s(structureFrames('kao', { n: 2, m: 4 }))).toEqual(['4:4', '3:4', '2:4']);
    expect(s(structureFrames('kao', { n: 1, m: 4 }))).toEqual(['4:4', '3:4', '1:4']);
    expect(s(structureFrames('kao', { n: 1, m: 8 }))).toEqual(['8:8', '7:8', '2:8', '1:8']);
    expect(s(structureFrames('stepwise', { n: 1, m: 8 }))).toEqual(['7:8', '4:8', '2:8', '1:8']);
    expect(s(structureFrames('stepwise', { n: 2, m: 4 }))).toEqual(['3:4', '2:4']);
    expect(s(structureFrames('stepwise', { n: 1, m: 16 }))).toEqual(['15:16', '8:16', '4:16', '2:16', '1:16']);
    expect(s(structureFrames('geometric', { n: 1, m: 8 }))).toEqual(['8:64', '4:32', '2:16', '1:8']);
  });

  it('frames split the sparse phase equally; frames a layer cannot run are replaced by the next one', () => {
    const r = new StructureDecay({ schedule: 'geometric' });
    r.plan(400);
    const fc1 = { pattern: { n: 2, m: 4 }, groupExtent: 784, supports: (p: { m: number }) => p.m <= 32 && 784 % p.m === 0 };
    // 16:32 cannot run on 784 inputs (784 % 32 ≠ 0): 8:16 takes its place.
    expect([0, 99, 100, 200, 300, 399].map((t) => `${r.patternAtStep(fc1, t).n}:${r.patternAtStep(fc1, t).m}`)).toEqual(['8:16', '8:16', '8:16', '4:8', '2:4', '2:4']);
  });

  it('during training the forward weight follows the frame pattern and the run ends at the target', () => {
    const recipe = new StructureDecay({ schedule: 'stepwise' }); // 1:8 → 7:8, 4:8, 2:8, 1:8
    const model = mlp({ hidden: [32, 32], pattern: '1:8', recipe, seed: 2 });
    const fc1 = sparseWeights(model)[0].s;
    const seen: string[] = [];
    train(model, recipe, 16, () => {
      const eff = fc1.forwardWeight(false);
      const frame = ['1:8', '2:8', '4:8', '7:8'].find((p) => nm.check(eff, p).ok)!; // the sparsest pattern it satisfies
      if (seen[seen.length - 1] !== frame) seen.push(frame);
    });
    expect(seen).toEqual(['7:8', '4:8', '2:8', '1:8']);
    expect(nm.check(fc1.deployWeight(), '1:8').ok).toBe(true);
  });
});

describe("structure decay 'aqt' (Google AQT's code as published)", () => {
  // AQT sparsity.py, written out independently: n after k mask updates, from prune_rate (n0, m) = (M, M).
  const aqtN = (n0: number, k: number) => (k === 1 ? n0 - 1 : Math.ceil(n0 / 2 ** k));
  const refPattern = (target: { n: number; m: number }, k: number) => `${Math.max(target.n, aqtN(target.m, Math.min(k, 8)))}:${target.m}`;
  const str = (p: { n: number; m: number }) => `${p.n}:${p.m}`;
  const s = (ps: { n: number; m: number }[]) => ps.map(str);
  const layerOf = (n: number, m: number) => ({ pattern: { n, m }, groupExtent: 64, supports: (p: { m: number }) => 64 % p.m === 0 });

  it('N at update k is ⌈n₀/2^k⌉ (n₁ = n₀ − 1) down to the target; one frame per update interval', () => {
    // AQT's own unit test (sparsity_test.py, prune_rate (4, 4)): 4:4, 3:4, 1:4, 1:4.
    expect([0, 1, 2, 3].map((k) => `${aqtN(4, k)}:4`)).toEqual(['4:4', '3:4', '1:4', '1:4']);
    expect(s(structureFrames('aqt', { n: 2, m: 4 }))).toEqual(['4:4', '3:4', '2:4']);
    expect(s(structureFrames('aqt', { n: 1, m: 8 }))).toEqual(['8:8', '7:8', '2:8', '1:8']);
    for (const [n, m] of [[2, 4], [1, 4], [1, 8], [2, 8], [4, 8], [1, 16], [3, 32]]) {
      const r = new StructureDecay({ schedule: 'aqt', interval: 5 });
      r.plan(200);
      const l = layerOf(n, m);
      for (let t = 0; t < 200; t++) expect(str(r.patternAtStep(l, t)), `${n}:${m} t ${t}`).toBe(refPattern({ n, m }, Math.floor(t / 5)));
    }
  });

  it('defaults: interval = sparse phase / 10, autodiff gradient; frameSteps is refused', () => {
    const r = new StructureDecay({ schedule: 'aqt' });
    r.plan(1000);
    expect([r.refreshInterval, r.gradient, r.describe().interval]).toEqual([100, 'autodiff', 100]);
    const w = new StructureDecay({ schedule: 'aqt', denseWarmup: 0.2 });
    w.plan(1000);
    w.setStep(200 + 160);
    expect([w.refreshInterval, str(w.patternAtStep(layerOf(1, 8), w.sparseStep))]).toEqual([80, '2:8']);
    expect(new StructureDecay().gradient).toBe('ste');
    expect(() => new StructureDecay({ schedule: 'aqt', frameSteps: 10 })).toThrow(NmSparseError);
    expect(() => new StructureDecay({ schedule: 'aqt' }).refreshInterval).toThrow(/planned run/);
  });

  it('pruned weights get zero gradient: g_aqt = m ⊙ g_ste exactly (random 8x64, at 2:8 of target 1:8)', () => {
    const mk = (gradient: 'autodiff' | 'ste') => {
      const recipe = new StructureDecay({ schedule: 'aqt', interval: 2, gradient });
      recipe.plan(20);
      recipe.setStep(5); // update k = 2: 2:8
      const l = new SparseLinear(64, 8, '1:8', recipe, { seed: 4 });
      l.forward(f32(Array.from({ length: 192 }, (_, i) => Math.sin(0.7 * i)), [3, 64]));
      l.backward(f32(Array.from({ length: 24 }, (_, i) => Math.cos(i)), [3, 8]));
      applyGradTerms([l.weight]);
      return l;
    };
    const aqt = mk('autodiff'), ste = mk('ste');
    const m = nm.mask(aqt.weight.value, '2:8').storage();
    expect(aqt.sparse!.mask!.storage()).toEqual(m);
    const g = aqt.weight.grad.storage() as Float32Array, g0 = ste.weight.grad.storage() as Float32Array;
    expect(Array.from(g0).some((v, i) => !m[i] && v !== 0)).toBe(true); // STE does send gradient to pruned weights
    for (let i = 0; i < g.length; i++) expect(g[i]).toBe(m[i] ? g0[i] : 0);
  });

  it('in training the mask is recomputed only at updates (k·interval) from the current |W| and held in between', () => {
    const I = Math.floor(20 / 10); // the default interval of a 20-step run
    const recipe = new StructureDecay({ schedule: 'aqt' });
    const model = mlp({ hidden: [32, 32], pattern: '1:8', recipe, seed: 2 });
    const fc1 = sparseWeights(model)[0].s;
    let before = fc1.weight.clone(), prevMask: Uint8Array | null = null;
    const seen: string[] = [];
    train(model, recipe, 20, (step) => {
      const want = refPattern({ n: 1, m: 8 }, Math.floor(step / I));
      if (want === '8:8') expect(fc1.active).toBe(false);
      else {
        expect(str(fc1.maskPattern!)).toBe(want);
        const mask = (fc1.mask!.storage() as Uint8Array).slice();
        if (step % I === 0) expect(mask).toEqual(nm.mask(before, want).storage());
        else expect(mask).toEqual(prevMask);
        prevMask = mask;
      }
      if (seen[seen.length - 1] !== want) seen.push(want);
      before = fc1.weight.clone();
    });
    expect(seen).toEqual(['8:8', '7:8', '2:8', '1:8']);
    expect(recipe.refreshInterval).toBe(I);
    expect(nm.check(fc1.deployWeight(), '1:8').ok).toBe(true);
  });
});

describe('ASP', () => {
  it('trains dense, prunes once, then keeps the pruned weights exactly 0 after every step', () => {
    const recipe = new ASP(); // dense for the first half
    const model = mlp({ hidden: [32, 32], pattern: '2:4', recipe, seed: 4 });
    const layers = sparseWeights(model).map(({ s }) => s);
    let firstMask: Uint8Array[] | null = null;
    let denseSteps = 0;
    train(model, recipe, 20, (step) => {
      if (step < 10) {
        denseSteps++;
        expect(layers[0].active).toBe(false);
        return;
      }
      for (const s of layers) {
        const w = s.weight.storage() as Float32Array, m = s.mask!.storage() as Uint8Array;
        for (let i = 0; i < w.length; i++) if (!m[i] && !Object.is(w[i], 0)) expect.fail(`step ${step}: pruned weight ${i} is ${w[i]}`);
        expect(nm.check(s.weight, '2:4').ok).toBe(true);
      }
      firstMask ??= layers.map((s) => (s.mask!.storage() as Uint8Array).slice());
      layers.forEach((s, i) => expect(s.mask!.storage()).toEqual(firstMask![i]));
    });
    expect(denseSteps).toBe(10);
    expect(layers.every((s) => s.updates === 1)).toBe(true);
  });

  it('restarts the learning-rate schedule for the sparse phase', () => {
    const r = new ASP({ denseFraction: 0.25 });
    r.plan(100);
    expect([r.lrSegment(10), r.lrSegment(25), r.lrSegment(99)]).toEqual([{ step: 10, total: 25 }, { step: 0, total: 75 }, { step: 74, total: 75 }]);
    expect(new ASP({ restartSchedule: false }).lrSegment(60)).toEqual({ step: 60, total: 0 });
  });
});

describe('common options', () => {
  it('dense warm-up and dense fine-tune fractions set the phases', () => {
    const r = new STE({ denseWarmup: 0.2, denseFinetune: 0.3 });
    r.plan(10);
    const phases = Array.from({ length: 10 }, (_, i) => (r.setStep(i), r.phase()));
    expect(phases).toEqual(['dense-warmup', 'dense-warmup', 'sparse', 'sparse', 'sparse', 'sparse', 'sparse', 'dense-finetune', 'dense-finetune', 'dense-finetune']);
  });

  it('the mask refresh interval: masks recomputed every `interval` steps only', () => {
    const recipe = new STE({ interval: 4 });
    const model = mlp({ hidden: [16, 16], pattern: '2:4', recipe, seed: 8 });
    const s = sparseWeights(model)[0].s;
    const masks: Uint8Array[] = [];
    train(model, recipe, 10, () => masks.push((s.mask!.storage() as Uint8Array).slice()));
    expect(s.updates).toBe(3); // steps 0, 4, 8
    expect(masks[1]).toEqual(masks[0]);
    expect(masks[3]).toEqual(masks[0]);
  });

  it('createRecipe makes every recipe by name and rejects unknown names and bad options', () => {
    for (const n of RECIPE_NAMES) expect(createRecipe(n).name).toBe(n);
    expect(createRecipe('srste', { lambda: 1e-3 })).toMatchObject({ lambda: 1e-3 });
    expect(() => createRecipe('sr-ste')).toThrowError(/recipe: got "sr-ste", expected one of dense, ste, srste/);
    expect(() => new SRSTE({ lambda: -1 })).toThrowError(NmSparseError);
    expect(() => new MaskDecay({ alpha: 'cosine' as never })).toThrowError(/alpha/);
    expect(() => new STE({ denseWarmup: 0.7, denseFinetune: 0.5 })).toThrowError(/at most 1/);
  });
});

describe('after training, every sparse layer deploys a valid N:M weight', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['ste', {}, '2:4'], ['srste', {}, '1:4'], ['asp', {}, '2:8'], ['mask-decay', { alpha: 'step-linear' }, '2:4'],
    ['mask-decay', { alpha: 'exp' }, '1:8'], ['structure-decay', { schedule: 'kao' }, '1:8'], ['structure-decay', { schedule: 'geometric' }, '2:4'],
  ];
  for (const [name, opts, pattern] of cases)
    it(`${name} ${JSON.stringify(opts)} ${pattern} (MLP, Trainer)`, async () => {
      const recipe = createRecipe(name, opts);
      const model = mlp({ hidden: [32, 32], pattern, recipe, seed: 6 });
      const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
      const t = new Trainer({ model, optimizer: opt, schedule: warmupCosine({ lr: 0.05 }), epochs: 2, batchSize: 128 });
      const r = await t.fit(data, data);
      expect(t.sparseLayers.map((l) => l.name)).toEqual(['fc1.weight', 'fc2.weight']);
      for (const { s } of t.sparseLayers) expect(nm.check(s.deployWeight(), pattern).ok).toBe(true);
      expect(r.final.trainLoss).toBeLessThan(2.3);
    });

  it('srste 2:4 CNN: conv2 and fc1 are sparse (groups along input channels), conv1 and the classifier dense', async () => {
    const recipe = new SRSTE();
    const model = cnn({ channels: [8, 8], hidden: 32, pattern: '2:4', recipe, seed: 1 });
    const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
    const t = new Trainer({ model, optimizer: opt, schedule: warmupCosine({ lr: 0.05 }), epochs: 1, batchSize: 128 });
    await t.fit(data, data);
    expect(t.sparseLayers.map((l) => l.name)).toEqual(['conv2.weight', 'fc1.weight']);
    for (const { s } of t.sparseLayers) {
      const w = s.deployWeight();
      expect(nm.check(w, '2:4').ok).toBe(true);
      // Reshaped as [out·kh·kw, in], the conv weight is 2:4 along input channels too.
      expect(nm.check(w.reshape([-1, s.groupExtent]), '2:4').ok).toBe(true);
    }
  });

  it('the dense recipe never masks, and its layers keep their dense weights', () => {
    const recipe = new Dense();
    const model = mlp({ hidden: [16, 16], pattern: '2:4', recipe, seed: 3 });
    train(model, recipe, 3);
    expect(sparseWeights(model).every(({ s }) => !s.active && s.mask === null && !nm.check(s.weight, '2:4').ok)).toBe(true);
  });
});

describe('the N:M kernels in the training step (nmTrainPass, sparseLinear, linearInputGrad)', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['ste', {}, '2:4'], ['srste', {}, '2:4'], ['srste', {}, '1:8'], ['asp', { denseFraction: 0.25 }, '2:4'],
    ['mask-decay', { alpha: 'step-linear' }, '2:4'], ['structure-decay', { schedule: 'kao' }, '2:8'], ['srste', { interval: 3 }, '4:8'],
    ['srste', { mask: 'transposable' }, '2:4'], ['asp', { mask: 'transposable' }, '2:4'],
  ];
  // These layers are narrow: route their products through the N:M kernels too, as wider layers are by default.
  const widths = { ...nmKernelMinWidth };
  beforeAll(() => Object.assign(nmKernelMinWidth, { forward: 0, inputGrad: 0 }));
  afterAll(() => Object.assign(nmKernelMinWidth, widths));
  for (const [name, opts, pattern] of cases)
    it(`${name} ${JSON.stringify(opts)} ${pattern}: 20 steps equal the dense-masked path (MLP and CNN)`, () => {
      for (const kind of ['mlp', 'cnn'] as const) {
        const runs = [true, false].map((sparseKernels) => {
          const recipe = createRecipe(name, { ...opts, sparseKernels });
          const model = kind === 'mlp'
            ? mlp({ hidden: [64, 64], pattern, recipe, seed: 11 })
            : cnn({ channels: [8, 16], hidden: 32, pattern, recipe, seed: 12 });
          let used = 0;
          const sw = sparseWeights(model).map(({ s }) => s);
          train(model, recipe, 20, () => { used += sw.filter((s) => s.compressed !== null).length; });
          return { params: model.parameters().map((p) => p.value), used, sw };
        });
        expect(runs[0].used, `${kind}: steps × layers on the N:M kernels`).toBeGreaterThan(0);
        expect(runs[1].used).toBe(0);
        expectSameWeights(runs[0].params, runs[1].params, `${name} ${pattern} ${kind}`);
        for (const s of runs[0].sw) {
          const w = s.deployWeight();
          expect(nm.check(w, pattern).ok).toBe(true);
          if (opts.mask === 'transposable') expect(nm.check(transpose(w.reshape([s.rows, s.cols])), pattern).ok, `${s.name}ᵀ`).toBe(true);
        }
      }
    });

  it('with the forward alone on the kernels (dX dense, so the pass writes W ⊙ m), 20 SR-STE steps equal the dense-masked path', () => {
    Object.assign(nmKernelMinWidth, { forward: 0, inputGrad: Infinity });
    try {
      const runs = [true, false].map((sparseKernels) => {
        const recipe = createRecipe('srste', { sparseKernels });
        const model = mlp({ hidden: [64, 64], pattern: '2:4', recipe, seed: 13 });
        train(model, recipe, 20);
        return model.parameters().map((p) => p.value);
      });
      expectSameWeights(runs[0], runs[1], 'srste 2:4, dense dX');
    } finally {
      Object.assign(nmKernelMinWidth, { forward: 0, inputGrad: 0 });
    }
  });

  it('evaluation runs the N:M product from a compressed weight of its own: the dense-masked outputs, the training state untouched', () => {
    const x = new Tensor([33, 784], 'float32', data.images.slice(0, 33 * 784));
    for (const [name, opts, pattern] of [['srste', {}, '2:4'], ['srste', { interval: 3 }, '1:8'], ['srste', { mask: 'transposable' }, '2:4'],
      ['structure-decay', { schedule: 'kao' }, '2:8']] as [string, Record<string, unknown>, string][]) {
      const recipe = createRecipe(name, opts);
      const model = mlp({ hidden: [64, 64], pattern, recipe, seed: 21 });
      train(model, recipe, 4);
      recipe.setStep(4);  // as the Trainer evaluates: a refresh is due (fresh masks), except at interval 3 (the held ones)
      const sw = sparseWeights(model).map(({ s }) => s);
      const state = () => JSON.stringify(sw.map((s) => [Array.from(s.mask!.storage()), s.maskPattern, s.updates, s.lastRefresh, s.stepSad]));
      const before = state();
      model.eval();
      const outs = [0, Infinity].map((forward) => {
        Object.assign(nmKernelMinWidth, { forward });
        const y = model.forward(x).toArray();
        expect(sw.every((s) => (s.compressed !== null) === (forward === 0)), `${name} ${pattern}: eval on the kernels iff wide enough`).toBe(true);
        return y;
      });
      Object.assign(nmKernelMinWidth, { forward: 0 });
      model.train();
      expectSameWeights([tensor(outs[0], [33, 10])], [tensor(outs[1], [33, 10])], `${name} ${pattern} eval`);
      expect(state(), `${name} ${pattern}: training state`).toBe(before);
    }
  });

  it('rejects a transposable mask on a weight whose rows or columns are not multiples of 4', () => {
    expect(() => mlp({ hidden: [30], pattern: '2:4', recipe: new SRSTE({ mask: 'transposable' }), seed: 1 })).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => new SRSTE({ mask: 'diagonal' as never })).toThrowError(expect.objectContaining({ code: 'E_VALUE' }));
  });

  it('the step SAD counts the mask entries that changed at each refresh', () => {
    const recipe = new SRSTE();
    const model = mlp({ hidden: [32, 32], pattern: '2:4', recipe, seed: 4 });
    const sw = sparseWeights(model).map(({ s }) => s);
    let prev: number[][] = [];
    let checked = 0;
    train(model, recipe, 6, () => {
      const now = sw.map((s) => Array.from(s.mask!.storage()));
      if (prev.length) sw.forEach((s, i) => { expect(s.stepSad).toBe(now[i].filter((k, j) => k !== prev[i][j]).length); checked++; });
      prev = now;
    });
    expect(checked).toBe(10);
  });
});
