// The CLI as a user runs it: dist/cli/index.js in a child process. One grammar for every command: --help prints
// usage (exit 0), a bad command line is one line on stderr (exit 2), a failed run exits 1.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backendInfo } from '../lib/index.js';

const root = path.resolve(import.meta.dirname, '..');
const MODEL = path.join(root, 'test', 'fixtures', 'nmsparse_mlp_nm.safetensors');
// Tiny training runs: a few hundred digits through a 784-16-16-10 MLP, one epoch.
const TINY = ['--epochs', '1', '--limit', '256', '--hidden', '16,16', '--quiet'];

interface Result { code: number; out: string; err: string }

function nmsparse(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(root, 'dist', 'cli', 'index.js'), ...args], { cwd: root, timeout: 60_000 }, (e, out, err) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? -1) : 0, out, err }));
  });
}

/** Runs every command line, a few at a time (the machines running this are small). */
async function all(lines: string[][]): Promise<Result[]> {
  const results: Result[] = [];
  for (let i = 0; i < lines.length; i += 4) results.push(...(await Promise.all(lines.slice(i, i + 4).map((l) => nmsparse(...l)))));
  return results;
}

describe('nmsparse CLI grammar', () => {
  it('--help works on every command and subcommand: usage on stdout, exit 0', async () => {
    const lines = [
      ['--help'], ['help'], ['info', '--help'], ['train', '--help'], ['compare', '--help'], ['serve', '--help'], ['version', '--help'],
      ['bench', '--help'], ['bench', 'help'], ['bench', 'cpu', '--help'], ['bench', 'gpu', '--help'], ['bench', 'serve', '-h'], ['bench', 'train', '--help'],
      ['generate', '--help'], ['bench', 'ngram', '--help'],
    ];
    for (const [i, r] of (await all(lines)).entries()) {
      const what = `nmsparse ${lines[i].join(' ')}: ${r.err}`;
      expect(r.code, what).toBe(0);
      expect(r.out, what).toMatch(/^usage: nmsparse/i);
      expect(r.err, what).toBe('');
    }
  }, 120_000);

  it('a bad command line is one line naming the problem on stderr, exit 2, for every command', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /^nmsparse: unknown command 'frobnicate'/],
      [['info', '--verbose'], /^nmsparse info: --verbose: unknown flag/],
      [['version', 'x'], /^nmsparse version: x: unexpected argument/],
      [['train', '--epochs', 'x'], /^nmsparse train: --epochs: got "x"/],
      [['compare', '--patterns', '5:4'], /^nmsparse compare: --patterns: got "5:4"/],
      [['serve'], /^nmsparse serve: --model: required/],
      [['serve', '--model', MODEL, '--port', 'abc'], /^nmsparse serve: --port: got "abc"/],
      [['serve', '--frobnicate'], /^nmsparse serve: --frobnicate: unknown flag/],
      [['bench'], /^nmsparse bench: expected a kind: cpu, gpu, serve, train/],
      [['bench', 'disk'], /^nmsparse bench disk: got "disk", expected one of cpu, gpu, serve, train/],
      [['bench', 'cpu', '--sizes', '0'], /^nmsparse bench cpu: --sizes: got "0"/],
      [['bench', 'cpu', '--frobnicate'], /^nmsparse bench cpu: .*'--frobnicate'.*\(see nmsparse bench cpu --help\)/],
      [['bench', 'gpu', '--frobnicate'], /^nmsparse bench gpu: .*'--frobnicate'/],
      [['bench', 'gpu', '--dtypes', 'float64'], /^nmsparse bench gpu: --dtypes: got "float64"/],
      [['bench', 'train', '--steps', '0'], /^nmsparse bench train: --steps: got "0"/],
      [['bench', 'train', '--device', 'tpu'], /^nmsparse bench train: --device: got "tpu", expected cpu or cuda/],
      [['bench', 'train', '--device', 'cuda', '--torch'], /^nmsparse bench train: --torch: the PyTorch peer runs on the CPU/],
      [['train', '--precision', 'float64'], /^nmsparse train: --precision: got "float64"/],
      [['bench', 'train', '--precision', 'half'], /^nmsparse bench train: --precision: got "half", expected float32, bfloat16, float16/],
      [['bench', 'train', '--model', 'transformer', '--precision', 'bfloat16'], /^nmsparse bench train: --precision: got bfloat16, expected float32 for --model transformer/],
      [['bench', 'serve', '--requests', '0'], /^nmsparse bench serve: --requests: got "0"/],
      [['generate', '--model', 'x.safetensors', '--tokens', 'x'], /^nmsparse generate: --tokens: got "x"/],
      [['generate', '--prompt', 'The'], /^nmsparse generate: --model: expected a checkpoint/],
      [['bench', 'ngram', '--order', '0'], /^nmsparse bench ngram: --order: got "0"/],
    ];
    for (const [i, r] of (await all(cases.map((c) => c[0]))).entries()) {
      const what = `nmsparse ${cases[i][0].join(' ')}: ${r.err}`;
      expect(r.code, what).toBe(2);
      expect(r.err, what).toMatch(cases[i][1]);
      expect(r.out, what).toBe('');
    }
  }, 120_000);

  it('a run that fails exits 1 with one CODE: message line', async () => {
    const r = await nmsparse('serve', '--model', path.join(root, 'no-such-model.safetensors'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^nmsparse serve: E_IO: .*no-such-model\.safetensors/);
  });

  it.skipIf(backendInfo().cuda.usable)('--device cuda without a usable GPU: train, serve and info give the same reason', async () => {
    const reason = backendInfo().cuda.reason!;
    expect(reason).toBeTruthy();
    const [train, serve, info] = await all([['train', '--device', 'cuda', ...TINY], ['serve', '--device', 'cuda', '--model', MODEL, '--port', '0'], ['info']]);
    for (const r of [train, serve]) {
      expect(r.code, r.err).toBe(1);
      expect(r.err).toMatch(/^nmsparse (train|serve): E_DEVICE: /);
      expect(r.err).toContain(`'cuda' is not available: ${reason}`);
    }
    expect(info.code).toBe(0);
    expect(info.out).toContain(reason);
  }, 60_000);
});

describe('nmsparse bench train', () => {
  it('--transposable adds each sparse recipe at 2:4 with the transposable mask, timed beside the row-wise one', async () => {
    const r = await nmsparse('bench', 'train', '--recipes', 'dense,srste', '--patterns', '2:4,1:4', '--transposable', '--hidden', '32,32',
      '--batch', '8', '--steps', '2', '--epochs', '0', '--no-write');
    expect(r.code, r.err).toBe(0);
    const rows = r.out.split('\n').filter((l) => /^(dense|srste)/.test(l)).map((l) => l.split(/\s{2,}/)[0]);
    expect(rows).toEqual(['dense', 'srste 2:4', 'srste 2:4 transposable', 'srste 1:4']);
  });
});

describe('nmsparse train tells the truth about a run', () => {
  it('a run whose loss becomes NaN warns, exits 1 and does not claim a valid N:M model', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'nms-cli-'));
    const r = await nmsparse('train', ...TINY, '--lr', '1e38', '--out', out);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/^nmsparse train: warning: the training loss became NaN at epoch 1: the run diverged/);
    expect(r.out).toMatch(/DIVERGED/);
    expect(r.out).not.toMatch(/every deployed weight/);
  }, 60_000);

  it('--recipe dense prints no pattern, no sparse layers and no SAD', async () => {
    const r = await nmsparse('train', ...TINY.filter((a) => a !== '--quiet'), '--recipe', 'dense');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^mlp dense seed 0: test accuracy \d+\.\d\d%, [\d.]+ training GFLOP \(1\.00x dense\)$/m);
    expect(r.out).not.toMatch(/2:4|sparse layer|SAD/);
  }, 60_000);
});
