// Inputs that used to crash, hang or throw an untyped error (issue 11). Each case runs in its own Node process
// so that a crash (SIGSEGV, V8 out-of-memory abort) or a hang fails one test instead of killing vitest: the
// child must exit by itself with status 0 and print the NmSparseError code the case expects.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addonPath } from '../lib/native.js';
import { saveModel, type ArchSpec } from '../lib/io/model-file.js';
import { prune } from '../lib/mask.js';
import { randn, type Tensor } from '../lib/tensor.js';

const ROOT = path.resolve(__dirname, '..');
let lib = '';
let scratch = '';

beforeAll(() => {
  // The children run the library as compiled JavaScript: compile lib/ as it is now (dist/ may be stale). Inside
  // the package so that the loader finds package.json above it; per process so parallel files do not collide.
  lib = path.join(ROOT, 'node_modules', '.cache', `nmsparse-holds-${process.pid}`);
  const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.json'),
    '--outDir', lib, '--declaration', 'false', '--sourceMap', 'false'], { encoding: 'utf8' });
  if (tsc.status !== 0) throw new Error(`tsc failed: ${tsc.stdout}${tsc.stderr}`);
  scratch = mkdtempSync(path.join(os.tmpdir(), 'nmsparse-holds-'));
}, 120_000);

afterAll(() => {
  if (lib) rmSync(lib, { recursive: true, force: true });
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

interface Child { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }

function node(args: string[], timeoutMs = 30_000): Child {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, args, {
    encoding: 'utf8', timeout: timeoutMs, cwd: scratch,
    env: { ...process.env, NMSPARSE_ADDON: addonPath },
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

/** Runs `body` (an async function body with `nm` = the library) in a child: its RESULT line, after a clean exit. */
function childResult(body: string, flags: string[] = []): { line: string; child: Child } {
  const script = `
    const nm = await import(${JSON.stringify(path.join(lib, 'index.js'))});
    try { await (async () => { ${body} })(); console.log('RESULT no error'); }
    catch (e) { console.log('RESULT', e?.name, e?.code, e?.message); }`;
  const r = node([...flags, '--input-type=module', '-e', script]);
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  return { line: r.stdout.split('\n').find((l) => l.startsWith('RESULT')) ?? '', child: r };
}

/** `body` must throw NmSparseError with `code`, and the child exit cleanly. */
function expectCode(body: string, code: string, flags: string[] = []): Child {
  const { line, child } = childResult(body, flags);
  expect(line).toMatch(new RegExp(`^RESULT NmSparseError ${code} `));
  return child;
}

describe('untyped errors become NmSparseError (item 5)', () => {
  it.each([
    ['zeros([1e12])', 'nm.zeros([1e12])', 'E_OOM'],
    ['zeros([2**40])', 'nm.zeros([2 ** 40])', 'E_OOM'],
    ['zeros([2**33], uint8)', "nm.zeros([2 ** 33], { dtype: 'uint8' })", 'E_OOM'],
    ['zeros(shape, null)', 'nm.zeros([2, 2], null)', 'E_TYPE'],
    ['randn(shape, null)', 'nm.randn([2, 2], null)', 'E_TYPE'],
    ['tensor(data, shape, null)', 'nm.tensor([1, 2], [2], null)', 'E_TYPE'],
    ['nm.mask(w, null)', 'nm.nm.mask(nm.randn([4, 8]), null)', 'E_PATTERN'],
    ["nm.mask(w, '2:4', null)", "nm.nm.mask(nm.randn([4, 8]), '2:4', null)", 'E_TYPE'],
    ["nm.prune(w, '2:4', 7)", "nm.nm.prune(nm.randn([4, 8]), '2:4', 7)", 'E_TYPE'],
    ['tensor(BigInt64Array)', 'nm.tensor(new BigInt64Array(4))', 'E_TYPE'],
    ['tensor(DataView)', 'nm.tensor(new DataView(new ArrayBuffer(8)))', 'E_TYPE'],
    ['SharedArrayBuffer tensor in matmul', "const s = new Float32Array(new SharedArrayBuffer(64)); const t = new nm.Tensor([4, 4], 'float32', s); nm.matmul(t, t)", 'E_TYPE'],
    ['SharedArrayBuffer tensor in nm.mask', "nm.nm.mask(new nm.Tensor([4, 4], 'float32', new Float32Array(new SharedArrayBuffer(64))), '2:4')", 'E_TYPE'],
    ['resizable ArrayBuffer tensor', "new nm.Tensor([4], 'float32', new Float32Array(new ArrayBuffer(16, { maxByteLength: 64 })))", 'E_TYPE'],
    ['toArray() after the buffer was detached', "const t = new nm.Tensor([4], 'float32', new Float32Array(4)); const b = t.storage().buffer; structuredClone(b, { transfer: [b] }); t.toArray()", 'E_DISPOSED'],
    ['matmul after a buffer was detached', "const t = new nm.Tensor([4, 4], 'float32', new Float32Array(16)); const b = t.storage().buffer; structuredClone(b, { transfer: [b] }); nm.matmul(t, t)", 'E_DISPOSED'],
    ['io.parseSafetensors("string")', 'nm.io.parseSafetensors("string")', 'E_TYPE'],
    ['startServer({model: {}})', 'await nm.startServer({ model: {} })', 'E_TYPE'],
  ])('%s', (_name, body, code) => {
    expectCode(body, code);
  });

  it('train --hidden 70000,70000 fails with E_OOM before training', () => {
    const r = node([path.join(lib, 'cli', 'index.js'), 'train', '--hidden', '70000,70000', '--epochs', '1', '--limit', '64']);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/E_OOM/);
  });
});

describe('output directories that cannot be made fail at once with E_IO (item 3)', () => {
  it.each([
    ['train', '/proc/nope'],
    ['train', '/proc/nope/deeper'],
    ['compare', '/proc/nope'],
    ['train', '/etc/passwd/x'],
  ])('%s --out %s', (cmd, out) => {
    const r = node([path.join(lib, 'cli', 'index.js'), cmd, '--epochs', '1', '--limit', '64', '--out', out], 20_000);
    expect(r.signal, `hung or crashed: ${r.stderr}`).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/E_IO: --out: /);
    expect(r.stdout).not.toMatch(/epoch/i);
  });
});

describe('model files cannot make the loader allocate what they do not hold (item 2)', () => {
  it('layers.1000000000.weight: InferenceModel.load and serve --arch mlp answer E_VALUE', () => {
    const file = path.join(scratch, 'far-index.safetensors');
    const body = `
      const m = new Map([['layers.0.weight', nm.tensor([1, 2, 3, 4], [2, 2])], ['layers.1000000000.weight', nm.tensor([1, 2, 3, 4], [2, 2])]]);
      (await import('node:fs')).writeFileSync(${JSON.stringify(file)}, nm.io.serializeSafetensors(m));
      await nm.InferenceModel.load(${JSON.stringify(file)}, { arch: 'mlp' });`;
    const r = expectCode(body, 'E_VALUE', ['--max-old-space-size=256']);
    expect(r.ms).toBeLessThan(20_000);
    const s = node([path.join(lib, 'cli', 'index.js'), 'serve', '--model', file, '--arch', 'mlp', '--port', '0'], 20_000);
    expect(s.signal, s.stderr).toBeNull();
    expect(s.status).not.toBe(0);
    expect(s.stderr).toMatch(/nmsparse serve: E_VALUE: arch "mlp": layers\.1000000000\.weight/);
  });

  it('a file whose layers are within the gap limit still loads', () => {
    const body = `
      const m = new Map([['layers.0.weight', nm.randn([3, 4], { seed: 1 })], ['layers.3.weight', nm.randn([2, 3], { seed: 2 })]]);
      const f = ${JSON.stringify(path.join(scratch, 'gap.safetensors'))};
      (await import('node:fs')).writeFileSync(f, nm.io.serializeSafetensors(m));
      const model = await nm.InferenceModel.load(f, { arch: 'mlp' });
      if (model.inFeatures !== 4 || model.outFeatures !== 2) throw new Error('wrong model');`;
    expect(childResult(body).line).toBe('RESULT no error');
  });
});

describe('loading a compressed model never makes its dense weights (item 15)', () => {
  it('InferenceModel.load of a 1:8 nm-form file grows RSS by about the file, not the dense weights', async () => {
    // Three 2048² Linear layers pruned 1:8 (48 MiB dense; the nm form holds 0.137 of it) and a dense classifier.
    const big = path.join(scratch, 'big-1of8.safetensors'), small = path.join(scratch, 'small-1of8.safetensors');
    const write = async (file: string, width: number) => {
      const tensors = new Map<string, Tensor>();
      const layers: ArchSpec['layers'] = [];
      const sparsity: Record<string, string> = {};
      for (let i = 0; i < 4; i++) {
        const out = i === 3 ? 10 : width;
        const w = randn([out, width], { seed: i, std: 0.02 });
        tensors.set(`${i}.weight`, i === 3 ? w : prune(w, '1:8'));
        tensors.set(`${i}.bias`, randn([out], { seed: 10 + i }));
        if (i < 3) sparsity[`${i}.weight`] = '1:8';
        layers.push({ type: 'Linear', in: width, out });
      }
      await saveModel(file, tensors, { arch: { type: 'Sequential', layers }, sparsity, compressed: true });
    };
    await write(big, 2048);
    await write(small, 64);
    const fileBytes = statSync(big).size, denseBytes = 3 * 2048 * 2048 * 4;
    // RSS before the load (after a small load has brought in the code) against the process's peak after it; the
    // peak includes anything before, so this over-estimates the growth, never under-estimates it.
    const growth = (load: string): number => {
      const { line, child } = childResult(`
        await (await nm.InferenceModel.load(${JSON.stringify(small)})).dispose();
        const before = process.memoryUsage().rss;
        const m = ${load};
        console.log('GROWTH', process.resourceUsage().maxRSS * 1024 - before);`);
      expect(line).toBe('RESULT no error');
      return Number(/^GROWTH (\d+)/m.exec(child.stdout)![1]);
    };
    const served = growth(`await nm.InferenceModel.load(${JSON.stringify(big)})`);
    expect(served, `grew ${served} bytes for a ${fileBytes}-byte file`).toBeLessThan(fileBytes + (16 << 20));
    // The measurement sees dense weights when they are made: loadModel's default decompresses them.
    const decompressed = growth(`await nm.io.loadModel(${JSON.stringify(big)})`);
    expect(decompressed).toBeGreaterThan(denseBytes);
  }, 60_000);
});

describe('outputs that partly overlap an input are rejected (item 4)', () => {
  // w is elements [0, 32) of a buffer, the output a view shifted by one element into it.
  const setup = `
    const base = new Float32Array(33);
    for (let i = 0; i < 33; i++) base[i] = Math.sin(i * 7.1);
    const w = new nm.Tensor([4, 8], 'float32', base.subarray(0, 32));
    const shifted = new nm.Tensor([4, 8], 'float32', base.subarray(1, 33));`;
  it.each([
    ['nm.prune', "nm.nm.prune(w, '2:4', { out: shifted })"],
    ['nm.mask', "nm.nm.mask(w, '2:4', { out: new nm.Tensor([4, 8], 'uint8', new Uint8Array(base.buffer, 4, 32)) })"],
    ['SparseTensor.decompress', "const s = nm.nm.compress(w, '2:4'); const big = new Float32Array(48); big.set(s.values.storage()); const s2 = new nm.SparseTensor([4, 8], { n: 2, m: 4 }, 'float32', { values: new nm.Tensor([4, 4], 'float32', big.subarray(0, 16)), positions: s.positions }); s2.decompress({ out: new nm.Tensor([4, 8], 'float32', big.subarray(8, 40)) })"],
    ['nn.reluForward', 'nm.nn.reluForward(w, { out: shifted })'],
    ['nn.geluForward', 'nm.nn.geluForward(w, { out: shifted })'],
    ['nn.dropout', 'nm.nn.dropout(w, 0.5, 1, 0, { out: shifted })'],
    ['linear', 'nm.linear(w, nm.randn([3, 8]), null, { out: new nm.Tensor([4, 3], "float32", base.subarray(20, 32)) })'],
  ])('%s', (_name, call) => {
    expectCode(`${setup} ${call}`, 'E_VALUE');
  });

  it('prune in place (out = w) still equals a 2:4 prune computed here', () => {
    const body = `${setup}
      const want = Array.from(w.storage());
      for (let g = 0; g < 32; g += 4) {
        const order = [0, 1, 2, 3].sort((a, b) => Math.abs(want[g + b]) - Math.abs(want[g + a]) || a - b);
        for (const i of order.slice(2)) want[g + i] = 0;
      }
      nm.nm.prune(w, '2:4', { out: w });
      const got = Array.from(w.storage());
      if (got.some((v, i) => v !== want[i])) throw new Error('in-place prune differs: ' + got + ' vs ' + want);`;
    expect(childResult(body).line).toBe('RESULT no error');
  });
});

describe('async ops own what they touch (item 1)', () => {
  const ops = ['linear', 'matmul', 'smatmul', 'mlp', 'smlp'];
  const actions = ['x-to-worker', 'x-transfer', 'w-transfer', 'values-transfer', 'out-transfer'];
  const cases = ['own', 'made', 'pinned'].flatMap((storage) => ops.flatMap((op) => actions.map((a) => [storage, op, a])));
  it.each(cases)('%s storage, %sAsync, %s + gc', (storage, op, action) => {
    const r = node(['--expose-gc', path.join(ROOT, 'test/fixtures/async-hold.mjs'), lib, storage, op, action]);
    expect(r.signal, `crashed: ${r.stderr}`).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT')) ?? r.stdout;
    // Pinned storage cannot be taken away (Node copies it instead of transferring), so its ops always finish;
    // an ordinary output buffer that went away makes the op fail, typed. (smatmul's output is its own.)
    if (storage !== 'pinned' && action === 'out-transfer' && op !== 'smatmul') expect(line).toMatch(/^RESULT NmSparseError E_DISPOSED /);
    else expect(line).toBe('RESULT same');
  });
});

// Async ops run in order on the addon's own op thread (native/napi/args.cc) and settle through a thread-safe function
// of the environment that started them: the main thread's or a worker thread's.
describe('async ops on the op thread: every environment gets its own results; one that goes away mid-op is let go', () => {
  it('64 ops in flight at once from the main thread and two workers, one worker terminated mid-op: all results right, clean exit', () => {
    const body = `
      const { Worker } = await import('node:worker_threads');
      // each op's result against the sync op's, bit for bit (the same kernels)
      const check = ${((nmLib: string) => `async (tag, seed) => {
        const nm = await import(${JSON.stringify(nmLib)});
        const w = nm.randn([256, 512], { seed }), S = nm.nm.compress(nm.nm.prune(w, '2:4'), '2:4');
        const xs = Array.from({ length: 64 }, (_, i) => nm.randn([1 + (i % 9), 512], { seed: seed * 100 + i }));
        const want = xs.map((x) => Array.from(nm.nm.linear(x, S).storage()));
        const got = await Promise.all(xs.map((x, i) => (i % 2 ? nm.nm.linearAsync(x, S) : nm.linearAsync(x, w))));
        got.forEach((y, i) => {
          const ref = i % 2 ? want[i] : Array.from(nm.linear(xs[i], w).storage());
          const v = Array.from(y.storage());
          if (v.length !== ref.length || v.some((a, j) => a !== ref[j])) throw new Error(tag + ': op ' + i + ' differs');
        });
        return tag + ' ok';
      }`)(path.join(lib, 'index.js'))};
      const workerCode = (tag, seed, forever) => \`
        (async () => {
          const { parentPort } = await import('node:worker_threads');
          const check = \${check.toString()};
          parentPort.postMessage(await check('\${tag}', \${seed}));
          if (\${forever}) {  // big ops until terminated
            const nm = await import(${JSON.stringify(path.join(lib, 'index.js'))});
            const a = nm.randn([512, 2048], { seed: 5 }), b = nm.randn([2048, 2048], { seed: 6 });
            parentPort.postMessage('looping');
            for (;;) await nm.matmulAsync(a, b);
          }
        })();\`;
      const run = (tag, seed, forever) => new Promise((resolve, reject) => {
        const w = new Worker(workerCode(tag, seed, forever), { eval: true });
        w.on('error', reject);
        w.on('message', (m) => { if (m === 'looping') setTimeout(() => w.terminate().then(() => resolve(tag + ' terminated')), 30); else if (!forever) resolve(m); });
      });
      const results = await Promise.all([check('main', 1), run('w1', 2, false), run('w2', 3, true)]);
      if (results.join() !== 'main ok,w1 ok,w2 terminated') throw new Error('got ' + results.join());
      // the main environment still works after the worker went with an op in flight
      if ((await check('again', 4)) !== 'again ok') throw new Error('after terminate');`;
    expect(childResult(body).line).toBe('RESULT no error');
  }, 60_000);
});
