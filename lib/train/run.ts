/**
 * One training run from a plain configuration (what `nmsparse train` and `nmsparse compare` run): data, model,
 * recipe, optimizer, schedule, Trainer; optionally writes metrics.jsonl, plot.svg and checkpoint.safetensors.
 * The MNIST models train on the 8,000/2,000 split; the transformer is a character-level GPT on the Brown corpus
 * (lib/data/brown.ts): an epoch is `stepsPerEpoch` steps of random windows, evaluated on the first `evalTokens`
 * validation predictions, AdamW (β = 0.9, 0.99) with warm-up + cosine and the gradient norm clipped to 1, as
 * nanoGPT's character model. Its checkpoint's nmsparse.train metadata holds `gpt` (the GptOptions) and `vocab`
 * (the characters, lib/data/brown.ts CharVocab), what `nmsparse generate` rebuilds the model from.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { makeWritableDir } from '../io/dir.js';
import path from 'node:path';
import { NmSparseError, fail } from '../errors.js';
import { parsePattern, patternString } from '../pattern.js';
import { backendFor, type Device } from '../device.js';
import { native } from '../native.js';
import { check } from '../mask.js';
import { MNIST_MEAN, MNIST_STD, mnistSplit, subset, type Dataset } from '../data/mnist.js';
import { TextBatches, TextWindows, brownCorpus, type TextCorpus } from '../data/brown.js';
import { buildModel, gpt, type ModelName } from '../nn/models.js';
import type { Module } from '../nn/module.js';
import { createRecipe, type AnyRecipeOptions, type RecipeName } from '../recipes/index.js';
import { SGD } from '../optim/sgd.js';
import { AdamW } from '../optim/adamw.js';
import { constant, stepDecay, warmupCosine, type LrSchedule } from '../optim/schedule.js';
import { Trainer, type BatchSource, type EpochRecord } from './trainer.js';
import { checkPrecision, type Precision } from '../nn/amp.js';
import { lmTrainingPlot, trainingPlot } from './plot.js';
import { saveCheckpoint } from './checkpoint.js';

export interface RunConfig {
  model: ModelName;
  recipe: RecipeName;
  pattern: string;
  epochs: number;
  seed: number;
  device?: Device;
  /** The products' precision (TrainerOptions.precision; default 'float32'). */
  precision?: Precision;
  batchSize?: number;
  optimizer?: 'sgd' | 'adamw';
  lr?: number;
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
  schedule?: 'cosine' | 'step' | 'constant';
  /** Warm-up of the cosine schedule: a step count, or a fraction of the run when < 1. */
  warmup?: number;
  labelSmoothing?: number;
  /** MLP hidden widths, or the CNN's [conv1, conv2] channels. */
  hidden?: number[];
  /** Use only the first `limit` training digits of the split (quick runs). */
  limit?: number;
  /** Layers kept dense (default: the classifier; transformer: none). */
  dense?: string[];
  /** Transformer: the GPT's shape (defaults LM_DEFAULTS.gpt). */
  gpt?: Partial<LmShape>;
  /** Transformer: the corpus (only 'brown'). */
  data?: 'brown';
  /** Transformer: training steps per epoch (default LM_DEFAULTS.stepsPerEpoch). */
  stepsPerEpoch?: number;
  /** Transformer: validation predictions evaluated after each epoch (default LM_DEFAULTS.evalTokens; 0: all). */
  evalTokens?: number;
  /** Clip the global gradient norm (default: transformer 1, MNIST none). */
  clipGradNorm?: number;
  recipeOptions?: AnyRecipeOptions;
  /** Write metrics.jsonl, plot.svg and checkpoint.safetensors here. */
  out?: string;
  progress?: NodeJS.WriteStream | null;
  onEpoch?: (r: EpochRecord) => void;
}

export interface RunResult {
  config: Required<Pick<RunConfig, 'model' | 'recipe' | 'pattern' | 'epochs' | 'seed'>> & Record<string, unknown>;
  history: EpochRecord[];
  final: EpochRecord;
  /** Whether every sparse layer's deployed weight passes nm.check with the target pattern. */
  nmValid: boolean;
  sparseLayers: string[];
  parameters: number;
}

/** Defaults: SGD with Nesterov momentum 0.9, lr 0.1, warm-up 5% + cosine, weight decay 5e-5, batch 128. */
export const RUN_DEFAULTS = {
  batchSize: 128, optimizer: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 5e-5, schedule: 'cosine', warmup: 0.05,
  labelSmoothing: 0,
} as const;

/** A GPT's shape as `nmsparse train --model transformer` takes it. */
export interface LmShape {
  layers: number;
  dModel: number;
  heads: number;
  context: number;
  dropout: number;
}

/**
 * Transformer defaults, nanoGPT's character model scaled to a CPU run of a few minutes: 4 layers, d 128, 4 heads,
 * context 128, batch 16, AdamW lr 6e-3 with weight decay 0.1, 5% warm-up then cosine, clip 1, 333 steps an epoch
 * (3 epochs: 2.05 M training characters). Batch and lr from a sweep at 2 M characters (README): more, smaller
 * steps and a higher lr than nanoGPT's (batch 64, lr 1e-3) learn more per character in a run this short.
 */
export const LM_DEFAULTS = {
  batchSize: 16, optimizer: 'adamw', lr: 6e-3, weightDecay: 0.1, schedule: 'cosine', warmup: 0.05, clipGradNorm: 1,
  stepsPerEpoch: 333, evalTokens: 65536, data: 'brown',
  gpt: { layers: 4, dModel: 128, heads: 4, context: 128, dropout: 0 } as LmShape,
} as const;

/** The kind of a GPT's sparse layer for SAD: attention (c_attn, attn.c_proj) or MLP (c_fc, mlp.c_proj). */
export const gptLayerKind = (name: string): string | null =>
  /\.attn\.(c_attn|c_proj)\.weight$/.test(name) ? 'attention' : /\.mlp\.(c_fc|c_proj)\.weight$/.test(name) ? 'mlp' : null;

let splitCache: { train: Dataset; test: Dataset } | null = null;
let corpusCache: TextCorpus | null = null;

interface Task {
  model: Module;
  train: Dataset | BatchSource;
  test: Dataset | BatchSource;
  /** Added to the run's configuration (and the checkpoint's metadata). */
  meta: Record<string, unknown>;
}

function mnistTask(cfg: RunConfig & { batchSize: number }, pattern: ReturnType<typeof parsePattern>, recipe: ReturnType<typeof createRecipe>): Task {
  const hidden = cfg.hidden;
  const model = buildModel(cfg.model, {
    pattern, recipe, seed: cfg.seed, dense: cfg.dense,
    ...(hidden ? (cfg.model === 'cnn' ? { channels: hidden as [number, number], hidden: hidden[2] } : { hidden }) : {}),
  });
  splitCache ??= mnistSplit();
  const train = cfg.limit ? subset(splitCache.train, Int32Array.from({ length: Math.min(cfg.limit, splitCache.train.count) }, (_, i) => i)) : splitCache.train;
  return { model, train, test: splitCache.test, meta: {} };
}

function lmTask(cfg: RunConfig & { batchSize: number }, pattern: ReturnType<typeof parsePattern>, recipe: ReturnType<typeof createRecipe>): Task {
  const shape: LmShape = { ...LM_DEFAULTS.gpt, ...stripUndefined(cfg.gpt ?? {}) };
  corpusCache ??= brownCorpus();
  const c = corpusCache;
  const model = gpt({ vocabSize: c.vocab.size, ...shape, pattern, recipe, seed: cfg.seed, dense: cfg.dense });
  const steps = cfg.stepsPerEpoch ?? LM_DEFAULTS.stepsPerEpoch, evalTokens = cfg.evalTokens ?? LM_DEFAULTS.evalTokens;
  return {
    model,
    train: new TextBatches(c.train, { context: shape.context, batchSize: cfg.batchSize, steps, seed: cfg.seed }),
    test: new TextWindows(c.validation, { context: shape.context, batchSize: Math.max(1, Math.floor(8192 / shape.context)), limit: evalTokens || undefined }),
    meta: {
      gpt: { vocabSize: c.vocab.size, ...shape, tiedHead: true }, vocab: c.vocab.toString(), data: 'brown', stepsPerEpoch: steps, evalTokens,
      documents: c.documents,
    },
  };
}

export async function runTraining(c: RunConfig): Promise<RunResult> {
  const device = c.device ?? 'cpu';
  if (device !== 'cpu') {
    await import('../cuda.js');  // registers the backend, so that the error says why the GPU is unusable
    backendFor(device, '--device');
  }
  const pattern = parsePattern(c.pattern, '--pattern');
  const lm = c.model === 'transformer';
  const precision = checkPrecision(c.precision ?? 'float32', '--precision');
  if (lm && precision !== 'float32')
    fail('E_UNSUPPORTED', '--precision', precision, "'float32' for --model transformer (CausalSelfAttention's fused kernels are float32 only)");
  const cfg = { ...RUN_DEFAULTS, ...(lm ? { ...LM_DEFAULTS, gpt: undefined } : {}), ...stripUndefined(c), device, pattern: patternString(pattern) };
  // AdamW on an MNIST model without an lr: SGD's 0.1 would diverge; 1e-3 is AdamW's usual default.
  if (c.lr === undefined && !lm && cfg.optimizer === 'adamw') cfg.lr = 1e-3;
  const recipe = createRecipe(cfg.recipe, cfg.recipeOptions ?? {});
  if (cfg.out) makeWritableDir(cfg.out, '--out');
  const task = lm ? lmTask(cfg, pattern, recipe) : mnistTask(cfg, pattern, recipe);
  const { model } = task;
  if (device !== 'cpu') model.to(device);
  const params = model.parameters();
  const optimizer = cfg.optimizer === 'adamw'
    ? new AdamW(params, { lr: cfg.lr, weightDecay: cfg.weightDecay, ...(lm ? { betas: [0.9, 0.99] as [number, number] } : {}) })
    : new SGD(params, { lr: cfg.lr, momentum: cfg.momentum, nesterov: cfg.nesterov && cfg.momentum > 0, weightDecay: cfg.weightDecay });
  const schedule: LrSchedule = cfg.schedule === 'constant' ? constant({ lr: cfg.lr })
    : cfg.schedule === 'step' ? stepDecay({ lr: cfg.lr, stepSize: 1 / 3, gamma: 0.1 })
    : warmupCosine({ lr: cfg.lr, warmup: cfg.warmup });

  let metrics: string | null = null;
  if (cfg.out) {
    try {
      metrics = path.join(cfg.out, 'metrics.jsonl');
      writeFileSync(metrics, '');
    } catch (e) {
      throw new NmSparseError('E_IO', `--out: cannot write to ${cfg.out}: ${(e as Error).message}`, { cause: e });
    }
  }
  const config = {
    ...cfg, ...task.meta, progress: undefined, onEpoch: undefined, recipeOptions: recipe.describe(), threads: native.numThreads() as number,
    parameters: params.reduce((a, p) => a + p.size, 0), layers: model.modules().filter((m) => m.parameters().length && m.children().length === 0).map((m) => m.describe()),
  };
  if (metrics) appendFileSync(metrics, JSON.stringify({ type: 'config', ...config }) + '\n');

  const trainer = new Trainer({
    model, optimizer, schedule, epochs: cfg.epochs, batchSize: cfg.batchSize, seed: cfg.seed, labelSmoothing: cfg.labelSmoothing,
    clipGradNorm: cfg.clipGradNorm, device, precision, progress: c.progress ?? null,
    ...(lm ? { layerKind: gptLayerKind, unit: 'tok', progressMetric: 'bits' as const } : {}),
    onEpoch: (r) => {
      const bits = lm ? { trainBitsPerChar: r.trainLoss / Math.LN2, validationBitsPerChar: r.testLoss / Math.LN2 } : {};
      if (metrics) appendFileSync(metrics, JSON.stringify({ type: 'epoch', ...r, ...bits }) + '\n');
      c.onEpoch?.(r);
    },
  });
  const { history, final } = await trainer.fit(task.train, task.test);
  const nmValid = trainer.sparseLayers.every(({ s }) => s.recipe.name === 'dense' || check(s.deployWeight(), s.pattern).ok);
  if (cfg.out) {
    writeFileSync(path.join(cfg.out, 'plot.svg'), (lm ? lmTrainingPlot : trainingPlot)(history, `${cfg.model} · ${cfg.recipe} · ${cfg.pattern} · seed ${cfg.seed}`));
    // mnistSplit() standardised the pixels: an MNIST checkpoint records it, so that serving applies it to raw pixels.
    saveCheckpoint(model, path.join(cfg.out, 'checkpoint'), { ...config, final: summaryOf(final) }, lm ? {} : { input: { mean: MNIST_MEAN, std: MNIST_STD } });
  }
  return {
    config: config as RunResult['config'], history, final, nmValid,
    sparseLayers: trainer.sparseLayers.map((l) => l.name), parameters: config.parameters,
  };
}

/** The headline numbers of an epoch record. */
export function summaryOf(r: EpochRecord): Record<string, number | null> {
  return {
    epoch: r.epoch, trainLoss: r.trainLoss, testLoss: r.testLoss, testAccuracy: r.testAccuracy, sad: r.sad?.fraction ?? null,
    sadCumulative: r.sadCumulative?.fraction ?? null, flopsTotal: r.flopsTotal, seconds: r.seconds,
  };
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
