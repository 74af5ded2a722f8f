// Shared by the recipe tests on the CPU (recipes.test.ts) and on the GPU (gpu/recipes.test.ts): a plain training
// loop, and the check that two runs' weights agree.
import { expect } from 'vitest';
import type { Tensor } from '../lib/index.js';
import type { Device } from '../lib/device.js';
import type { Module } from '../lib/nn/module.js';
import type { Recipe } from '../lib/recipes/index.js';
import { SoftmaxCrossEntropy } from '../lib/nn/loss.js';
import { autocast } from '../lib/nn/amp.js';
import { SGD } from '../lib/optim/index.js';
import { Batches, type Dataset } from '../lib/data/mnist.js';
import { sparseWeights } from '../lib/train/trainer.js';

/**
 * `steps` SGD steps on `data` (batches of 64), calling the recipe hooks the way the Trainer does; the model on
 * `device`, its products at `precision` (bfloat16: no loss scaling).
 */
export function trainSteps(model: Module, recipe: Recipe, steps: number, data: Dataset,
  opts: { onStep?: (step: number) => void; device?: Device; precision?: 'float32' | 'bfloat16' } = {}): void {
  const device = opts.device ?? 'cpu';
  recipe.plan(steps);
  const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 5e-4 });
  const loss = new SoftmaxCrossEntropy();
  const sw = sparseWeights(model).map(({ s }) => s);
  const batches = new Batches(data, 64, { seed: 1 });
  model.requiresInputGrad = false;
  let step = 0;
  for (let epoch = 0; step < steps; epoch++)
    for (const b of batches.epoch(epoch)) {
      if (step === steps) break;
      recipe.setStep(step);
      autocast(opts.precision ?? 'float32', () => {
        loss.forward(model.forward(device === 'cpu' ? b.x : b.x.to(device)), b.labels);
        model.backward(loss.backward());
      });
      opt.step();
      for (const s of sw) s.afterUpdate();
      opts.onStep?.(step);
      step++;
    }
}

/**
 * Weights of two runs agree to `tol` (1e-5) of each tensor's largest magnitude. The sums run in another order, so a
 * ReLU input within round-off of 0 can flip and move a few weights further: at most `fraction` (0.2%) of a
 * tensor's elements may differ by more, and none by more than `worst` (1e-3): a real divergence moves most of them.
 * Tensors on any device.
 */
export function expectSameWeights(a: Tensor[], b: Tensor[], label: string, lim = { tol: 1e-5, fraction: 0.002, worst: 1e-3 }): void {
  a.forEach((t, i) => {
    const host = (u: Tensor) => (u.device === 'cpu' ? u : u.to('cpu')).storage() as Float32Array;
    const x = host(t), y = host(b[i]);
    let scale = 0;
    for (const v of y) scale = Math.max(scale, Math.abs(v));
    let far = 0, worst = 0;
    for (let k = 0; k < x.length; k++) {
      const d = Math.abs(x[k] - y[k]) / scale;
      if (d > lim.tol) far++;
      if (!(d <= worst)) worst = d;
    }
    expect(far / x.length, `${label} tensor ${i}: ${far} of ${x.length} beyond ${lim.tol}`).toBeLessThanOrEqual(lim.fraction);
    expect(worst, `${label} tensor ${i}`).toBeLessThanOrEqual(lim.worst);
  });
}
