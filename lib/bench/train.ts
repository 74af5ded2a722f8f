/**
 * `nmsparse bench train`: what a training step costs on this machine, dense vs the sparse recipes, and where
 * the time goes. Two measurements in one process:
 *   - steps: every recipe × pattern gets its own model; their steps run interleaved (one step of each in turn, so
 *     clock and load drift hit them alike), each step timed by phase: forward products, input-gradient
 *     products, weight-gradient products, the mask/compress pass, the recipe's gradient terms, the optimizer, and
 *     the rest (activations, loss) — lib/nn/profile.ts;
 *   - epochs (unless --epochs 0): each configuration trains `--epochs` MNIST epochs through the Trainer (the loop
 *     of `nmsparse train`): median and best epoch, the first (which allocates the buffers) apart, test accuracy.
 * --model transformer times a character GPT on the Brown corpus instead (--hidden layers,d,heads,context, default
 * 4,128,4,128; --batch windows, default 32; AdamW as `nmsparse train` trains it): its rate is tokens per second,
 * an epoch is --steps steps of random windows, its accuracy next-character accuracy on 8,192 validation characters.
 * Sparse runs use the N:M kernels in the step (recipe option sparseKernels); `--dense-kernels` adds each sparse
 * configuration again on the dense-masked path for comparison; `--transposable` adds each sparse recipe at 2:4 with
 * mask 'transposable' (its Wᵀ is 2:4 too). Writes <out>/train-<machine>-<model>-<hidden>-b<batch>
 * .json and .md (<out>: --out, else ./bench-results; with --device cuda, <machine> is the GPU's name and -cuda).
 * --device cuda trains on the GPU; each phase is then bracketed by a device synchronize, so it is GPU time, and the
 * step total includes those waits. --precision bfloat16|float16 runs every configuration's products in that dtype
 * (lib/nn/amp.ts: float32 weights and optimizer, float16 with loss scaling; on 'cuda' 2:4 then runs through
 * cuSPARSELt); the files get a -<precision> suffix. The H100/H200 target of issue 12: --device cuda --hidden
 * 8192,8192 --batch 8192 (8192 tokens a step) --epochs 0 --precision bfloat16 (and float16).
 *
 *   nmsparse bench train [--recipes dense,ste,srste] [--patterns 2:4] [--epochs 3] [--steps 20] [--batch 128]
 *                        [--hidden 1024,1024] [--model mlp|cnn|transformer] [--device cpu|cuda] [--dense-kernels]
 *                        [--precision float32|bfloat16|float16]
 *                        [--transposable] [--threads N] [--machine NAME] [--torch] [--out DIR] [--no-write]
 * --torch also times PyTorch (python3 with torch) on the same MLP step: a peer, not a dependency.
 */
import { writeFileSync } from 'node:fs';
import { makeWritableDir } from '../io/dir.js';
import { loadavg } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../cli/usage.js';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { native, packageRoot } from '../native.js';
import { mnistSplit, Batches, type Dataset } from '../data/mnist.js';
import { TextBatches, TextWindows, brownCorpus, type TextCorpus } from '../data/brown.js';
import { buildModel, gpt, type ModelName } from '../nn/models.js';
import type { Module } from '../nn/module.js';
import { AdamW } from '../optim/adamw.js';
import { SoftmaxCrossEntropy } from '../nn/loss.js';
import { autocast, GradScaler, PRECISIONS, type Precision } from '../nn/amp.js';
import { SGD } from '../optim/sgd.js';
import { warmupCosine } from '../optim/schedule.js';
import { createRecipe, RECIPE_NAMES, type MaskKind, type RecipeName } from '../recipes/index.js';
import { Trainer, sparseWeights, type BatchSource } from '../train/trainer.js';
import { recordPhases, type StepPhase } from '../nn/profile.js';
import { defaultResultsDir, machineInfo, slug, type MachineInfo } from './machine.js';
import { backendFor, type Device } from '../device.js';
import { cudaProbe, synchronize } from '../cuda.js';
import type { Tensor } from '../tensor.js';

interface Config {
  recipes: RecipeName[];
  patterns: string[];
  epochs: number;
  steps: number;
  batch: number;
  hidden: number[];
  model: ModelName;
  device: Device;
  precision: Precision;
  denseKernels: boolean;
  transposable: boolean;
  torch: boolean;
  threads: number | null;
  machine: string | null;
  out: string;
  write: boolean;
}

/** One configuration: a recipe, its pattern and mask kind, and whether its sparse forward runs the N:M kernels. */
interface Run {
  recipe: RecipeName;
  pattern: string;
  mask: MaskKind;
  kernels: 'nm' | 'dense';
}

/**
 * Milliseconds per step by phase (median over the timed steps; total is the median step, not the sum), and
 * `inference`: one forward pass of the same batch in eval mode after those steps (median).
 */
export type StepTimes = Record<StepPhase | 'optimizer' | 'other' | 'total' | 'inference', number>;

export interface TrainBenchResult extends Run {
  /** Per-step phase times, and the step time relative to dense (dense / this: > 1 is faster). */
  step: StepTimes;
  speedup: number | null;
  /** Seconds of each epoch's training steps (evaluation excluded); empty with --epochs 0. */
  epochSeconds: number[];
  firstEpoch: number | null;
  medianEpoch: number | null;
  bestEpoch: number | null;
  imagesPerSecond: number | null;
  /** Training FLOPs of one epoch (products only; sparse forward at N/M) over the median epoch time. */
  gflops: number | null;
  testAccuracy: number | null;
}

function parse(args: string[]): Config {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args, strict: true, allowPositionals: false,
      options: {
        recipes: { type: 'string' }, patterns: { type: 'string' }, pattern: { type: 'string' }, epochs: { type: 'string' },
        steps: { type: 'string' }, batch: { type: 'string' }, hidden: { type: 'string' }, model: { type: 'string' }, device: { type: 'string' },
        precision: { type: 'string' },
        'dense-kernels': { type: 'boolean' }, transposable: { type: 'boolean' }, torch: { type: 'boolean' }, threads: { type: 'string' }, machine: { type: 'string' },
        out: { type: 'string' }, 'no-write': { type: 'boolean' },
      },
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]} (see nmsparse bench train --help)`);
  }
  const int = (k: string, d: number, min = 1): number => {
    const v = values[k] as string | undefined;
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${k}: got ${JSON.stringify(v)}, expected an integer >= ${min}`);
    return n;
  };
  const recipes = ((values.recipes as string | undefined) ?? 'dense,ste,srste').split(',').map((r) => r.trim());
  for (const r of recipes)
    if (!RECIPE_NAMES.includes(r as RecipeName)) throw new UsageError(`--recipes: got ${JSON.stringify(r)}, expected one of ${RECIPE_NAMES.join(', ')}`);
  const model = (values.model as string | undefined) ?? 'mlp';
  if (model !== 'mlp' && model !== 'cnn' && model !== 'transformer') throw new UsageError(`--model: got ${JSON.stringify(model)}, expected mlp, cnn or transformer`);
  const hidden = ((values.hidden as string | undefined) ?? { mlp: '1024,1024', cnn: '16,32,128', transformer: '4,128,4,128' }[model]).split(',').map(Number);
  if (hidden.some((h) => !Number.isSafeInteger(h) || h < 1)) throw new UsageError(`--hidden: got ${JSON.stringify(values.hidden)}, expected positive integers`);
  if (model === 'transformer' && (hidden.length !== 4 || hidden[1] % hidden[2] !== 0))
    throw new UsageError(`--hidden: got ${JSON.stringify(values.hidden)}, expected layers,d,heads,context for the transformer (d a multiple of heads)`);
  const patterns = ((values.patterns as string | undefined) ?? (values.pattern as string | undefined) ?? '2:4').split(',').map((p) => p.trim());
  const threads = values.threads === undefined ? null : int('threads', 1);
  const device = (values.device as string | undefined) ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw new UsageError(`--device: got ${JSON.stringify(device)}, expected cpu or cuda`);
  if (device === 'cuda' && values.torch) throw new UsageError('--torch: the PyTorch peer runs on the CPU; leave it out with --device cuda');
  const precision = (values.precision as string | undefined) ?? 'float32';
  if (!PRECISIONS.includes(precision as Precision)) throw new UsageError(`--precision: got ${JSON.stringify(precision)}, expected ${PRECISIONS.join(', ')}`);
  if (precision !== 'float32' && model === 'transformer')
    throw new UsageError(`--precision: got ${precision}, expected float32 for --model transformer (CausalSelfAttention's kernels are float32 only)`);
  if (precision !== 'float32' && values.torch) throw new UsageError('--torch: the PyTorch peer times float32; leave it out with --precision');
  return {
    recipes: recipes as RecipeName[], patterns, epochs: int('epochs', 3, 0), steps: int('steps', 20), batch: int('batch', model === 'transformer' ? 32 : 128),
    hidden, model, device, precision: precision as Precision, denseKernels: !!values['dense-kernels'], transposable: !!values.transposable, torch: !!values.torch, threads, machine: (values.machine as string | undefined) ?? null,
    out: (values.out as string | undefined) ?? defaultResultsDir(), write: !values['no-write'],
  };
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;

function runsOf(cfg: Config): Run[] {
  const runs: Run[] = [];
  for (const recipe of cfg.recipes) {
    if (recipe === 'dense') { runs.push({ recipe, pattern: '-', mask: 'rowwise', kernels: 'dense' }); continue; }
    for (const pattern of cfg.patterns) {
      const masks: MaskKind[] = cfg.transposable && pattern === '2:4' ? ['rowwise', 'transposable'] : ['rowwise'];
      for (const mask of masks) {
        runs.push({ recipe, pattern, mask, kernels: 'nm' });
        if (cfg.denseKernels) runs.push({ recipe, pattern, mask, kernels: 'dense' });
      }
    }
  }
  return runs;
}

function modelFor(cfg: Config, run: Run, seed: number) {
  const r = createRecipe(run.recipe, { sparseKernels: run.kernels === 'nm', mask: run.mask });
  const common = { pattern: run.pattern === '-' ? cfg.patterns[0] : run.pattern, recipe: r, seed };
  const [layers, dModel, heads, context] = cfg.hidden;
  const model = cfg.model === 'transformer' ? gpt({ ...common, vocabSize: corpus().vocab.size, layers, dModel, heads, context })
    : buildModel(cfg.model, { ...common, ...(cfg.model === 'mlp' ? { hidden: cfg.hidden } : { channels: [cfg.hidden[0], cfg.hidden[1]] as [number, number], hidden: cfg.hidden[2] }) });
  if (cfg.device !== 'cpu') model.to(cfg.device);
  return { model, recipe: r };
}

let corpusCache: TextCorpus | null = null;
const corpus = (): TextCorpus => (corpusCache ??= brownCorpus());

/** The optimizer a model trains with: AdamW (lr 1e-3) as `nmsparse train --model transformer`, else SGD (lr `sgdLr`, Nesterov). */
function optimizerFor(cfg: Config, model: Module, sgdLr: number) {
  return cfg.model === 'transformer' ? new AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0.1, betas: [0.9, 0.99] })
    : new SGD(model.parameters(), { lr: sgdLr, momentum: 0.9, nesterov: true, weightDecay: 5e-5 });
}

/** Training batches: MNIST's shuffled images, or the corpus' random windows (steps of them an epoch). */
function trainBatches(cfg: Config, train: Dataset | null, seed: number, steps: number): BatchSource {
  return cfg.model === 'transformer' ? new TextBatches(corpus().train, { context: cfg.hidden[3], batchSize: cfg.batch, steps, seed })
    : new Batches(train!, cfg.batch, { seed });
}

const PHASES: (keyof StepTimes)[] = ['forward', 'inputGrad', 'weightGrad', 'mask', 'recipe', 'optimizer', 'other', 'total'];

/** Phase times of every run, its steps interleaved with the other runs' (2 warm-up steps each, then cfg.steps). */
function stepBreakdown(cfg: Config, runs: Run[], train: Dataset | null): StepTimes[] {
  const warm = 2;
  const states = runs.map((run) => {
    const { model, recipe } = modelFor(cfg, run, 1);
    recipe.plan(cfg.steps + warm);
    model.requiresInputGrad = false;
    return {
      model, recipe, sw: sparseWeights(model).map(({ s }) => s),
      opt: optimizerFor(cfg, model, 0.05), scaler: cfg.precision === 'float16' ? new GradScaler() : null,
      loss: new SoftmaxCrossEntropy(), samples: [] as Record<string, number>[],
    };
  });
  const onDevice = (x: Tensor): Tensor => (cfg.device === 'cpu' ? x : x.to(cfg.device));
  const batches = [...trainBatches(cfg, train, 2, 1).epoch(0)].map((b) => ({ x: onDevice(b.x), labels: b.labels }));
  const sync = cfg.device === 'cuda' ? synchronize : null;
  for (let step = 0; step < cfg.steps + warm; step++) {
    const b = batches[step % batches.length];
    for (const st of states) {
      const rec: Partial<Record<StepPhase, number>> = {};
      recordPhases(rec, sync);
      st.recipe.setStep(step);
      sync?.();
      const t0 = performance.now();
      const scaler = st.scaler;
      autocast(cfg.precision, () => {
        st.loss.forward(st.model.forward(b.x), b.labels);
        st.model.backward(st.loss.backward(scaler?.scale ?? 1));
      });
      sync?.();
      const t1 = performance.now();
      if (scaler) scaler.step(st.opt);
      else st.opt.step();
      sync?.();
      const t2 = performance.now();
      for (const s of st.sw) s.afterUpdate();
      sync?.();
      const t3 = performance.now();
      recordPhases(null);
      if (step < warm) continue;
      const sample: Record<string, number> = { optimizer: t2 - t1, total: t3 - t0 };
      for (const ph of ['forward', 'inputGrad', 'weightGrad', 'mask', 'recipe'] as StepPhase[]) sample[ph] = rec[ph] ?? 0;
      sample.other = sample.total - PHASES.slice(0, 6).reduce((a, k) => a + sample[k], 0);
      st.samples.push(sample);
    }
  }
  // Inference: the forward pass alone in eval mode (the trained N:M weights as the recipe deploys them), interleaved.
  const infer = states.map(() => [] as number[]);
  for (let step = 0; step < cfg.steps + warm; step++) {
    const b = batches[step % batches.length];
    states.forEach((st, i) => {
      st.model.eval();
      sync?.();
      const t0 = performance.now();
      autocast(cfg.precision, () => st.model.forward(b.x));
      sync?.();
      if (step >= warm) infer[i].push(performance.now() - t0);
      st.model.train();
    });
  }
  return states.map((st, i) => ({
    ...Object.fromEntries(PHASES.map((k) => [k, round(median(st.samples.map((x) => x[k])))])), inference: round(median(infer[i])),
  }) as StepTimes);
}

async function epochs(cfg: Config, run: Run, split: ReturnType<typeof mnistSplit> | null) {
  const { model } = modelFor(cfg, run, 0);
  const opt = optimizerFor(cfg, model, 0.1);
  const lm = cfg.model === 'transformer';
  const trainer = new Trainer({
    model, optimizer: opt, schedule: warmupCosine({ lr: opt.lr, warmup: 0.05 }), epochs: cfg.epochs, batchSize: cfg.batch, device: cfg.device,
    precision: cfg.precision,
    ...(lm ? { clipGradNorm: 1 } : {}),
  });
  const { history, final } = lm
    ? await trainer.fit(trainBatches(cfg, null, 0, cfg.steps), new TextWindows(corpus().validation, { context: cfg.hidden[3], batchSize: 64, limit: 8192 }))
    : await trainer.fit(split!.train, split!.test);
  const perEpoch = lm ? cfg.steps * cfg.batch * cfg.hidden[3] : split!.train.count;
  const secs = history.map((h) => h.seconds);
  const timed = secs.length > 1 ? secs.slice(1) : secs;
  const med = median(timed);
  return {
    epochSeconds: secs.map((x) => round(x)), firstEpoch: round(secs[0]), medianEpoch: round(med), bestEpoch: round(Math.min(...timed)),
    imagesPerSecond: Math.round(perEpoch / med), gflops: round(history[0].flops / 1e9 / med, 1), testAccuracy: final.testAccuracy,
  };
}

function textTable(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r, j) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ') + (j === 0 ? '\n' + w.map((n) => '-'.repeat(n)).join('  ') : '')).join('\n');
}

const label = (r: Run): string => (r.recipe === 'dense' ? 'dense'
  : `${r.recipe} ${r.pattern}${r.mask === 'transposable' ? ' transposable' : ''}${r.kernels === 'dense' ? ' (dense-masked)' : ''}`);
const fmt = (x: number | null, d: number): string => (x === null ? '-' : x.toFixed(d));

/** A transformer step's tokens (its rates are tokens per second), or null for the MNIST models. */
const tokensPerStep = (c: Partial<Config>): number | null => (c.model === 'transformer' ? c.batch! * c.hidden![3] : null);

function stepRows(results: TrainBenchResult[], c: Partial<Config>): string[][] {
  const tokens = tokensPerStep(c);
  return [
    ['run', 'fwd', 'dX', 'dW', 'mask', 'recipe', 'optim', 'other', 'step ms', 'vs dense', ...(tokens ? ['tok/s'] : []), 'infer ms', ...(tokens ? ['infer tok/s'] : [])],
    ...results.map((r) => [label(r), ...PHASES.map((k) => r.step[k].toFixed(2)), r.speedup === null ? '-' : `${r.speedup.toFixed(2)}×`,
      ...(tokens ? [String(Math.round(tokens / (r.step.total / 1000)))] : []), r.step.inference.toFixed(2),
      ...(tokens ? [String(Math.round(tokens / (r.step.inference / 1000)))] : [])]),
  ];
}
function epochRows(results: TrainBenchResult[], c: Partial<Config>): string[][] {
  const lm = c.model === 'transformer';
  return [
    ['run', 'epoch s (median)', 'best', 'first', lm ? 'tok/s' : 'img/s', 'GFLOP/s', lm ? 'val next-char %' : 'test %'],
    ...results.map((r) => [label(r), fmt(r.medianEpoch, 3), fmt(r.bestEpoch, 3), fmt(r.firstEpoch, 3), r.imagesPerSecond === null ? '-' : String(r.imagesPerSecond),
      fmt(r.gflops, 1), r.testAccuracy === null ? '-' : (100 * r.testAccuracy).toFixed(2)]),
  ];
}
const md = (rows: string[][]): string[] => [`| ${rows[0].join(' | ')} |`, `|${rows[0].map(() => '---').join('|')}|`, ...rows.slice(1).map((r) => `| ${r.join(' | ')} |`)];

function markdown(doc: { date: string; machine: MachineInfo; gpu: string | null; config: Partial<Config>; results: TrainBenchResult[]; torch: TorchPeer | null; loadavgAfter: number[] }): string {
  const m = doc.machine, c = doc.config;
  const lm = c.model === 'transformer';
  const dims = c.model === 'mlp' ? `784-${c.hidden?.join('-')}-10` : lm ? `${c.hidden?.[0]} layers, d ${c.hidden?.[1]}, ${c.hidden?.[2]} heads, context ${c.hidden?.[3]}`
    : `channels ${c.hidden?.slice(0, 2).join(', ')}, hidden ${c.hidden?.[2]}`;
  return [
    `# Training step time — ${m.name}${doc.gpu ? ` — ${doc.gpu} (cuda)` : ''}`,
    '',
    `${m.cpu}${m.cpuId ? ` (${m.cpuId})` : ''}, ${m.cores} cores, ${m.threads} threads, kernels ${m.cpuIsa.active}; Node ${m.node}; nmsparse ${m.nmsparse}; ${doc.date.slice(0, 10)}; ` +
      `load average ${m.loadavg.join(' ')} before, ${doc.loadavgAfter.join(' ')} after.`,
    '',
    ...(doc.gpu ? [`Trained on ${doc.gpu} ('cuda'); every phase is bracketed by a device ` +
      'synchronize, so phases are GPU time and the step total includes those waits.', ''] : []),
    ...(c.precision && c.precision !== 'float32' ? [`Products in ${c.precision} (16-bit operands and results, float32 sums; float32 weights, gradients and ` +
      `optimizer${c.precision === 'float16' ? '; dynamic loss scaling' : ''}).`, ''] : []),
    `${lm ? `Character GPT on the Brown corpus, ${dims}, batch ${c.batch} windows (${tokensPerStep(c)} tokens a step), AdamW, gradient clipping 1` : `MNIST ${c.model} ${dims}, batch ${c.batch}, SGD Nesterov 0.9`}. Steps: ${c.steps} per run after 2 warm-up steps, the runs interleaved step by step; ` +
      'milliseconds, median per phase: fwd / dX / dW = the forward, input-gradient and weight-gradient products of every layer; mask = the recipe\'s ' +
      'mask / compress pass; recipe = its gradient terms and post-update hooks; other = activations, loss, bookkeeping. vs dense = dense step / this step. ' +
      'infer = one forward pass of the same batch in eval mode after the steps (the N:M weights as the recipe deploys them), interleaved likewise.',
    '',
    ...md(stepRows(doc.results, c)),
    '',
    ...torchLines(doc.torch, doc.results),
    ...(c.epochs ? [
      `Epochs: ${c.epochs} per run through the Trainer (${lm ? `${c.steps} steps of ${tokensPerStep(c)} tokens` : '8,000 training images'}), one run after the other; the median and best exclude the first epoch (which allocates the buffers). ` +
        'GFLOP/s: training FLOPs of the products (sparse forward counted N/M of dense) over the median epoch.',
      '',
      ...md(epochRows(doc.results, c)),
      '',
    ] : []),
  ].join('\n');
}

/** PyTorch's step on the same MLP (bench/peers/torch_train_step.py), or why there is none. */
interface TorchPeer { torch?: string; threads?: number; dense?: number; srste24?: number; error?: string }

function torchPeer(cfg: Config): TorchPeer {
  const script = path.join(packageRoot, 'bench', 'peers', 'torch_train_step.py');
  if (cfg.model !== 'mlp') return { error: 'the PyTorch peer runs the MLP only' };
  if (!existsSync(script)) return { error: `${script} is not here (it ships with the repository, not the npm package)` };
  const threads = String(native.numThreads());
  const r = spawnSync(process.env.PYTHON ?? 'python3', [script, cfg.hidden.join(','), String(cfg.batch), String(cfg.steps), threads], {
    env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' }, encoding: 'utf8', timeout: 600_000,
  });
  if (r.status !== 0) return { error: `python3 ${path.basename(script)}: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}` };
  return JSON.parse(r.stdout) as TorchPeer;
}

function torchLines(peer: TorchPeer | null, results: TrainBenchResult[]): string[] {
  if (!peer) return [];
  if (peer.error) return [`PyTorch peer: none (${peer.error}).`, ''];
  const ours = (recipe: string) => results.find((r) => r.recipe === recipe && (recipe === 'dense' || (r.pattern === '2:4' && r.mask === 'rowwise' && r.kernels === 'nm')));
  const d = ours('dense'), s = ours('srste');
  const ratio = (a: number | undefined, b: TrainBenchResult | undefined) => (a && b ? `${(a / b.step.total).toFixed(2)}×` : '-');
  return [
    `PyTorch ${peer.torch} peer (bench/peers/torch_train_step.py, ${peer.threads} threads, OMP_WAIT_POLICY=PASSIVE, run after ours in a child ` +
      `process, not interleaved): the same MLP and batch, dense ${peer.dense?.toFixed(2)} ms/step, SR-STE 2:4 the way PyTorch runs it on a CPU ` +
      `(mask from |W| every step, W ⊙ m multiplied densely) ${peer.srste24?.toFixed(2)} ms/step. PyTorch step / ours: dense ${ratio(peer.dense, d)}, ` +
      `SR-STE 2:4 ${ratio(peer.srste24, s)}.`,
    '',
  ];
}

export async function benchTrain(args: string[]): Promise<void> {
  const cfg = parse(args);
  if (cfg.threads !== null) native.setNumThreads(cfg.threads);
  if (cfg.machine) process.env.NMSPARSE_MACHINE = cfg.machine;
  const machine = machineInfo();
  if (cfg.device !== 'cpu') backendFor(cfg.device, '--device');
  const gpu = cfg.device === 'cuda' ? (cudaProbe()?.device?.name ?? 'cuda') : null;
  const t0 = performance.now();
  const split = cfg.model === 'transformer' ? null : mnistSplit();
  if (!split) corpus();
  process.stdout.write(`${split ? 'MNIST' : 'Brown corpus'} loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s; ${gpu ?? `${machine.cpu}, ${machine.threads} threads`}\n`);
  const runs = runsOf(cfg);
  const steps = stepBreakdown(cfg, runs, split?.train ?? null);
  const dense = runs.findIndex((r) => r.recipe === 'dense');
  const results: TrainBenchResult[] = [];
  for (const [i, run] of runs.entries()) {
    const e = cfg.epochs ? await epochs(cfg, run, split) : null;
    results.push({
      ...run, step: steps[i], speedup: dense >= 0 ? round(steps[dense].total / steps[i].total) : null,
      epochSeconds: e?.epochSeconds ?? [], firstEpoch: e?.firstEpoch ?? null, medianEpoch: e?.medianEpoch ?? null, bestEpoch: e?.bestEpoch ?? null,
      imagesPerSecond: e?.imagesPerSecond ?? null, gflops: e?.gflops ?? null, testAccuracy: e?.testAccuracy ?? null,
    });
    if (e) process.stdout.write(`${label(run)}: median epoch ${e.medianEpoch.toFixed(3)} s\n`);
  }
  const torch = cfg.torch ? torchPeer(cfg) : null;
  const doc = { bench: 'train', date: new Date().toISOString(), machine, gpu, config: { ...cfg, out: undefined }, results, torch, loadavgAfter: loadavg().map((x) => round(x, 2)) };
  process.stdout.write('\n' + textTable(stepRows(results, cfg)) + '\n');
  if (cfg.epochs) process.stdout.write('\n' + textTable(epochRows(results, cfg)) + '\n');
  if (torch) process.stdout.write('\n' + torchLines(torch, results).join('\n'));
  if (cfg.write) {
    makeWritableDir(cfg.out, '--out');
    const base = path.join(cfg.out, `train-${gpu ? `${slug(gpu)}-cuda` : machine.name}-${cfg.model}-${cfg.hidden.join('-')}-b${cfg.batch}${cfg.precision === 'float32' ? '' : `-${cfg.precision}`}`);
    writeFileSync(base + '.json', JSON.stringify(doc, null, 2) + '\n');
    writeFileSync(base + '.md', markdown(doc));
    process.stdout.write(`wrote ${base}.json and .md\n`);
  }
}
