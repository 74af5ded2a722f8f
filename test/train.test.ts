// Data, Trainer, checkpoints and the train/compare commands, on the real MNIST digits.
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { NmSparseError } from '../lib/errors.js';
import { Batches, loadMnist, mnistSplit, permutation, type Dataset } from '../lib/data/mnist.js';
import { mlp, cnn } from '../lib/nn/models.js';
import { SGD, warmupCosine } from '../lib/optim/index.js';
import { ASP, SRSTE } from '../lib/recipes/index.js';
import { Trainer, sparseWeights } from '../lib/train/trainer.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/train/checkpoint.js';
import { runTraining } from '../lib/train/run.js';
import { trainCommand, type CliIO } from '../lib/cli/train.js';
import { compareCommand } from '../lib/cli/compare.js';
import { Progress } from '../lib/train/progress.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'nms-train-'));

function captureIO(tty = false): CliIO & { out: string[]; err: string[] } {
  const out: string[] = [], err: string[] = [];
  return { out, err, stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s), isTTY: tty }, setExitCode: false };
}

let split: { train: Dataset; test: Dataset };
beforeAll(() => {
  split = mnistSplit();
});

describe('MNIST data', () => {
  it('loads the 10,000 digits of the package, about 1,000 per class, pixels in [0, 1]', () => {
    const all = loadMnist();
    expect(all.count).toBe(10000);
    const perClass = Array.from({ length: 10 }, (_, d) => all.labels.filter((l) => l === d).length);
    expect(perClass.every((n) => n > 800 && n < 1200)).toBe(true);
    expect(Math.min(...all.images.subarray(0, 78400))).toBe(0);
    expect(Math.max(...all.images.subarray(0, 78400))).toBeLessThanOrEqual(1);
  });

  it('the split is deterministic, 8,000 / 2,000, disjoint, and standardised', () => {
    const again = mnistSplit();
    expect(split.train.count).toBe(8000);
    expect(split.test.count).toBe(2000);
    const same = (a: ArrayBufferView, b: ArrayBufferView) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
    expect(same(again.train.labels, split.train.labels)).toBe(true);
    expect(same(again.test.images, split.test.images)).toBe(true);
    const p = permutation(10000, 0);
    expect(new Set(p).size).toBe(10000);
    const all = loadMnist();
    // Test row 0 is digit p[8000] of the package, standardised.
    expect(split.test.labels[0]).toBe(all.labels[p[8000]]);
    expect(split.test.images[300]).toBeCloseTo((all.images[p[8000] * 784 + 300] - 0.1307) / 0.3081, 5);
  });

  it('batches: seeded shuffles per epoch, rows and labels kept together, last partial batch kept', () => {
    const ds: Dataset = { images: Float32Array.from({ length: 10 * 784 }, (_, i) => Math.floor(i / 784)), labels: Int32Array.from({ length: 10 }, (_, i) => i), count: 10 };
    const b = new Batches(ds, 4, { seed: 3 });
    expect(b.length).toBe(3);
    // Batch buffers are reused: read each batch before taking the next.
    const order = (e: number) => {
      const o: number[] = [];
      for (const x of b.epoch(e)) o.push(...x.labels.subarray(0, x.size));
      return o;
    };
    const e0 = order(0);
    expect([...e0].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(order(0)).toEqual(e0);
    expect(order(1)).not.toEqual(e0);
    for (const x of b.epoch(2)) for (let i = 0; i < x.size; i++) expect((x.x.storage() as Float32Array)[i * 784 + 5]).toBe(x.labels[i]);
    expect(Array.from(b.epoch(0), (x) => x.size)).toEqual([4, 4, 2]);
    expect(new Batches(ds, 4, { dropLast: true }).length).toBe(2);
  });
});

describe('Trainer', () => {
  it('a 1-epoch MNIST MLP (784-1024-1024-10, SR-STE 2:4) reaches >= 90% test accuracy with N:M weights', async () => {
    const r = await runTraining({ model: 'mlp', recipe: 'srste', pattern: '2:4', epochs: 1, seed: 0 });
    expect(r.final.testAccuracy).toBeGreaterThanOrEqual(0.9);
    expect(r.nmValid).toBe(true);
    expect(r.sparseLayers).toEqual(['fc1.weight', 'fc2.weight']);
  }, 120_000);

  it('records SAD and FLOPs consistently (sparse forward at N/M, backward dense, no dx for the first layer)', async () => {
    const recipe = new ASP({ denseFraction: 0.5 });
    const model = mlp({ hidden: [64, 32], pattern: '1:4', recipe, seed: 1 });
    const records: unknown[] = [];
    const t = new Trainer({
      model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }), schedule: warmupCosine({ lr: 0.05 }),
      epochs: 2, batchSize: 200, onEpoch: (r) => records.push(r),
    });
    const train = { images: split.train.images.subarray(0, 1000 * 784), labels: split.train.labels.subarray(0, 1000), count: 1000 };
    const { history } = await t.fit(train, split.test);
    expect(records).toHaveLength(2);
    const [e1, e2] = history;
    // Epoch 1 is ASP's dense phase: no first sparse mask yet. Epoch 2 is sparse, with the mask fixed.
    expect(e1.phase).toBe('dense-warmup');
    expect(e1.sadCumulative).toBeNull();
    expect(e2.sadCumulative!.changed).toBe(0);
    expect(e1.sad!.total).toBe(784 * 64 + 64 * 32);
    expect(e1.sad!.fraction).toBeCloseTo(e1.sad!.changed / e1.sad!.total, 12);
    expect(e1.sadLayers.map((l) => l.name)).toEqual(['fc1.weight', 'fc2.weight']);
    // FLOPs per image: fc1 F1 = 2·784·64 (forward; backward dW only), fc2 F2 = 2·64·32, classifier F3 = 2·32·10.
    const [F1, F2, F3] = [2 * 784 * 64, 2 * 64 * 32, 2 * 32 * 10];
    const dense = 1000 * (F1 + F1 + 3 * F2 + 3 * F3);
    expect(e1.flops).toBe(dense);
    expect(e2.flops).toBe(1000 * (0.25 * F1 + F1 + 0.25 * F2 + 2 * F2 + 3 * F3));
    expect(e2.flopsTotal).toBe(e1.flops + e2.flops);
    expect(e2.denseFlopsTotal).toBe(2 * dense);
    expect(e2.imagesPerSecond).toBeGreaterThan(0);
  });

  it("refuses a device this build does not have with E_DEVICE", () => {
    const model = mlp({ hidden: [8], seed: 1 });
    expect(() => new Trainer({ model, optimizer: new SGD(model.parameters(), { lr: 0.1 }), schedule: () => 0.1, epochs: 1, device: 'cuda' }))
      .toThrowError(expect.objectContaining({ code: 'E_DEVICE' }) as unknown as Error);
  });
});

describe('checkpoints', () => {
  it('a trained CNN round-trips through saveCheckpoint/loadCheckpoint: parameters bit for bit, masks, accuracy', async () => {
    const recipe = new SRSTE();
    const model = cnn({ channels: [8, 8], hidden: 16, pattern: '2:4', recipe, seed: 2 });
    const t = new Trainer({ model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }), schedule: () => 0.05, epochs: 1, batchSize: 250 });
    const small = { images: split.train.images.subarray(0, 500 * 784), labels: split.train.labels.subarray(0, 500), count: 500 };
    await t.fit(small, small);
    const { file } = saveCheckpoint(model, path.join(tmp(), 'ck'), { note: 'test' });
    const fresh = cnn({ channels: [8, 8], hidden: 16, pattern: '2:4', recipe: new SRSTE(), seed: 99 });
    expect(loadCheckpoint(fresh, file)).toEqual({ note: 'test' });
    const a = model.namedParameters(), b = fresh.namedParameters();
    a.forEach(([n, p], i) => {
      expect(b[i][0]).toBe(n);
      expect(Buffer.from((b[i][1].value.storage() as Float32Array).buffer).equals(Buffer.from((p.value.storage() as Float32Array).buffer))).toBe(true);
    });
    sparseWeights(fresh).forEach(({ s }, i) => expect(s.mask!.storage()).toEqual(sparseWeights(model)[i].s.mask!.storage()));
    const t2 = new Trainer({ model: fresh, optimizer: new SGD(fresh.parameters(), { lr: 0.05 }), schedule: () => 0.05, epochs: 1 });
    expect(t2.evaluate(split.test)).toEqual(t.evaluate(split.test));
    expect(() => loadCheckpoint(mlp({ hidden: [8], seed: 1 }), file)).toThrowError(NmSparseError);
  });
});

describe('nmsparse train', () => {
  it('bad flags: one line naming the flag, exit code 2', async () => {
    for (const [argv, re] of [
      [['--epochs', 'x'], /^nmsparse train: --epochs: got "x", expected an integer >= 1\n$/],
      [['--recipe', 'sr-ste'], /^nmsparse train: --recipe: got "sr-ste", expected one of dense, ste, srste, asp, mask-decay, structure-decay\n$/],
      [['--pattern', '4:4'], /^nmsparse train: --pattern: got "4:4"/],
      [['--model', 'resnet'], /^nmsparse train: --model: got "resnet"/],
      [['--frobnicate'], /^nmsparse train: --frobnicate: unknown flag/],
      [['--seed'], /^nmsparse train: --seed: expects a value\n$/],
      [['--lr=-1'], /^nmsparse train: --lr: got "-1", expected a number > 0\n$/],
      [['--lr', '-1'], /^nmsparse train: --lr: a value starting with "-" must be written --lr=VALUE\n$/],
      [['--dense-warmup', '0.8', '--dense-finetune', '0.5'], /^nmsparse train: --dense-warmup \+ --dense-finetune/],
      [['extra'], /^nmsparse train: extra: unexpected argument/],
    ] as const) {
      const io = captureIO();
      expect(await trainCommand([...argv], io)).toBe(2);
      expect(io.err.join('')).toMatch(re);
      expect(io.err.join('').split('\n').filter(Boolean)).toHaveLength(1);
      expect(io.out).toEqual([]);
    }
  });

  it('--device cuda without a GPU backend fails with one E_DEVICE line, exit code 1', async () => {
    const io = captureIO();
    expect(await trainCommand(['--device', 'cuda', '--epochs', '1'], io)).toBe(1);
    expect(io.err.join('')).toMatch(/^nmsparse train: E_DEVICE: --device: 'cuda' is not available: .+\n$/);
  });

  it('trains and writes metrics.jsonl, plot.svg and a checkpoint; prints the end-of-run table', async () => {
    const dir = tmp();
    const io = captureIO();
    const code = await trainCommand(['--model', 'mlp', '--hidden', '32,32', '--recipe', 'mask-decay', '--alpha', 'linear', '--pattern', '1:4', '--epochs', '2', '--limit', '1000', '--seed', '3', '--out', dir], io);
    expect(code).toBe(0);
    const lines = readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.type)).toEqual(['config', 'epoch', 'epoch']);
    expect(lines[0]).toMatchObject({ model: 'mlp', recipe: 'mask-decay', pattern: '1:4', seed: 3, recipeOptions: { alpha: 'linear', gradient: 'ste' } });
    expect(lines[2]).toMatchObject({ epoch: 2, steps: 16 });
    const svg = readFileSync(path.join(dir, 'plot.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('SAD');
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(existsSync(path.join(dir, 'checkpoint.safetensors'))).toBe(true);
    const out = io.out.join('');
    expect(out).toMatch(/epoch\s+phase\s+lr\s+loss/);
    expect(out).toMatch(/test accuracy \d+\.\d\d%.*every deployed weight 1:4/);
  });

  it('draws a progress bar on a TTY only', () => {
    const writes: string[] = [];
    const p = new Progress({ isTTY: true, columns: 100, write: (s: string) => writes.push(s) } as unknown as NodeJS.WriteStream);
    p.start('epoch 1/1', 2);
    p.tick('loss 1', 10);
    p.tick('loss 0.5', 10);
    p.done('done');
    expect(writes.some((w) => w.startsWith('\r') && w.includes('[') && w.includes('2/2'))).toBe(true);
    const silent: string[] = [];
    const q = new Progress({ isTTY: false, write: (s: string) => silent.push(s) } as unknown as NodeJS.WriteStream);
    q.start('x', 1);
    q.tick('y', 1);
    q.done('z');
    expect(silent).toEqual([]);
    const tok: string[] = [];
    const t = new Progress({ isTTY: true, columns: 100, write: (s: string) => tok.push(s) } as unknown as NodeJS.WriteStream, 'tok');
    t.start('epoch 1/1', 1);
    t.tick('loss 2', 1234);
    expect(tok.some((w) => w.includes('1234 tok/s'))).toBe(true);
  });
});

describe('nmsparse compare', () => {
  it('trains the grid, prints one mean ± std table, writes report.md, runs.jsonl and SVGs; --resume reuses runs', async () => {
    const dir = tmp();
    const argv = ['--recipes', 'dense,ste,srste', '--patterns', '2:4,1:4', '--seeds', '2', '--hidden', '16,16', '--limit', '600', '--epochs', '1', '--out', dir, '--quiet'];
    const io = captureIO();
    expect(await compareCommand(argv, io)).toBe(0);
    const runs = readFileSync(path.join(dir, 'runs.jsonl'), 'utf8').trim().split('\n');
    expect(runs).toHaveLength(2 + 2 * 2 * 2); // dense once per seed; ste and srste per pattern and seed
    const out = io.out.join('');
    expect(out).toMatch(/model\s+pattern\s+recipe\s+seeds\s+test acc % \(mean ± std\)/);
    // The dense baseline once (no pattern, no SAD), then ste and srste per pattern.
    expect(out.match(/^mlp\s+-\s+dense\s+2\s+\d+\.\d\d ± \d+\.\d\d\s+-\s+-\s/gm)).toHaveLength(1);
    expect(out.match(/^mlp\s+(2:4|1:4)\s+(ste|srste)\s+2\s+\d+\.\d\d ± \d+\.\d\d/gm)).toHaveLength(4);
    expect(out.match(/dense/g)).toHaveLength(2);  // its row and the "vs dense" column
    const report = readFileSync(path.join(dir, 'report.md'), 'utf8');
    expect(report).toContain('| mlp | 1:4 | srste | 2 |');
    for (const f of ['mlp-accuracy.svg', 'mlp-sad.svg', 'mlp-curves.svg']) {
      expect(report).toContain(`](${f})`);
      expect(readFileSync(path.join(dir, f), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>\n$/);
    }
    const io2 = captureIO();
    const t0 = performance.now();
    expect(await compareCommand([...argv, '--resume'], io2)).toBe(0);
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(readFileSync(path.join(dir, 'runs.jsonl'), 'utf8').trim().split('\n')).toHaveLength(10);
    expect(io2.out[0]).toBe(io.out[0]);
  }, 120_000);

  it('a run whose loss becomes NaN is reported and the command exits 1', async () => {
    const io = captureIO();
    expect(await compareCommand(['--recipes', 'srste', '--seeds', '1', '--hidden', '16,16', '--limit', '256', '--epochs', '1', '--lr', '1e38', '--quiet'], io)).toBe(1);
    expect(io.err.join('')).toMatch(/^nmsparse compare: warning: mlp srste 2:4 seed 0 diverged \(training loss not finite from epoch 1/);
  });

  it('bad flags name the flag (exit code 2)', async () => {
    const io = captureIO();
    expect(await compareCommand(['--patterns', '2:4,5:4'], io)).toBe(2);
    expect(io.err.join('')).toMatch(/^nmsparse compare: --patterns: got "5:4"/);
    const io2 = captureIO();
    expect(await compareCommand(['--resume'], io2)).toBe(2);
    expect(io2.err.join('')).toMatch(/--resume: needs --out/);
  });
});
