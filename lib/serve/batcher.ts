/**
 * Dynamic batching: requests that wait run together as one batch.
 *
 * One batch runs at a time (the thread pool already uses every core for it). A request that finds the batcher
 * idle goes straight through, as a batch of its own, in the same tick: nothing is waiting to batch it with, and a
 * timer would only add its delay (setTimeout's ~1 ms at least) to every lone request. While a batch runs, new
 * requests queue up and go out together as the next batch the moment it finishes, so under load the batches
 * grow by themselves. `maxDelayMs` > 0 brings back the wait: the first request of an idle batcher then waits at
 * most that long for company (a batch starts at once when `maxBatch` rows are queued), trading latency for larger
 * batches. Requests are taken in arrival order and never split: a request of more than `maxBatch` rows runs as a
 * batch of its own.
 */
export type RunBatch = (x: Float32Array, rows: number) => Promise<Float32Array>;

interface Item {
  x: Float32Array;
  rows: number;
  resolve: (y: Float32Array) => void;
  reject: (e: unknown) => void;
}

export interface BatcherStats {
  batches: number;
  rows: number;
  requests: number;
  /** The largest batch run so far, in rows. */
  largestBatch: number;
}

export class Batcher {
  readonly stats: BatcherStats = { batches: 0, rows: 0, requests: 0, largestBatch: 0 };
  #queue: Item[] = [];
  #queuedRows = 0;
  #busy = false;
  #timer: NodeJS.Timeout | null = null;
  #idle: (() => void)[] = [];

  constructor(
    private readonly run: RunBatch,
    private readonly inFeatures: number,
    private readonly outFeatures: number,
    private readonly maxBatch: number,
    private readonly maxDelayMs: number,
  ) {}

  /** Rows `x` ([rows, inFeatures], row-major) → their outputs ([rows, outFeatures]). */
  submit(x: Float32Array, rows: number): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ x, rows, resolve, reject });
      this.#queuedRows += rows;
      this.stats.requests++;
      if (this.#busy) return; // the running batch flushes the queue when it ends
      if (this.maxDelayMs === 0 || this.#queuedRows >= this.maxBatch) this.#flush();
      else if (this.#timer === null) this.#timer = setTimeout(() => this.#flush(), this.maxDelayMs);
    });
  }

  /** Requests waiting or running. */
  get pending(): number { return this.#queue.length + (this.#busy ? 1 : 0); }

  /** Resolves when nothing is queued or running. */
  drained(): Promise<void> {
    if (!this.#busy && this.#queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  #flush(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#busy || this.#queue.length === 0) return;
    const batch: Item[] = [this.#queue.shift()!];
    let rows = batch[0].rows;
    while (this.#queue.length > 0 && rows + this.#queue[0].rows <= this.maxBatch) {
      const it = this.#queue.shift()!;
      batch.push(it);
      rows += it.rows;
    }
    this.#queuedRows -= rows;
    this.#busy = true;
    this.stats.batches++;
    this.stats.rows += rows;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, rows);
    void this.#runBatch(batch, rows);
  }

  async #runBatch(batch: Item[], rows: number): Promise<void> {
    try {
      let x: Float32Array;
      if (batch.length === 1) x = batch[0].x;
      else {
        x = new Float32Array(rows * this.inFeatures);
        let at = 0;
        for (const it of batch) {
          x.set(it.x.subarray(0, it.rows * this.inFeatures), at);
          at += it.rows * this.inFeatures;
        }
      }
      const y = await this.run(x, rows);
      if (batch.length === 1) batch[0].resolve(y);
      else {
        let at = 0;
        for (const it of batch) {
          const n = it.rows * this.outFeatures;
          it.resolve(y.slice(at, at + n));
          at += n;
        }
      }
    } catch (e) {
      for (const it of batch) it.reject(e);
    } finally {
      this.#busy = false;
      if (this.#queue.length > 0) this.#flush();
      else for (const r of this.#idle.splice(0)) r();
    }
  }
}
