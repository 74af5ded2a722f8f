/**
 * `nmsparse bench serve`: requests/s and p50/p99 latency of `nmsparse serve` on the MNIST MLP (784 → 1024 →
 * 1024 → 10, ReLU; fc1 and fc2 2:4, the classifier dense, as lib/nn/models.ts builds it), dense vs 2:4.
 *
 * One checkpoint holds the 2:4 weights (the nm form); two child processes serve it (`node dist/cli/serve.js`,
 * exactly what users run): one with --dense (every layer through the dense GEMM), one without (fc1/fc2 through the
 * N:M sparse product). A client in this process keeps `--concurrency` requests in flight over keep-alive
 * connections on 127.0.0.1, each one MNIST-sized row (or `--rows`), in JSON and in raw float32; after a warm-up
 * the four cases alternate over `--rounds` rounds so that other work on the machine falls on all of them alike.
 * With `--hostile F` that fraction of the requests attacks the server instead (a nested-bracket body, a declared
 * oversized body, malformed HTTP, a body that never ends): each must get its 4xx, the good requests' latency is
 * what the table shows, and the servers' RSS after is compared with before. Then the model alone
 * (InferenceModel.forward, no HTTP) per batch size, and what predict() adds to it for a lone request (the
 * batching layer: forward and predict() interleaved, one call at a time). Writes
 * bench-results/serve-<machine>.json and .md (or --out DIR).
 *
 *   nmsparse bench serve [--requests 4000] [--rounds 4] [--concurrency 32] [--rows 1] [--hidden 1024,1024] [--device cpu]
 *                        [--max-batch 64] [--max-delay-ms 0] [--hostile 0] [--model FILE] [--machine NAME] [--out DIR]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { makeWritableDir } from '../io/dir.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NmSparseError } from '../errors.js';
import { UsageError } from '../cli/usage.js';
import { defaultResultsDir, machineInfo, machineName } from './machine.js';
import { prune } from '../mask.js';
import { randn, type Tensor } from '../tensor.js';
import { saveModel, type ArchSpec } from '../io/model-file.js';
import { InferenceModel } from '../serve/model.js';
import type { Device } from '../device.js';

interface Config {
  requests: number;
  /** Fraction of hostile requests (0: none). */
  hostile: number;
  rounds: number;
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
  /** The server's RSS after the warm-up, to compare serverRssMB with. */
  serverRssAfterWarmupMB: number | null;
  /** Hostile requests sent in the measured rounds (each got its 4xx, or the bench failed). */
  hostile: number;
  weightBytes: number;
}

function parse(args: string[]): Config {
  const { values } = parseArgs({
    args, allowPositionals: false,
    options: {
      requests: { type: 'string' }, rounds: { type: 'string' }, warmup: { type: 'string' }, concurrency: { type: 'string' }, rows: { type: 'string' },
      hidden: { type: 'string' }, device: { type: 'string' }, 'max-batch': { type: 'string' }, 'max-delay-ms': { type: 'string' },
      model: { type: 'string' }, machine: { type: 'string' }, out: { type: 'string' }, hostile: { type: 'string' },
    },
  });
  const hostile = values.hostile === undefined ? 0 : Number(values.hostile);
  if (!(hostile >= 0 && hostile <= 0.5)) throw new NmSparseError('E_VALUE', `--hostile: got ${JSON.stringify(values.hostile)}, expected a fraction in [0, 0.5]`);
  const int = (v: string | undefined, name: string, def: number, min = 1): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name}: got ${JSON.stringify(v)}, expected an integer >= ${min}`);
    return n;
  };
  const requests = int(values.requests, 'requests', 4000);
  const hidden = (values.hidden ?? '1024,1024').split(',').map((h) => int(h, 'hidden', 0));
  if (hidden.some((h) => h % 4 !== 0)) throw new UsageError(`--hidden: got ${values.hidden}, expected widths divisible by 4 (2:4)`);
  return {
    requests, hostile, rounds: int(values.rounds, 'rounds', 4), warmup: int(values.warmup, 'warmup', Math.min(500, Math.ceil(requests / 4)), 0), concurrency: int(values.concurrency, 'concurrency', 32),
    rows: int(values.rows, 'rows', 1), hidden, device: values.device ?? 'cpu', maxBatch: int(values['max-batch'], 'max-batch', 64),
    maxDelayMs: int(values['max-delay-ms'], 'max-delay-ms', 0, 0), model: values.model ?? null,
    machine: values.machine ?? machineName(),
    out: values.out ?? defaultResultsDir(),
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
    '--max-delay-ms', String(cfg.maxDelayMs), '--max-rows', String(Math.max(1024, cfg.rows)), ...(dense ? ['--dense'] : []),
    // Slow hostile bodies answered 408 in 2 s rather than holding a connection for the default 30 s.
    ...(cfg.hostile > 0 ? ['--request-timeout-ms', '2000'] : [])];
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

interface Samples { lat: number[]; seconds: number; batches: number; rows: number; hostile: number; hostileWrong: string[] }

/** Raw bytes on a fresh connection; the status of the reply (0 when none came before the close). */
function rawStatus(url: URL, data: string): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect(Number(url.port), url.hostname, () => s.write(data));
    let reply = '';
    s.on('data', (d) => (reply += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0)));
  });
}

const NESTED = '['.repeat(1 << 20);
/** The `i`-th kind of attack and the statuses it must get. */
function attack(url: URL, i: number): [Promise<number>, number[]] {
  const head = 'POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n';
  switch (i % 4) {
    case 0: return [rawStatus(url, `${head}Content-Length: ${NESTED.length}\r\n\r\n${NESTED}`), [400]];
    case 1: return [rawStatus(url, `${head}Content-Length: ${64 << 20}\r\n\r\n{"inputs": [[`), [413]];
    case 2: return [rawStatus(url, 'GET /health HTTP/1.1\r\nHost bench\r\n\r\n'), [400]];
    default: return [rawStatus(url, `${head}Content-Length: 100\r\n\r\n{"inputs": [[0.5,`), [408]];
  }
}

/** `n` requests against one server with `concurrency` in flight; latencies when `keep`. */
async function round(srv: Server, cfg: Config, format: 'json' | 'raw', bodies: Buffer[], n: number, into: Samples | null): Promise<void> {
  const url = new URL(srv.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.concurrency });
  const type = format === 'json' ? 'application/json' : 'application/octet-stream';
  const before = (await getJson(`${srv.url}/info`)).stats as { batches: { batches: number; rows: number } };
  let next = 0;
  const every = cfg.hostile > 0 ? Math.round(1 / cfg.hostile) : 0;
  const attacks: Promise<void>[] = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: cfg.concurrency }, async () => {
    while (next < n) {
      const i = next++;
      if (every && i % every === every - 1) {
        // Not awaited: a slow body takes the server's timeout, and good clients go on meanwhile.
        const [status, want] = attack(url, Math.floor(i / every));
        attacks.push(status.then((st) => {
          if (!into) return;
          into.hostile++;
          if (!want.includes(st)) into.hostileWrong.push(`attack kind ${Math.floor(i / every) % 4}: HTTP ${st}, expected ${want.join(' or ')}`);
        }));
        continue;
      }
      const t = performance.now();
      await post(agent, url, bodies[i % bodies.length], type);
      into?.lat.push(performance.now() - t);
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(attacks);
  agent.destroy();
  if (!into) return;
  const after = (await getJson(`${srv.url}/info`)).stats as { batches: { batches: number; rows: number } };
  into.seconds += seconds;
  into.batches += after.batches.batches - before.batches.batches;
  into.rows += after.batches.rows - before.batches.rows;
}

const r2 = (v: number) => Math.round(v * 100) / 100;

function summarize(s: Samples, cfg: Config): Omit<ServeResult, 'variant' | 'format' | 'weightBytes' | 'serverRssMB' | 'serverRssAfterWarmupMB'> {
  const lat = [...s.lat].sort((a, b) => a - b);
  return {
    requests: lat.length, seconds: r2(s.seconds), requestsPerSecond: Math.round(lat.length / s.seconds), rowsPerSecond: Math.round((lat.length * cfg.rows) / s.seconds),
    hostile: s.hostile, p50Ms: r2(pct(lat, 50)), p90Ms: r2(pct(lat, 90)), p99Ms: r2(pct(lat, 99)), maxMs: r2(lat[lat.length - 1]), meanBatchRows: r2(s.rows / Math.max(1, s.batches)),
  };
}

/** Median time of the model alone (InferenceModel.forward, no HTTP) per batch size, dense vs 2:4, in ms. */
async function modelTimes(file: string, device: Device, batches: number[]): Promise<{ batch: number; denseMs: number; sparseMs: number }[]> {
  const dense = await InferenceModel.load(file, { sparse: false, device }), sparse = await InferenceModel.load(file, { device });
  const out = [];
  for (const b of batches) {
    const x = randn([b, 784], { seed: b, mean: 0.5, std: 0.3 });
    const time = async (m: typeof dense) => {
      const t: number[] = [];
      for (let i = 0; i < 15; i++) { const t0 = performance.now(); await m.forward(x); t.push(performance.now() - t0); }
      return t.sort((a, c) => a - c)[7];
    };
    // alternate, so that a burst of other work on the machine hits both
    let d = Infinity, sp = Infinity;
    for (let k = 0; k < 3; k++) { d = Math.min(d, await time(dense)); sp = Math.min(sp, await time(sparse)); }
    out.push({ batch: b, denseMs: Math.round(d * 1000) / 1000, sparseMs: Math.round(sp * 1000) / 1000 });
  }
  await dense.dispose();
  await sparse.dispose();
  return out;
}

export interface PredictOverhead { batch: number; forwardMs: number; predictMs: number; overheadMs: number }

/**
 * What predict() adds to the model's forward for a lone request (nothing else queued), 2:4 model: `rounds` pairs
 * of calls, one at a time, forward and predict() in alternating order; medians of each and of the pairs' differences.
 */
export async function predictOverhead(file: string, device: Device, batches: number[], rounds = 300): Promise<PredictOverhead[]> {
  const m = await InferenceModel.load(file, { device });
  const out: PredictOverhead[] = [];
  const med = (v: number[]) => [...v].sort((a, c) => a - c)[v.length >> 1];
  const r3 = (v: number) => Math.round(v * 1000) / 1000;
  try {
    for (const b of batches) {
      const x = randn([b, m.inFeatures], { seed: b, mean: 0.5, std: 0.3 });
      const f: number[] = [], p: number[] = [], d: number[] = [];
      const timed = async (fn: () => Promise<unknown>) => { const t0 = performance.now(); await fn(); return performance.now() - t0; };
      for (let i = 0; i < 20; i++) { await m.forward(x); await m.predict(x); }
      for (let i = 0; i < rounds; i++) {
        let tf: number, tp: number;
        if (i % 2) { tf = await timed(() => m.forward(x)); tp = await timed(() => m.predict(x)); }
        else { tp = await timed(() => m.predict(x)); tf = await timed(() => m.forward(x)); }
        f.push(tf); p.push(tp); d.push(tp - tf);
      }
      out.push({ batch: b, forwardMs: r3(med(f)), predictMs: r3(med(p)), overheadMs: r3(med(d)) });
    }
  } finally {
    await m.dispose();
  }
  return out;
}

function overheadTable(o: PredictOverhead[]): string {
  return ['| batch | forward ms | predict() ms | predict() − forward, ms |', '|---:|---:|---:|---:|',
    ...o.map((r) => `| ${r.batch} | ${r.forwardMs} | ${r.predictMs} | ${r.overheadMs} |`)].join('\n');
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

function computeTable(c: { batch: number; denseMs: number; sparseMs: number }[]): string {
  return ['| batch | dense ms | 2:4 ms | 2:4 speed-up |', '|---:|---:|---:|---:|',
    ...c.map((r) => `| ${r.batch} | ${r.denseMs} | ${r.sparseMs} | ${(r.denseMs / r.sparseMs).toFixed(2)}× |`)].join('\n');
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
    process.stdout.write(`bench serve: MNIST MLP 784-${cfg.hidden.join('-')}-10, ${cfg.requests} requests of ${cfg.rows} row(s) per case in ${cfg.rounds} interleaved rounds, ${cfg.concurrency} concurrent, on ${cfg.device} (${cfg.machine})\n`);
    const variants = ['dense', '2:4'] as const, formats = ['json', 'raw'] as const;
    const servers = new Map<string, Server>();
    const results: ServeResult[] = [];
    try {
      for (const v of variants) servers.set(v, await startServer(model, cfg, v === 'dense'));
      const samples = new Map<string, Samples>();
      for (const v of variants) for (const f of formats) {
        samples.set(`${v} ${f}`, { lat: [], seconds: 0, batches: 0, rows: 0, hostile: 0, hostileWrong: [] });
        await round(servers.get(v)!, cfg, f, f === 'json' ? json : raw, cfg.warmup, null);
      }
      const rssWarm = new Map(variants.map((v) => [v, rssMB(servers.get(v)!.child.pid)]));
      // Rounds alternate the cases, so that other work on the machine falls on all of them alike.
      const per = Math.ceil(cfg.requests / cfg.rounds);
      for (let r = 0; r < cfg.rounds; r++)
        for (const v of r % 2 ? [...variants].reverse() : variants)
          for (const f of formats) await round(servers.get(v)!, cfg, f, f === 'json' ? json : raw, per, samples.get(`${v} ${f}`)!);
      for (const v of variants) {
        const info = (await getJson(`${servers.get(v)!.url}/info`)).model as { weightBytes: number };
        for (const f of formats) {
          const sm = samples.get(`${v} ${f}`)!;
          if (sm.hostileWrong.length)
            throw new NmSparseError('E_INTERNAL', `bench serve: ${v} ${f}: ${sm.hostileWrong.length} hostile requests got the wrong answer: ${sm.hostileWrong.slice(0, 3).join('; ')}`);
          const r: ServeResult = { variant: v, format: f, weightBytes: info.weightBytes, serverRssMB: rssMB(servers.get(v)!.child.pid), serverRssAfterWarmupMB: rssWarm.get(v) ?? null, ...summarize(sm, cfg) };
          results.push(r);
          process.stdout.write(`  ${v.padEnd(5)} ${f.padEnd(4)} ${String(r.requestsPerSecond).padStart(6)} req/s  p50 ${r.p50Ms} ms  p99 ${r.p99Ms} ms  mean batch ${r.meanBatchRows}` +
            (cfg.hostile > 0 ? `  (${r.hostile} hostile answered 4xx; server RSS ${r.serverRssAfterWarmupMB} → ${r.serverRssMB} MB)` : '') + '\n');
        }
      }
    } finally {
      for (const [v, srv] of servers) {
        const code = await srv.stop();
        if (code !== 0) process.stderr.write(`bench serve: the ${v} server exited with ${code} on SIGTERM\n`);
      }
    }
    const compute = await modelTimes(model, cfg.device as Device, [1, 16, 64]);
    const overhead = await predictOverhead(model, cfg.device as Device, [1, 8]);
    const doc = { bench: 'serve', date: new Date().toISOString(), machine: { ...machineInfo(), name: cfg.machine, gpu: null }, config: { ...cfg, out: undefined }, results, modelOnly: compute, predictOverhead: overhead };
    makeWritableDir(cfg.out, '--out');
    const base = path.join(cfg.out, `serve-${cfg.machine}`);
    writeFileSync(`${base}.json`, JSON.stringify(doc, null, 1) + '\n');
    const md = `# bench serve — ${cfg.machine}\n\n${doc.machine.cpu}, ${doc.machine.cores} cores, Node ${process.version}, ${doc.date.slice(0, 10)}. ` +
      `\`nmsparse serve\` (a child process) on 127.0.0.1, MNIST MLP 784-${cfg.hidden.join('-')}-10 (fc1, fc2 2:4; classifier dense), ` +
      `${cfg.requests} requests of ${cfg.rows} row(s) after ${cfg.warmup} warm-up, ${cfg.concurrency} in flight over keep-alive, ` +
      (cfg.hostile > 0 ? `${Math.round(cfg.hostile * 100)}% of them hostile (nested, oversized, malformed, slow: every one answered its 4xx; latencies are the good ones'), ` : '') +
      `max batch ${cfg.maxBatch}, max delay ${cfg.maxDelayMs} ms, device ${cfg.device}. "dense" serves the same pruned weights with --dense. ` +
      `The client runs on the same ${doc.machine.cores} cores as the server (load average at the start: ${doc.machine.loadavg.join(', ')}); ` +
      `the cases alternate over ${cfg.rounds} rounds.\n\n${table(results, cfg)}\n\nThe model alone (InferenceModel.forward on the thread pool, no HTTP; best of 3 medians of 15):\n\n${computeTable(compute)}\n\n` +
      `What predict() adds to a lone request (2:4 model; forward and predict() one call at a time, interleaved, medians of 300 pairs; ` +
      `load average ${machineInfo().loadavg.join(', ')}):\n\n${overheadTable(overhead)}\n`;
    writeFileSync(`${base}.md`, md);
    process.stdout.write(`\n${table(results, cfg)}\n\n${computeTable(compute)}\n\n${overheadTable(overhead)}\n\nwrote ${base}.json, ${base}.md\n`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
