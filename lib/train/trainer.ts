/**
 * The training loop (docs/design.md §7): epochs of shuffled mini-batches, softmax cross-entropy, an optimizer and a
 * learning-rate schedule; the recipes of the sparse layers see every step. Per epoch it records loss and
 * accuracy (train and test), SAD, training FLOPs and throughput.
 *
 * The data is an image Dataset (batched here) or any BatchSource: a language model's batches (lib/data/brown.ts)
 * hold B·T token predictions, labels -1 for padding, `size` the predictions that count. Loss and accuracy are
 * means over those predictions (next-token accuracy for a language model), throughput is predictions (images or
 * tokens) per second.
 *
 * SAD (docs/design.md §5) compares target-pattern masks of the dense weights, summed over the sparse layers:
 *   epoch       vs the mask at the end of the previous epoch (the initial weights' mask for epoch 1);
 *   cumulative  vs the first sparse mask (at the first step whose forward is sparse; for a recipe that is never
 *               sparse, such as dense, the initial mask: the drift its top-N structure would have had).
 * FLOPs count the products of Linear/Conv2d layers (2·MACs): a forward with a binary N:M mask counts N/M of the
 * dense forward; a dense forward, or a mask-decay forward while α > 0, counts in full; the backward pass counts
 * dense (dW, plus dX except for the first layer), since no backward product here uses the sparsity.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { fail } from '../errors.js';
import { sad } from '../mask.js';
import { backendFor, type Device } from '../device.js';
import type { Tensor } from '../tensor.js';
import type { Module } from '../nn/module.js';
import { SoftmaxCrossEntropy } from '../nn/loss.js';
import { autocast, checkPrecision, GradScaler, type GradScalerOptions, type Precision } from '../nn/amp.js';
import type { Optimizer } from '../optim/optimizer.js';
import type { LrSchedule } from '../optim/schedule.js';
import type { Recipe, SparseWeight } from '../recipes/recipe.js';
import { Batches, type Batch, type Dataset } from '../data/mnist.js';
import { Progress } from './progress.js';

/** Batches of one epoch: `length` per epoch; epoch(e) may reuse its buffers between batches. */
export interface BatchSource {
  readonly length: number;
  epoch(epoch?: number): Iterable<Batch>;
}

export interface TrainerOptions {
  model: Module;
  optimizer: Optimizer;
  schedule: LrSchedule;
  epochs: number;
  batchSize?: number;
  /** Seed of the batch order (default 0). */
  seed?: number;
  labelSmoothing?: number;
  /** Clip the global gradient norm to this value (default: no clipping). */
  clipGradNorm?: number;
  /** Where the model's parameters live (default 'cpu'); batches are moved there. */
  device?: Device;
  /**
   * The products' precision (default 'float32'): 'bfloat16' or 'float16' runs forward and backward under
   * autocast (lib/nn/amp.ts; weights, gradients and optimizer state stay float32); 'float16' with loss scaling.
   */
  precision?: Precision;
  /** The loss scaling of a float16 run (GradScaler's options; default: torch.cuda.amp.GradScaler's). */
  gradScaler?: GradScalerOptions;
  /** Receives one record per epoch (JSON lines). */
  onEpoch?: (r: EpochRecord) => void;
  /** A progress bar on this stream (only drawn when it is a TTY). Default: none. */
  progress?: NodeJS.WriteStream | null;
  /** Batch size for evaluation of a Dataset (default 1000). */
  evalBatchSize?: number;
  /** Groups the sparse layers by kind for SAD (`attention`, `mlp`: EpochRecord.sadKinds); null leaves one out. */
  layerKind?: (name: string) => string | null;
  /** What a prediction is, for the progress bar's rate (default 'img': `img/s`). */
  unit?: string;
  /** What the progress bar shows beside the loss: accuracy (default) or bits per prediction (loss / ln 2). */
  progressMetric?: 'accuracy' | 'bits';
}

export interface SadStat {
  changed: number;
  total: number;
  fraction: number;
}

export interface EpochRecord {
  epoch: number;
  /** Steps completed so far. */
  steps: number;
  /** Learning rate of the last step. */
  lr: number;
  /** The recipe's phase at the epoch's last step. */
  phase: string;
  trainLoss: number;
  trainAccuracy: number;
  testLoss: number;
  testAccuracy: number;
  /** SAD vs the previous epoch's masks, and vs the first sparse masks (null before the sparse phase). */
  sad: SadStat | null;
  sadCumulative: SadStat | null;
  sadLayers: { name: string; epoch: SadStat; cumulative: SadStat | null }[];
  /** SAD summed per layer kind (TrainerOptions.layerKind), in order of first appearance; absent without one. */
  sadKinds?: { kind: string; epoch: SadStat; cumulative: SadStat | null }[];
  /** Training FLOPs of this epoch and of the run so far, and what they would be with every layer dense. */
  flops: number;
  flopsTotal: number;
  denseFlopsTotal: number;
  /** Wall time of the epoch's training steps (evaluation excluded), and training predictions (images, tokens) per second. */
  seconds: number;
  imagesPerSecond: number;
  /** float16 runs: the loss scale after the epoch and the steps skipped so far for a non-finite gradient. */
  lossScale?: number;
  skippedSteps?: number;
}

export interface TrainResult {
  history: EpochRecord[];
  final: EpochRecord;
}

interface Tracked {
  name: string;
  s: SparseWeight;
  initial: Tensor;
  prev: Tensor;
  first: Tensor | null;
}

/** The sparse layers of a model, named by parameter path (`fc1.weight`). */
export function sparseWeights(model: Module): { name: string; s: SparseWeight }[] {
  const out: { name: string; s: SparseWeight }[] = [];
  const visit = (m: Module, prefix: string) => {
    if (m.sparse) out.push({ name: `${prefix}${m.sparse.name}`, s: m.sparse });
    for (const [n, c] of m.namedChildren()) visit(c, `${prefix}${n}.`);
  };
  visit(model, '');
  return out;
}

function sum(stats: SadStat[]): SadStat {
  const changed = stats.reduce((a, s) => a + s.changed, 0), total = stats.reduce((a, s) => a + s.total, 0);
  return { changed, total, fraction: total ? changed / total : 0 };
}

/** SAD summed per kind of layer: a kind's cumulative SAD is null while one of its layers has none. */
function byKind(layers: { name: string; epoch: SadStat; cumulative: SadStat | null }[], kindOf: (name: string) => string | null) {
  const groups = new Map<string, typeof layers>();
  for (const l of layers) {
    const k = kindOf(l.name);
    if (k !== null) groups.set(k, [...(groups.get(k) ?? []), l]);
  }
  return [...groups].map(([kind, ls]) => ({
    kind, epoch: sum(ls.map((l) => l.epoch)), cumulative: ls.every((l) => l.cumulative) ? sum(ls.map((l) => l.cumulative!)) : null,
  }));
}

export class Trainer {
  readonly opts: TrainerOptions;
  readonly #loss: SoftmaxCrossEntropy;
  readonly #sparse: { name: string; s: SparseWeight }[];
  readonly #recipes: Recipe[];
  readonly #precision: Precision;
  /** The loss scaler of a float16 run, else null. */
  readonly scaler: GradScaler | null;

  constructor(opts: TrainerOptions) {
    if (!opts || typeof opts.model?.forward !== 'function') fail('E_TYPE', 'model', opts?.model, 'a Module');
    if (!Number.isSafeInteger(opts.epochs) || opts.epochs < 1) fail('E_VALUE', 'epochs', opts.epochs, 'an integer >= 1');
    if (typeof opts.schedule !== 'function') fail('E_TYPE', 'schedule', opts.schedule, 'a learning-rate schedule (step, total) => lr');
    if (opts.device && opts.device !== 'cpu') backendFor(opts.device, 'device');
    this.opts = opts;
    this.#loss = new SoftmaxCrossEntropy({ labelSmoothing: opts.labelSmoothing });
    this.#sparse = sparseWeights(opts.model);
    this.#recipes = [...new Set(this.#sparse.map(({ s }) => s.recipe))];
    this.#precision = checkPrecision(opts.precision ?? 'float32');
    this.scaler = this.#precision === 'float16' ? new GradScaler(opts.gradScaler) : null;
  }

  get sparseLayers(): { name: string; s: SparseWeight }[] { return this.#sparse; }

  /** Mean loss and accuracy over a dataset (or every batch of a source's epoch 0), in eval mode. */
  evaluate(ds: Dataset | BatchSource): { loss: number; accuracy: number } {
    const model = this.opts.model;
    const was = model.training;
    model.eval();
    let loss = 0, correct = 0, count = 0;
    for (const b of this.#source(ds, false).epoch(0)) {
      const r = this.#loss.forward(autocast(this.#precision, () => model.forward(this.#input(b.x))), b.labels);
      loss += r.loss * r.count;
      correct += r.correct;
      count += r.count;
    }
    model.train(was);
    return { loss: loss / count, accuracy: correct / count };
  }

  #source(ds: Dataset | BatchSource, train: boolean): BatchSource {
    if (typeof (ds as BatchSource)?.epoch === 'function') return ds as BatchSource;
    if (!(ds as Dataset)?.images) fail('E_TYPE', train ? 'train' : 'test', ds, 'a Dataset or a BatchSource');
    return train ? new Batches(ds as Dataset, this.opts.batchSize ?? 128, { shuffle: true, seed: this.opts.seed ?? 0 })
      : new Batches(ds as Dataset, this.opts.evalBatchSize ?? 1000, { shuffle: false });
  }

  #input(x: Tensor): Tensor {
    const d = this.opts.device ?? 'cpu';
    return d === 'cpu' ? x : x.to(d);
  }

  /** Trains on `train` (a Dataset is shuffled per epoch with `seed`), evaluating on `test` after every epoch. */
  async fit(train: Dataset | BatchSource, test: Dataset | BatchSource): Promise<TrainResult> {
    const { model, optimizer, schedule, epochs } = this.opts;
    const batches = this.#source(train, true);
    const total = epochs * batches.length;
    for (const r of this.#recipes) r.plan(total);
    model.train();
    model.requiresInputGrad = false;
    const tracked: Tracked[] = this.#sparse.map(({ name, s }) => {
      const m = s.targetMask();
      return { name, s, initial: m, prev: m.clone(), first: null };
    });
    const scratch = tracked.map(({ s }) => s.targetMask());
    const lead = this.#recipes[0];
    const history: EpochRecord[] = [];
    const progress = this.opts.progress ? new Progress(this.opts.progress, this.opts.unit) : null;
    const bits = this.opts.progressMetric === 'bits';
    let step = 0, flopsTotal = 0, denseTotal = 0;
    const flopModules = model.modules().filter((m) => m.parameters().length > 0);

    for (let epoch = 1; epoch <= epochs; epoch++) {
      let lossSum = 0, correct = 0, seen = 0, flops = 0, phase = 'dense';
      const t0 = performance.now();
      progress?.start(`epoch ${epoch}/${epochs}`, batches.length);
      for (const b of batches.epoch(epoch - 1)) {
        for (const r of this.#recipes) r.setStep(step);
        phase = lead ? lead.phase() : 'dense';
        if (tracked.length && !tracked[0].first && this.#recipes.some((r) => r.isSparse()))
          for (const t of tracked) t.first = t.s.targetMask();
        const seg = lead ? lead.lrSegment(step) : { step, total };
        optimizer.lr = schedule(seg.step, seg.total);

        const scaler = this.scaler;
        const r = autocast(this.#precision, () => {
          const logits = model.forward(this.#input(b.x));
          const loss = this.#loss.forward(logits, b.labels);
          model.backward(this.#loss.backward(scaler?.scale ?? 1));
          return loss;
        });
        if (scaler) scaler.step(optimizer, { clipGradNorm: this.opts.clipGradNorm });
        else {
          if (this.opts.clipGradNorm) optimizer.clipGradNorm(this.opts.clipGradNorm);
          optimizer.step();
        }
        for (const { s } of tracked) s.afterUpdate();

        for (const m of flopModules) {
          const f = m.lastForwardFlops;
          // The root's own products (a GPT's tied head) feed its children, so their input gradient is computed.
          const back = m.requiresInputGrad || (m === model && m.children().length > 0) ? 2 * f : f;
          flops += (m.sparse ? m.sparse.density : 1) * f + back;
          denseTotal += f + back;
        }
        lossSum += r.loss * r.count;
        correct += r.correct;
        seen += r.count;
        step++;
        progress?.tick(`loss ${(lossSum / seen).toFixed(4)} ${bits ? `${(lossSum / seen / Math.LN2).toFixed(3)} bits` : `acc ${((100 * correct) / seen).toFixed(1)}%`}`, seen / ((performance.now() - t0) / 1000));
        if (step % 4 === 0) await yieldToLoop();
      }
      const seconds = (performance.now() - t0) / 1000;
      flopsTotal += flops;
      for (const r of this.#recipes) r.setStep(step);
      const ev = this.evaluate(test);

      const layers = tracked.map((t, i) => {
        const cur = t.s.targetMask(scratch[i]);
        const e = sad(cur, t.prev);
        const base = t.first ?? (this.#recipes.every((r) => r.name === 'dense') ? t.initial : null);
        const c = base ? sad(cur, base) : null;
        [t.prev, scratch[i]] = [cur, t.prev]; // the current mask becomes the previous one; its old buffer the scratch
        return { name: t.name, epoch: e, cumulative: c };
      });
      const kinds = this.opts.layerKind ? byKind(layers, this.opts.layerKind) : undefined;
      const rec: EpochRecord = {
        epoch, steps: step, lr: optimizer.lr, phase,
        trainLoss: lossSum / seen, trainAccuracy: correct / seen, testLoss: ev.loss, testAccuracy: ev.accuracy,
        sad: layers.length ? sum(layers.map((l) => l.epoch)) : null,
        sadCumulative: layers.length && layers.every((l) => l.cumulative) ? sum(layers.map((l) => l.cumulative!)) : null,
        sadLayers: layers, ...(kinds ? { sadKinds: kinds } : {}), flops, flopsTotal, denseFlopsTotal: denseTotal, seconds, imagesPerSecond: seen / seconds,
        ...(this.scaler ? { lossScale: this.scaler.scale, skippedSteps: this.scaler.skipped } : {}),
      };
      progress?.done((bits ? `loss ${rec.trainLoss.toFixed(4)} validation ${rec.testLoss.toFixed(4)} (${(rec.testLoss / Math.LN2).toFixed(3)} bits) ${seconds.toFixed(2)} s`
        : `loss ${rec.trainLoss.toFixed(4)} train ${(100 * rec.trainAccuracy).toFixed(2)}% test ${(100 * rec.testAccuracy).toFixed(2)}% ${seconds.toFixed(2)} s`) +
        (this.scaler ? ` loss scale ${this.scaler.scale}, ${this.scaler.skipped} skipped` : ''));
      history.push(rec);
      this.opts.onEpoch?.(rec);
    }
    return { history, final: history[history.length - 1] };
  }
}
