/**
 * One training run from a plain configuration (what `nmsparse train` and `nmsparse compare` run): MNIST split,
 * model, recipe, optimizer, schedule, Trainer; optionally writes metrics.jsonl, plot.svg and checkpoint.safetensors.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { makeWritableDir } from '../io/dir.js';
import path from 'node:path';
import { NmSparseError } from '../errors.js';
import { parsePattern, patternString } from '../pattern.js';
import { backendFor, type Device } from '../device.js';
import { native } from '../native.js';
import { check } from '../mask.js';
import { MNIST_MEAN, MNIST_STD, mnistSplit, subset, type Dataset } from '../data/mnist.js';
import { buildModel, type ModelName } from '../nn/models.js';
import { createRecipe, type AnyRecipeOptions, type RecipeName } from '../recipes/index.js';
import { SGD } from '../optim/sgd.js';
import { AdamW } from '../optim/adamw.js';
import { constant, stepDecay, warmupCosine, type LrSchedule } from '../optim/schedule.js';
import { Trainer, type EpochRecord } from './trainer.js';
import { trainingPlot } from './plot.js';
import { saveCheckpoint } from './checkpoint.js';

export interface RunConfig {
  model: ModelName;
  recipe: RecipeName;
  pattern: string;
  epochs: number;
  seed: number;
  device?: Device;
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
  /** Layers kept dense (default: the classifier). */
  dense?: string[];
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

let splitCache: { train: Dataset; test: Dataset } | null = null;

export async function runTraining(c: RunConfig): Promise<RunResult> {
  const device = c.device ?? 'cpu';
  if (device !== 'cpu') {
    await import('../cuda.js');  // registers the backend, so that the error says why the GPU is unusable
    backendFor(device, '--device');
  }
  const pattern = parsePattern(c.pattern, '--pattern');
  const cfg = { ...RUN_DEFAULTS, ...stripUndefined(c), device, pattern: patternString(pattern) };
  const recipe = createRecipe(cfg.recipe, cfg.recipeOptions ?? {});
  if (cfg.out) makeWritableDir(cfg.out, '--out');
  const hidden = cfg.hidden;
  const model = buildModel(cfg.model, {
    pattern, recipe, seed: cfg.seed, dense: cfg.dense,
    ...(hidden ? (cfg.model === 'cnn' ? { channels: hidden as [number, number], hidden: hidden[2] } : { hidden }) : {}),
  });
  if (device !== 'cpu') model.to(device);
  splitCache ??= mnistSplit();
  const train = cfg.limit ? subset(splitCache.train, Int32Array.from({ length: Math.min(cfg.limit, splitCache.train.count) }, (_, i) => i)) : splitCache.train;
  const params = model.parameters();
  const optimizer = cfg.optimizer === 'adamw'
    ? new AdamW(params, { lr: cfg.lr, weightDecay: cfg.weightDecay })
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
    ...cfg, progress: undefined, onEpoch: undefined, recipeOptions: recipe.describe(), threads: native.numThreads() as number,
    parameters: params.reduce((a, p) => a + p.size, 0), layers: model.modules().filter((m) => m.parameters().length && m.children().length === 0).map((m) => m.describe()),
  };
  if (metrics) appendFileSync(metrics, JSON.stringify({ type: 'config', ...config }) + '\n');

  const trainer = new Trainer({
    model, optimizer, schedule, epochs: cfg.epochs, batchSize: cfg.batchSize, seed: cfg.seed, labelSmoothing: cfg.labelSmoothing,
    device, progress: c.progress ?? null,
    onEpoch: (r) => {
      if (metrics) appendFileSync(metrics, JSON.stringify({ type: 'epoch', ...r }) + '\n');
      c.onEpoch?.(r);
    },
  });
  const { history, final } = await trainer.fit(train, splitCache.test);
  const nmValid = trainer.sparseLayers.every(({ s }) => s.recipe.name === 'dense' || check(s.deployWeight(), s.pattern).ok);
  if (cfg.out) {
    writeFileSync(path.join(cfg.out, 'plot.svg'), trainingPlot(history, `${cfg.model} · ${cfg.recipe} · ${cfg.pattern} · seed ${cfg.seed}`));
    // mnistSplit() standardised the pixels: the checkpoint records it, so that serving applies it to raw pixels.
    saveCheckpoint(model, path.join(cfg.out, 'checkpoint'), { ...config, final: summaryOf(final) }, { input: { mean: MNIST_MEAN, std: MNIST_STD } });
  }
  return {
    config: config as RunResult['config'], history, final, nmValid,
    sparseLayers: trainer.sparseLayers.map((l) => l.name), parameters: config.parameters,
  };
}

/** The headline numbers of an epoch record. */
export function summaryOf(r: EpochRecord): Record<string, number | null> {
  return {
    epoch: r.epoch, trainLoss: r.trainLoss, testAccuracy: r.testAccuracy, sad: r.sad?.fraction ?? null,
    sadCumulative: r.sadCumulative?.fraction ?? null, flopsTotal: r.flopsTotal, seconds: r.seconds,
  };
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
