/**
 * `nmsparse bench serve`: requests/s and p50/p99 latency of `nmsparse serve` on the MNIST MLP (784 → 1024 →
 * 1024 → 10, ReLU; fc1 and fc2 2:4, the classifier dense, as lib/nn/models.ts builds it), dense vs 2:4.
 *
 * One checkpoint holds the 2:4 weights (the nm form); it is served twice by a child process
 * (`node dist/cli/serve.js`, exactly what users run): with --dense (every layer through the dense GEMM) and
 * without (fc1/fc2 through the N:M sparse product). A client in this process keeps `--concurrency` requests in
 * flight over keep-alive connections on 127.0.0.1, each one MNIST-sized row (or `--rows`), in JSON and in raw
 * float32, after a warm-up. Writes bench/results/serve-<machine>.json and .md.
 *
 *   nmsparse bench serve [--requests 4000] [--concurrency 32] [--rows 1] [--hidden 1024,1024] [--device cpu]
 *                        [--max-batch 64] [--max-delay-ms 1] [--model FILE] [--machine NAME] [--out DIR]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NmSparseError } from '../errors.js';
import { packageRoot } from '../native.js';
import { machineInfo, machineName } from './machine.js';
import { prune } from '../mask.js';
import { randn, type Tensor } from '../tensor.js';
import { saveModel, type ArchSpec } from '../io/model-file.js';

interface Config {
  requests: number;
  warmup: number;
  concurrency: number;
  rows: number;
  hidden: number[];
  device: string;
  maxBatch: number;
  maxDelayMs: number;
  model: string | null;
  machine: string;
  out: string;
}

export interface ServeResult {
  variant: 'dense' | '2:4';
  format: 'json' | 'raw';
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  rowsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanBatchRows: number;
  serverRssMB: number | null;
  weightBytes: number;
}

function parse(args: string[]): Config {
  const { values } = parseArgs({
    args, allowPositionals: false,
    options: {
      requests: { type: 'string' }, warmup: { type: 'string' }, concurrency: { type: 'string' }, rows: { type: 'string' },
      hidden: { type: 'string' }, device: { type: 'string' }, 'max-batch': { type: 'string' }, 'max-delay-ms': { type: 'string' },
      model: { type: 'string' }, machine: { type: 'string' }, out: { type: 'string' },
    },
  });
  const int = (v: string | undefined, name: string, def: number, min = 1): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new NmSparseError('E_VALUE', `--${name}: got ${JSON.stringify(v)}, expected an integer >= ${min}`);
    return n;
  };
  const requests = int(values.requests, 'requests', 4000);
  const hidden = (values.hidden ?? '1024,1024').split(',').map((h) => int(h, 'hidden', 0));
  if (hidden.some((h) => h % 4 !== 0)) throw new NmSparseError('E_VALUE', `--hidden: got ${values.hidden}, expected widths divisible by 4 (2:4)`);
  return {
    requests, warmup: int(values.warmup, 'warmup', Math.min(1000, Math.ceil(requests / 4)), 0), concurrency: int(values.concurrency, 'concurrency', 32),
    rows: int(values.rows, 'rows', 1), hidden, device: values.device ?? 'cpu', maxBatch: int(values['max-batch'], 'max-batch', 64),
    maxDelayMs: int(values['max-delay-ms'], 'max-delay-ms', 1, 0), model: values.model ?? null,
    machine: values.machine ?? machineName(),
    out: values.out ?? path.join(packageRoot, 'bench', 'results'),
  };
}

/** The MNIST MLP with seeded weights, fc1 and fc2 pruned 2:4, written in the nm form. */
async function writeMnistMlp(file: string, hidden: number[]): Promise<void> {
  const layers: ArchSpec['layers'] = [];
  const tensors = new Map<string, Tensor>();
  const sparsity: Record<string, { pattern: string; recipe: string }> = {};
  let width = 784;
  const widths = [...hidden, 10];
  widths.forEach((out, i) => {
    const name = i === widths.length - 1 ? 'classifier' : `fc${i + 1}`;
    const bound = 1 / Math.sqrt(width);
    const w = randn([out, width], { seed: 100 + i, std: bound });
    tensors.set(`${name}.weight`, name === 'classifier' ? w : prune(w, '2:4'));
    tensors.set(`${name}.bias`, randn([out], { seed: 200 + i, std: bound }));
    if (name !== 'classifier') sparsity[`${name}.weight`] = { pattern: '2:4', recipe: 'magnitude' };
    layers.push({ name, type: 'Linear', in: width, out, bias: true });
    if (name !== 'classifier') layers.push({ name: `relu${i + 1}`, type: 'ReLU' });
    width = out;
  });
  await saveModel(file, tensors, { arch: { type: 'Sequential', layers }, sparsity, compressed: true, metadata: { 'nmsparse.note': 'bench serve: seeded MNIST MLP' } });
}

interface Server { child: ChildProcess; url: string; stop(): Promise<number | null> }

/** Starts `node dist/cli/serve.js` and waits for its "listening on" line. */
function startServer(model: string, cfg: Config, dense: boolean): Promise<Server> {
  const script = fileURLToPath(new URL('../cli/serve.js', import.meta.url));
  const args = [script, '--model', model, '--port', '0', '--host', '127.0.0.1', '--device', cfg.device, '--max-batch', String(cfg.maxBatch),
    '--max-delay-ms', String(cfg.maxDelayMs), '--max-rows', String(Math.max(1024, cfg.rows)), ...(dense ? ['--dense'] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '', err = '';
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ child, url: m[1], stop: () => { child.kill('SIGTERM'); return exited; } });
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => reject(new NmSparseError('E_INTERNAL', `bench serve: the server exited (${code}) before listening: ${err.trim() || out.trim()}`)));
  });
}

function post(agent: http.Agent, url: URL, body: Buffer, type: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: '/predict', method: 'POST', agent, headers: { 'Content-Type': type, 'Content-Length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString()}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function getJson(url: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let s = '';
      res.on('data', (d) => (s += d));
      res.on('end', () => { try { resolve(JSON.parse(s)); } catch (e) { reject(e); } });
    }).on('error', reject);
  });
}

function rssMB(pid: number | undefined): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** Runs the load against one server: warm-up, then `requests` timed requests with `concurrency` in flight. */
async function load(srv: Server, cfg: Config, format: 'json' | 'raw', bodies: Buffer[]): Promise<Omit<ServeResult, 'variant' | 'weightBytes'>> {
  const url = new URL(srv.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.concurrency });
  const type = format === 'json' ? 'application/json' : 'application/octet-stream';
  const run = async (n: number, lat: number[] | null) => {
    let next = 0;
    await Promise.all(Array.from({ length: cfg.concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const t0 = performance.now();
        await post(agent, url, bodies[i % bodies.length], type);
        lat?.push(performance.now() - t0);
      }
    }));
  };
  await run(cfg.warmup, null);
  const before = (await getJson(`${srv.url}/info`)).stats as { batches: { batches: number; rows: number } };
  const lat: number[] = [];
  const t0 = performance.now();
  await run(cfg.requests, lat);
  const seconds = (performance.now() - t0) / 1000;
  const after = (await getJson(`${srv.url}/info`)).stats as { batches: { batches: number; rows: number } };
  agent.destroy();
  lat.sort((a, b) => a - b);
  const r2 = (v: number) => Math.round(v * 100) / 100;
  return {
    format, requests: cfg.requests, seconds: r2(seconds), requestsPerSecond: Math.round(cfg.requests / seconds), rowsPerSecond: Math.round((cfg.requests * cfg.rows) / seconds),
    p50Ms: r2(pct(lat, 50)), p90Ms: r2(pct(lat, 90)), p99Ms: r2(pct(lat, 99)), maxMs: r2(lat[lat.length - 1]),
    meanBatchRows: r2((after.batches.rows - before.batches.rows) / Math.max(1, after.batches.batches - before.batches.batches)),
    serverRssMB: rssMB(srv.child.pid),
  };
}

function table(results: ServeResult[], cfg: Config): string {
  const head = '| model | body | req/s | rows/s | p50 ms | p90 ms | p99 ms | mean batch | server RSS MB | weights KB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|';
  const rows = results.map((r) => `| ${r.variant} | ${r.format} | ${r.requestsPerSecond} | ${r.rowsPerSecond} | ${r.p50Ms} | ${r.p90Ms} | ${r.p99Ms} | ${r.meanBatchRows} | ${r.serverRssMB ?? '–'} | ${Math.round(r.weightBytes / 1024)} |`);
  const ratio = (f: 'json' | 'raw') => {
    const d = results.find((r) => r.variant === 'dense' && r.format === f), s = results.find((r) => r.variant === '2:4' && r.format === f);
    return d && s ? `${f}: 2:4/dense = ${(s.requestsPerSecond / d.requestsPerSecond).toFixed(2)}× req/s, p99 ${(s.p99Ms / d.p99Ms).toFixed(2)}×` : '';
  };
  void cfg;
  return [head, ...rows, '', ratio('json'), ratio('raw')].join('\n');
}

/** `nmsparse bench serve ...` (dispatched by lib/bench/index.ts). */
export async function benchServe(args: string[]): Promise<void> {
  const cfg = parse(args);
  const tmp = mkdtempSync(path.join(tmpdir(), 'nmsparse-bench-serve-'));
  try {
    const model = cfg.model ?? path.join(tmp, 'mnist-mlp-2of4.safetensors');
    if (!cfg.model) await writeMnistMlp(model, cfg.hidden);
    // Inputs: seeded pixel-like rows (normal around 0.5), as JSON and as raw float32.
    const inputs = Array.from({ length: 64 }, (_, i) => randn([cfg.rows, 784], { seed: 1000 + i, mean: 0.5, std: 0.3 }));
    const json = inputs.map((t) => {
      const v = t.storage() as Float32Array;
      return Buffer.from(JSON.stringify({ inputs: Array.from({ length: cfg.rows }, (_, r) => Array.from(v.subarray(r * 784, (r + 1) * 784))) }));
    });
    const raw = inputs.map((t) => Buffer.from((t.storage() as Float32Array).buffer));
    const results: ServeResult[] = [];
    process.stdout.write(`bench serve: MNIST MLP 784-${cfg.hidden.join('-')}-10, ${cfg.requests} requests of ${cfg.rows} row(s), ${cfg.concurrency} concurrent, on ${cfg.device} (${cfg.machine})\n`);
    for (const variant of ['dense', '2:4'] as const) {
      const srv = await startServer(model, cfg, variant === 'dense');
      try {
        const info = (await getJson(`${srv.url}/info`)).model as { weightBytes: number };
        for (const format of ['json', 'raw'] as const) {
          const r = { variant, weightBytes: info.weightBytes, ...(await load(srv, cfg, format, format === 'json' ? json : raw)) };
          results.push(r);
          process.stdout.write(`  ${variant.padEnd(5)} ${format.padEnd(4)} ${String(r.requestsPerSecond).padStart(6)} req/s  p50 ${r.p50Ms} ms  p99 ${r.p99Ms} ms  mean batch ${r.meanBatchRows}\n`);
        }
      } finally {
        const code = await srv.stop();
        if (code !== 0) process.stderr.write(`bench serve: the ${variant} server exited with ${code} on SIGTERM\n`);
      }
    }
    const doc = { bench: 'serve', date: new Date().toISOString(), machine: { ...machineInfo(), name: cfg.machine, gpu: null }, config: { ...cfg, out: undefined }, results };
    mkdirSync(cfg.out, { recursive: true });
    const base = path.join(cfg.out, `serve-${cfg.machine}`);
    writeFileSync(`${base}.json`, JSON.stringify(doc, null, 1) + '\n');
    const md = `# bench serve — ${cfg.machine}\n\n${doc.machine.cpu}, ${doc.machine.cores} cores, Node ${process.version}, ${doc.date.slice(0, 10)}. ` +
      `\`nmsparse serve\` (a child process) on 127.0.0.1, MNIST MLP 784-${cfg.hidden.join('-')}-10 (fc1, fc2 2:4; classifier dense), ` +
      `${cfg.requests} requests of ${cfg.rows} row(s) after ${cfg.warmup} warm-up, ${cfg.concurrency} in flight over keep-alive, ` +
      `max batch ${cfg.maxBatch}, max delay ${cfg.maxDelayMs} ms, device ${cfg.device}. "dense" serves the same pruned weights with --dense. ` +
      `The client runs on the same ${doc.machine.cores} cores as the server (load average at the start: ${doc.machine.loadavg.join(', ')}).\n\n${table(results, cfg)}\n`;
    writeFileSync(`${base}.md`, md);
    process.stdout.write(`\n${table(results, cfg)}\n\nwrote ${base}.json, ${base}.md\n`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
