/**
 * `nmsparse bench train`: the time of one MNIST training epoch on this machine, dense vs the sparse recipes,
 * for the target (784-1024-1024-10 MLP, 2:4, SR-STE, 8,000 images: one epoch ≤ 2 s on 2 cores).
 * Each recipe trains `--epochs` epochs through the Trainer (the same loop as `nmsparse train`); the table gives the
 * median and best epoch (the first epoch, which allocates the buffers, is reported apart), images/s, effective
 * GFLOP/s of the training products, and a per-step breakdown (forward with the mask refresh, loss, backward,
 * optimizer + recipe update) from a separately timed loop. Writes bench/results/train-<machine>.json and .md.
 *
 *   nmsparse bench train [--recipes dense,ste,srste] [--pattern 2:4] [--epochs 3] [--batch 128] [--hidden 1024,1024]
 *                        [--model mlp|cnn] [--threads N] [--machine NAME] [--out DIR] [--no-write]
 */
import { writeFileSync } from 'node:fs';
import { makeWritableDir } from '../io/dir.js';
import { loadavg } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { NmSparseError } from '../errors.js';
import { native, packageRoot } from '../native.js';
import { mnistSplit, Batches } from '../data/mnist.js';
import { buildModel, type ModelName } from '../nn/models.js';
import { SoftmaxCrossEntropy } from '../nn/loss.js';
import { SGD } from '../optim/sgd.js';
import { warmupCosine } from '../optim/schedule.js';
import { createRecipe, RECIPE_NAMES, type RecipeName } from '../recipes/index.js';
import { Trainer, sparseWeights } from '../train/trainer.js';
import { machineInfo, type MachineInfo } from './machine.js';

interface Config {
  recipes: RecipeName[];
  pattern: string;
  epochs: number;
  batch: number;
  hidden: number[];
  model: ModelName;
  threads: number | null;
  machine: string | null;
  out: string;
  write: boolean;
}

export interface TrainBenchResult {
  recipe: string;
  pattern: string;
  /** Seconds of each epoch's training steps (evaluation excluded). */
  epochSeconds: number[];
  firstEpoch: number;
  medianEpoch: number;
  bestEpoch: number;
  imagesPerSecond: number;
  /** Training FLOPs of one epoch (products only; sparse forward at N/M) over the median epoch time. */
  gflops: number;
  testAccuracy: number;
  /** Milliseconds per step, median over the timed loop. */
  step: { forward: number; loss: number; backward: number; update: number; total: number };
}

function parse(args: string[]): Config {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args, strict: true, allowPositionals: false,
      options: {
        recipes: { type: 'string' }, pattern: { type: 'string' }, epochs: { type: 'string' }, batch: { type: 'string' },
        hidden: { type: 'string' }, model: { type: 'string' }, threads: { type: 'string' }, machine: { type: 'string' },
        out: { type: 'string' }, 'no-write': { type: 'boolean' },
      },
    }));
  } catch (e) {
    throw new NmSparseError('E_VALUE', `bench train: ${(e as Error).message.split('\n')[0]}`);
  }
  const int = (k: string, d: number | null): number | null => {
    const v = values[k] as string | undefined;
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) throw new NmSparseError('E_VALUE', `bench train: --${k}: got ${JSON.stringify(v)}, expected an integer >= 1`);
    return n;
  };
  const recipes = ((values.recipes as string | undefined) ?? 'dense,ste,srste').split(',').map((r) => r.trim());
  for (const r of recipes)
    if (!RECIPE_NAMES.includes(r as RecipeName)) throw new NmSparseError('E_VALUE', `bench train: --recipes: got ${JSON.stringify(r)}, expected one of ${RECIPE_NAMES.join(', ')}`);
  const model = (values.model as string | undefined) ?? 'mlp';
  if (model !== 'mlp' && model !== 'cnn') throw new NmSparseError('E_VALUE', `bench train: --model: got ${JSON.stringify(model)}, expected mlp or cnn`);
  const hidden = ((values.hidden as string | undefined) ?? (model === 'mlp' ? '1024,1024' : '16,32,128')).split(',').map(Number);
  if (hidden.some((h) => !Number.isSafeInteger(h) || h < 1)) throw new NmSparseError('E_VALUE', `bench train: --hidden: got ${JSON.stringify(values.hidden)}, expected positive integers`);
  return {
    recipes: recipes as RecipeName[], pattern: (values.pattern as string | undefined) ?? '2:4', epochs: int('epochs', 3)!, batch: int('batch', 128)!,
    hidden, model, threads: int('threads', null), machine: (values.machine as string | undefined) ?? null,
    out: (values.out as string | undefined) ?? path.join(packageRoot, 'bench', 'results'), write: !values['no-write'],
  };
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;

function modelFor(cfg: Config, recipe: RecipeName, seed: number) {
  const r = createRecipe(recipe);
  const model = buildModel(cfg.model, {
    pattern: cfg.pattern, recipe: r, seed,
    ...(cfg.model === 'mlp' ? { hidden: cfg.hidden } : { channels: [cfg.hidden[0], cfg.hidden[1]] as [number, number], hidden: cfg.hidden[2] }),
  });
  return { model, recipe: r };
}

/** Per-step phase times (ms, median of `steps` steps after a warm-up), with the Trainer's hook order. */
function stepBreakdown(cfg: Config, recipe: RecipeName, train: ReturnType<typeof mnistSplit>['train'], steps = 30): TrainBenchResult['step'] {
  const { model, recipe: r } = modelFor(cfg, recipe, 1);
  r.plan(steps + 5);
  model.requiresInputGrad = false;
  const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 5e-5 });
  const loss = new SoftmaxCrossEntropy();
  const sw = sparseWeights(model).map(({ s }) => s);
  const t = { forward: [] as number[], loss: [] as number[], backward: [] as number[], update: [] as number[] };
  let step = 0;
  for (const b of new Batches(train, cfg.batch, { seed: 2 }).epoch(0)) {
    if (step === steps + 5) break;
    r.setStep(step);
    const t0 = performance.now();
    const logits = model.forward(b.x);
    const t1 = performance.now();
    loss.forward(logits, b.labels);
    const d = loss.backward();
    const t2 = performance.now();
    model.backward(d);
    const t3 = performance.now();
    opt.step();
    for (const s of sw) s.afterUpdate();
    const t4 = performance.now();
    if (step >= 5) {
      t.forward.push(t1 - t0);
      t.loss.push(t2 - t1);
      t.backward.push(t3 - t2);
      t.update.push(t4 - t3);
    }
    step++;
  }
  const out = { forward: round(median(t.forward)), loss: round(median(t.loss)), backward: round(median(t.backward)), update: round(median(t.update)), total: 0 };
  out.total = round(out.forward + out.loss + out.backward + out.update);
  return out;
}

async function benchRecipe(cfg: Config, recipe: RecipeName, split: ReturnType<typeof mnistSplit>): Promise<TrainBenchResult> {
  const { model } = modelFor(cfg, recipe, 0);
  const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 5e-5 });
  const trainer = new Trainer({ model, optimizer: opt, schedule: warmupCosine({ lr: 0.1, warmup: 0.05 }), epochs: cfg.epochs, batchSize: cfg.batch });
  const { history, final } = await trainer.fit(split.train, split.test);
  const secs = history.map((h) => h.seconds);
  const timed = secs.length > 1 ? secs.slice(1) : secs;
  const med = median(timed);
  return {
    recipe, pattern: cfg.pattern, epochSeconds: secs.map((s) => round(s)), firstEpoch: round(secs[0]), medianEpoch: round(med), bestEpoch: round(Math.min(...timed)),
    imagesPerSecond: Math.round(split.train.count / med), gflops: round(history[0].flops / 1e9 / med, 1), testAccuracy: final.testAccuracy,
    step: stepBreakdown(cfg, recipe, split.train),
  };
}

function textTable(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r, j) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ') + (j === 0 ? '\n' + w.map((n) => '-'.repeat(n)).join('  ') : '')).join('\n');
}

function rowsOf(results: TrainBenchResult[]): string[][] {
  return [
    ['recipe', 'pattern', 'epoch s (median)', 'best', 'first', 'img/s', 'GFLOP/s', 'test %', 'ms/step: fwd', 'loss', 'bwd', 'update', 'total'],
    ...results.map((r) => [
      r.recipe, r.recipe === 'dense' ? '-' : r.pattern, r.medianEpoch.toFixed(3), r.bestEpoch.toFixed(3), r.firstEpoch.toFixed(3), String(r.imagesPerSecond),
      r.gflops.toFixed(1), (100 * r.testAccuracy).toFixed(2), r.step.forward.toFixed(2), r.step.loss.toFixed(2), r.step.backward.toFixed(2), r.step.update.toFixed(2), r.step.total.toFixed(2),
    ]),
  ];
}

function markdown(doc: { date: string; machine: MachineInfo; config: Partial<Config>; results: TrainBenchResult[]; loadavgAfter: number[] }): string {
  const m = doc.machine, c = doc.config;
  const rows = rowsOf(doc.results);
  const srste = doc.results.find((r) => r.recipe === 'srste');
  return [
    `# Training epoch time — ${m.name}`,
    '',
    `${m.cpu}, ${m.cores} cores, ${m.threads} threads, kernels ${m.cpuIsa.active}; Node ${m.node}; nmsparse ${m.nmsparse}; ${doc.date.slice(0, 10)}; ` +
      `load average ${m.loadavg.join(' ')} before, ${doc.loadavgAfter.join(' ')} after.`,
    '',
    `MNIST ${c.model} (${c.hidden?.join('-')} hidden), 8,000 training images per epoch, batch ${c.batch}, SGD Nesterov 0.9; ${c.epochs} epochs per recipe.`,
    'Epoch time: the training steps of an epoch (evaluation excluded); median and best of the epochs after the first (which allocates the buffers).',
    'GFLOP/s: training FLOPs of the products (sparse forward counted N/M of dense) over the median epoch time.',
    '',
    `| ${rows[0].join(' | ')} |`,
    `|${rows[0].map(() => '---').join('|')}|`,
    ...rows.slice(1).map((r) => `| ${r.join(' | ')} |`),
    '',
    ...(srste && c.model === 'mlp' && c.hidden?.join(',') === '1024,1024'
      ? [`Target (784-1024-1024-10, SR-STE, one epoch ≤ 2 s on 2 cores): median ${srste.medianEpoch.toFixed(2)} s — ${srste.medianEpoch <= 2 ? 'met' : 'not met'}.`, '']
      : []),
  ].join('\n');
}

export async function benchTrain(args: string[]): Promise<void> {
  const cfg = parse(args);
  if (cfg.threads !== null) native.setNumThreads(cfg.threads);
  if (cfg.machine) process.env.NMSPARSE_MACHINE = cfg.machine;
  const machine = machineInfo();
  const t0 = performance.now();
  const split = mnistSplit();
  process.stdout.write(`MNIST loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s; ${machine.cpu}, ${machine.threads} threads\n`);
  const results: TrainBenchResult[] = [];
  for (const r of cfg.recipes) {
    results.push(await benchRecipe(cfg, r, split));
    process.stdout.write(`${r}: median epoch ${results[results.length - 1].medianEpoch.toFixed(3)} s\n`);
  }
  const doc = { bench: 'train', date: new Date().toISOString(), machine, config: { ...cfg, out: undefined }, results, loadavgAfter: loadavg().map((x) => round(x, 2)) };
  process.stdout.write('\n' + textTable(rowsOf(results)) + '\n');
  if (cfg.write) {
    makeWritableDir(cfg.out, '--out');
    const base = path.join(cfg.out, `train-${machine.name}`);
    writeFileSync(base + '.json', JSON.stringify(doc, null, 2) + '\n');
    writeFileSync(base + '.md', markdown(doc));
    process.stdout.write(`wrote ${base}.json and .md\n`);
  }
}
