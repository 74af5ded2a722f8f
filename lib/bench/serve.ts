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
 * what the table shows, and the servers' RSS at rest after the rounds is compared with at rest after the warm-up
 * (REST_MS). Then the model alone
 * (InferenceModel.forward, no HTTP) per batch size: when onnxruntime-node is installed (a peer, never a
 * dependency: `ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save onnxruntime-node@1.30.0`), against ONNX
 * Runtime on the same weights for the MNIST MLP and a 4096-4096-4096 2:4 MLP, with 64 concurrent clients too;
 * else dense vs 2:4 alone. Last, what predict() adds to forward for a lone request (the batching layer: forward
 * and predict() interleaved, one call at a time). Writes bench-results/serve-<machine>.json and .md
 * (serve-<machine>-hostile.* with --hostile; or --out DIR).
 *
 *   nmsparse bench serve [--requests 4000] [--rounds 4] [--concurrency 32] [--rows 1] [--hidden 1024,1024] [--device cpu]
 *                        [--max-batch 64] [--max-delay-ms 0] [--hostile 0] [--model FILE] [--ort auto|off] [--ort-batch 1,8,64,256]
 *                        [--ort-rounds 7] [--machine NAME] [--out DIR]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
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
import { mlpOnnx, type OnnxLinear } from './onnx.js';

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
  /** Compare with onnxruntime-node when it is installed. */
  ort: boolean;
  ortBatch: number[];
  ortRounds: number;
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
  /** With --hostile: the server's RSS at rest, REST_MS after the rounds. */
  serverRssIdleMB?: number | null;
  /** The server's RSS after the warm-up (with --hostile: at rest, REST_MS after it), to compare serverRssIdleMB with. */
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
      ort: { type: 'string' }, 'ort-batch': { type: 'string' }, 'ort-rounds': { type: 'string' },
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
  if (values.ort !== undefined && values.ort !== 'auto' && values.ort !== 'off') throw new UsageError(`--ort: got ${JSON.stringify(values.ort)}, expected auto or off`);
  const ortBatch = (values['ort-batch'] ?? '1,8,64,256').split(',').map((b) => int(b, 'ort-batch', 0));
  if (hidden.some((h) => h % 4 !== 0)) throw new UsageError(`--hidden: got ${values.hidden}, expected widths divisible by 4 (2:4)`);
  return {
    requests, hostile, rounds: int(values.rounds, 'rounds', 4), warmup: int(values.warmup, 'warmup', Math.min(500, Math.ceil(requests / 4)), 0), concurrency: int(values.concurrency, 'concurrency', 32),
    rows: int(values.rows, 'rows', 1), hidden, device: values.device ?? 'cpu', maxBatch: int(values['max-batch'], 'max-batch', 64),
    maxDelayMs: int(values['max-delay-ms'], 'max-delay-ms', 0, 0), model: values.model ?? null,
    ort: values.ort !== 'off', ortBatch, ortRounds: int(values['ort-rounds'], 'ort-rounds', 7),
    machine: values.machine ?? machineName(),
    out: values.out ?? defaultResultsDir(),
  };
}

/** An MLP the bench builds: input width, then each Linear layer (ReLU between them, none after the last). */
export interface MlpSpec { label: string; input: number; layers: { name: string; out: number; sparse: boolean }[] }

/** The MNIST MLP 784 → hidden… → 10, every hidden layer 2:4, the classifier dense. */
export const mnistMlp = (hidden: number[]): MlpSpec => ({
  label: `MNIST MLP 784-${hidden.join('-')}-10`, input: 784,
  layers: [...hidden.map((out, i) => ({ name: `fc${i + 1}`, out, sparse: true })), { name: 'classifier', out: 10, sparse: false }],
});

/** The 4096-wide MLP of the serving comparison: 4096 → 4096 → 4096, both layers 2:4. */
export const WIDE_MLP: MlpSpec = { label: 'MLP 4096-4096-4096 (2:4)', input: 4096, layers: [{ name: 'fc1', out: 4096, sparse: true }, { name: 'fc2', out: 4096, sparse: true }] };

/**
 * Writes `spec` with seeded weights (the sparse layers pruned 2:4) to `file` in the compressed nm form and
 * returns the same weights as an ONNX model (lib/bench/onnx.ts), for ONNX Runtime.
 */
export async function writeMlp(file: string, spec: MlpSpec): Promise<Uint8Array> {
  const layers: ArchSpec['layers'] = [];
  const tensors = new Map<string, Tensor>();
  const sparsity: Record<string, { pattern: string; recipe: string }> = {};
  const onnx: OnnxLinear[] = [];
  let width = spec.input;
  spec.layers.forEach(({ name, out, sparse }, i) => {
    const bound = 1 / Math.sqrt(width);
    const dense = randn([out, width], { seed: 100 + i, std: bound });
    const w = sparse ? prune(dense, '2:4') : dense, b = randn([out], { seed: 200 + i, std: bound });
    tensors.set(`${name}.weight`, w);
    tensors.set(`${name}.bias`, b);
    if (sparse) sparsity[`${name}.weight`] = { pattern: '2:4', recipe: 'magnitude' };
    const relu = i < spec.layers.length - 1;
    layers.push({ name, type: 'Linear', in: width, out, bias: true });
    if (relu) layers.push({ name: `relu${i + 1}`, type: 'ReLU' });
    onnx.push({ weight: w, bias: b, relu });
    width = out;
  });
  await saveModel(file, tensors, { arch: { type: 'Sequential', layers }, sparsity, compressed: true, metadata: { 'nmsparse.note': `bench serve: seeded ${spec.label}` } });
  return mlpOnnx(onnx);
}

interface Server { child: ChildProcess; url: string; stop(): Promise<number | null> }

/**
 * With --hostile, how long the servers rest before their RSS is taken, after the warm-up and after the rounds: past
 * the 6 s of quiet (--idle-trim-ms) after which a server collects garbage (the servers run under --expose-gc) and
 * gives the freed heap back (lib/serve/server.ts). Under load RSS is V8's young generation, which doubles (to
 * 2 × 16 MB) thousands of requests after RSS first looks settled, plus glibc's heap at the burst's high-water
 * mark: a figure taken then says when the warm-up stopped, not what the requests left behind (2:4 once read
 * 102 MB after the warm-up, 125 MB after the rounds, no leak: the doubling and the high water). At rest both
 * are given back.
 */
const REST_MS = 10_000;

/** Starts `node dist/cli/serve.js` and waits for its "listening on" line. */
function startServer(model: string, cfg: Config, dense: boolean): Promise<Server> {
  const script = fileURLToPath(new URL('../cli/serve.js', import.meta.url));
  const args = [script, '--model', model, '--port', '0', '--host', '127.0.0.1', '--device', cfg.device, '--max-batch', String(cfg.maxBatch),
    '--max-delay-ms', String(cfg.maxDelayMs), '--max-rows', String(Math.max(1024, cfg.rows)), ...(dense ? ['--dense'] : []),
    // Slow hostile bodies answered 408 in 2 s rather than holding a connection for the default 30 s; each holds a
    // /predict slot until then (a few hundred at once at the rates here), so the good clients get their own.
    ...(cfg.hostile > 0 ? ['--request-timeout-ms', '2000', '--max-in-flight', String(cfg.concurrency + 512)] : [])];
  const child = spawn(process.execPath, [...(cfg.hostile > 0 ? ['--expose-gc'] : []), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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

/** Raw bytes on a fresh connection; the status of the reply (0 when none came before the close: then the socket's error), then closed. */
function rawStatus(url: URL, data: string): Promise<{ status: number; error?: string }> {
  return new Promise((resolve) => {
    const s = net.connect(Number(url.port), url.hostname, () => s.write(data));
    let reply = '', error: string | undefined;
    const status = () => Number(/^HTTP\/1\.1 (\d{3}) /.exec(reply)?.[1] ?? 0);
    s.on('data', (d) => { reply += d.toString('latin1'); if (status()) s.destroy(); });
    s.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
    s.on('close', () => resolve({ status: status(), ...(status() ? {} : { error: error ?? 'closed' }) }));
  });
}

const NESTED = '['.repeat(1 << 20);
/** The `i`-th kind of attack and the statuses it must get. */
function attack(url: URL, i: number): [Promise<{ status: number; error?: string }>, number[]] {
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
        attacks.push(status.then(({ status: st, error }) => {
          if (!into) return;
          into.hostile++;
          if (!want.includes(st)) into.hostileWrong.push(`attack kind ${Math.floor(i / every) % 4}: HTTP ${st}${error ? ` (${error})` : ''}, expected ${want.join(' or ')}`);
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

/** The median (the upper middle of an even count) and a round to µs, for the latency tables below. */
const med = (v: number[]) => [...v].sort((a, c) => a - c)[v.length >> 1];
const r3 = (v: number) => Math.round(v * 1000) / 1000;

export interface PredictOverhead { batch: number; forwardMs: number; predictMs: number; overheadMs: number }

/**
 * What predict() adds to the model's forward for a lone request (nothing else queued), 2:4 model: `rounds` pairs
 * of calls, one at a time, forward and predict() in alternating order; medians of each and of the pairs' differences.
 */
export async function predictOverhead(file: string, device: Device, batches: number[], rounds = 300): Promise<PredictOverhead[]> {
  const m = await InferenceModel.load(file, { device });
  const out: PredictOverhead[] = [];
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

/** The part of onnxruntime-node the bench uses (declared here: it is a peer, not a dependency). */
interface OrtTensor { readonly data: unknown; readonly dims: readonly number[] }
interface OrtSession { run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>; release(): Promise<void> }
interface Ort {
  InferenceSession: { create(model: Uint8Array, options: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => OrtTensor;
  env: { versions?: { node?: string } };
}

/** onnxruntime-node when it is installed (and loads), else null and why. */
export async function loadOrt(): Promise<{ ort: Ort | null; note: string }> {
  const spec: string = 'onnxruntime-node'; // a variable: the compiler must not require the package
  try {
    const ort = (await import(spec)) as Ort;
    return { ort, note: `onnxruntime-node ${ort.env.versions?.node ?? '?'}` };
  } catch (e) {
    const missing = (e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND';
    return { ort: null, note: missing ? 'onnxruntime-node is not installed (ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save onnxruntime-node@1.30.0 adds it)' : `onnxruntime-node did not load: ${(e as Error).message}` };
  }
}

/** ONNX Runtime's CPU session as the comparison runs it: 2 intra-op threads, sequential, all graph optimizations. */
export function ortSession(ort: Ort, onnx: Uint8Array): Promise<OrtSession> {
  return ort.InferenceSession.create(onnx, { executionProviders: ['cpu'], intraOpNumThreads: 2, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
}

export interface OrtRow {
  model: string; batch: number;
  /** Medians of single calls, ms. */
  ortMs: number; denseMs: number; sparseMs: number; predictMs: number;
  /** Medians of how long each call held the event loop (until a setImmediate queued with it ran), ms. */
  ortLoopMs: number; sparseLoopMs: number;
}
export interface OrtConcurrent { model: string; clients: number; requests: number; ortP50Ms: number; ortRps: number; predictP50Ms: number; predictRps: number; predictMeanBatch: number }

/**
 * ONNX Runtime dense vs nmsparse dense forward, 2:4 forward and 2:4 predict() on the same weights, per batch:
 * `rounds` rounds, each a block of single calls per case (about 50 ms of them), the order of the cases rotating
 * from round to round so that other work on the machine falls on all of them alike. Then 64 clients with one
 * row each: predict() (batched) against session.run one call at a time. The largest |ORT − nmsparse dense| is
 * checked first (both are float32 GEMMs of the same weights).
 */
/** The pause before each block of ortCompare, ms: longer than ONNX Runtime's idle spin. */
const SETTLE_MS = 60;

async function ortCompare(ort: Ort, spec: MlpSpec, dir: string, batches: number[], rounds: number): Promise<{ file: string; rows: OrtRow[]; concurrent: OrtConcurrent; maxAbsDiff: number }> {
  const file = path.join(dir, `${spec.input}-${spec.layers.map((l) => l.out).join('-')}.safetensors`);
  const session = await ortSession(ort, await writeMlp(file, spec));
  const dense = await InferenceModel.load(file, { sparse: false }), sparse = await InferenceModel.load(file);
  const run = (x: Tensor) => session.run({ x: new ort.Tensor('float32', x.storage() as Float32Array, [...x.shape]) });
  try {
    const probe = randn([8, spec.input], { seed: 7, mean: 0.5, std: 0.3 });
    const a = (await run(probe)).y.data as Float32Array, d = (await dense.forward(probe)).storage() as Float32Array;
    const maxAbsDiff = a.reduce((m, v, i) => Math.max(m, Math.abs(v - d[i])), 0);
    if (!(maxAbsDiff <= 1e-4)) throw new NmSparseError('E_INTERNAL', `bench serve: ONNX Runtime and nmsparse dense differ by ${maxAbsDiff} on ${spec.label}`);
    const rows: OrtRow[] = [];
    for (const b of batches) {
      const x = randn([b, spec.input], { seed: b, mean: 0.5, std: 0.3 });
      const cases: [string, () => Promise<unknown>][] = [['ort', () => run(x)], ['dense', () => dense.forward(x)], ['sparse', () => sparse.forward(x)], ['predict', () => sparse.predict(x)]];
      const t = new Map(cases.map(([k]) => [k, [] as number[]])), loop = new Map(cases.map(([k]) => [k, [] as number[]]));
      // The loop is held until a setImmediate queued with the call runs: past the call's synchronous part, and past
      // its inline work too (nmsparse's small batches run on the calling thread across resolved awaits).
      const once = async (k: string, fn: () => Promise<unknown>) => {
        const t0 = performance.now();
        const p = fn();
        const free = new Promise<number>((res) => setImmediate(() => res(performance.now())));
        await p;
        t.get(k)!.push(performance.now() - t0); loop.get(k)!.push((await free) - t0);
      };
      // warm-up, and the calls per block: about 50 ms of each case
      const reps = new Map<string, number>();
      for (const [k, fn] of cases) {
        for (let i = 0; i < 3; i++) await fn();
        const t0 = performance.now(); await fn();
        reps.set(k, Math.max(2, Math.min(200, Math.round(50 / Math.max(0.01, performance.now() - t0)))));
      }
      for (let r = 0; r < rounds; r++)
        for (let j = 0; j < cases.length; j++) {
          const [k, fn] = cases[(j + r) % cases.length];
          // ONNX Runtime's workers spin for tens of ms after a run (about 40 ms of CPU on Zen 4), on the cores the
          // next block needs: each block starts once the previous case's threads are idle, after untimed calls.
          await new Promise((res) => setTimeout(res, SETTLE_MS));
          for (let i = 0; i < 3; i++) await fn();
          for (let i = 0; i < reps.get(k)!; i++) await once(k, fn);
        }
      const m = (k: string) => r3(med(t.get(k)!));
      rows.push({ model: spec.label, batch: b, ortMs: m('ort'), denseMs: m('dense'), sparseMs: m('sparse'), predictMs: m('predict'), ortLoopMs: r3(med(loop.get('ort')!)), sparseLoopMs: r3(med(loop.get('sparse')!)) });
      process.stdout.write(`  ${spec.label}, batch ${b}: ORT ${m('ort')} ms, dense ${m('dense')} ms, 2:4 ${m('sparse')} ms, 2:4 predict() ${m('predict')} ms\n`);
    }
    // 64 clients, one row each, for about 64 · 40 requests on the MNIST MLP (fewer on a slower model)
    const clients = 64, one = randn([1, spec.input], { seed: 11, mean: 0.5, std: 0.3 });
    const per = rows.find((r) => r.batch === 1)?.ortMs ?? 1;
    const requests = clients * Math.max(4, Math.min(40, Math.round(300 / (clients * per))));
    const load = async (call: () => Promise<unknown>) => {
      const lat: number[] = [];
      let next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: clients }, async () => {
        while (next++ < requests) { const t = performance.now(); await call(); lat.push(performance.now() - t); }
      }));
      return { lat, seconds: (performance.now() - t0) / 1000 };
    };
    let queue: Promise<unknown> = Promise.resolve();
    // one session.run at a time, in arrival order
    const ortOne = () => (queue = queue.then(() => run(one), () => run(one)));
    const res = { ort: { lat: [] as number[], seconds: 0 }, predict: { lat: [] as number[], seconds: 0 } };
    const before = sparse.batchStats;
    for (const k of ['ort', 'predict', 'predict', 'ort'] as const) {
      const r = await load(k === 'ort' ? ortOne : () => sparse.predict(one));
      res[k].lat.push(...r.lat); res[k].seconds += r.seconds;
    }
    const after = sparse.batchStats;
    const concurrent: OrtConcurrent = {
      model: spec.label, clients, requests: 2 * requests, ortP50Ms: r2(med(res.ort.lat)), ortRps: Math.round(res.ort.lat.length / res.ort.seconds),
      predictP50Ms: r2(med(res.predict.lat)), predictRps: Math.round(res.predict.lat.length / res.predict.seconds),
      predictMeanBatch: r2((after.rows - before.rows) / Math.max(1, after.batches - before.batches)),
    };
    return { file, rows, concurrent, maxAbsDiff };
  } finally {
    await dense.dispose();
    await sparse.dispose();
    await session.release();
  }
}

function overheadTable(o: (PredictOverhead & { model: string })[]): string {
  return ['| model | batch | forward ms | predict() ms | predict() − forward, ms |', '|---|---:|---:|---:|---:|',
    ...o.map((r) => `| ${r.model} | ${r.batch} | ${r.forwardMs} | ${r.predictMs} | ${r.overheadMs} |`)].join('\n');
}

const x2 = (v: number) => `${v.toFixed(2)}×`;

function ortTable(rows: OrtRow[]): string {
  return ['| model | batch | ORT dense ms | nmsparse dense `forward` ms | nmsparse 2:4 `forward` ms | nmsparse 2:4 `predict()` ms | dense / ORT speed | 2:4 / ORT speed | loop held per call: ORT / 2:4, ms |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.model} | ${r.batch} | ${r.ortMs} | ${r.denseMs} | ${r.sparseMs} | ${r.predictMs} | ${x2(r.ortMs / r.denseMs)} | ${x2(r.ortMs / r.sparseMs)} | ${r.ortLoopMs} / ${r.sparseLoopMs} |`)].join('\n');
}

function concurrentTable(c: OrtConcurrent[]): string {
  return ['| model | clients | requests per case | ORT session.run p50 ms | ORT req/s | nmsparse 2:4 predict() p50 ms | predict() req/s | mean batch |', '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...c.map((r) => `| ${r.model} | ${r.clients} | ${r.requests} | ${r.ortP50Ms} | ${r.ortRps} | ${r.predictP50Ms} | ${r.predictRps} | ${r.predictMeanBatch} |`)].join('\n');
}

/** Issue 11's targets, each met or not, from the figures measured. */
function targets(rows: OrtRow[], c: OrtConcurrent[], overhead: PredictOverhead[]): string {
  const worst = (f: (r: OrtRow) => number) => rows.reduce((w, r) => (f(r) < f(w) ? r : w));
  const s = worst((r) => r.ortMs / r.sparseMs), d = worst((r) => r.ortMs / r.denseMs);
  const o = overhead.reduce((w, r) => (r.overheadMs > w.overheadMs ? r : w));
  const met = (ok: boolean) => (ok ? '**met**' : '**not met**');
  return [
    `- nmsparse 2:4 forward ≥ 1.3× ORT dense throughput at every batch, both MLPs: ${met(s.ortMs / s.sparseMs >= 1.3)} (lowest ${x2(s.ortMs / s.sparseMs)}, ${s.model} batch ${s.batch})`,
    `- nmsparse dense ≥ 0.9× ORT dense: ${met(d.ortMs / d.denseMs >= 0.9)} (lowest ${x2(d.ortMs / d.denseMs)}, ${d.model} batch ${d.batch})`,
    `- predict() adds ≤ 0.1 ms to a lone request: ${met(o.overheadMs <= 0.1)} (largest ${o.overheadMs} ms, batch ${o.batch})`,
    ...c.map((r) => `- under ${r.clients} clients predict() beats ORT one-at-a-time session.run, ${r.model}: ${met(r.predictP50Ms < r.ortP50Ms)} (p50 ${r.predictP50Ms} vs ${r.ortP50Ms} ms)`),
  ].join('\n');
}

function table(results: ServeResult[], cfg: Config): string {
  const head = '| model | body | req/s | rows/s | p50 ms | p90 ms | p99 ms | mean batch | server RSS MB | weights KB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|';
  const rows = results.map((r) => `| ${r.variant} | ${r.format} | ${r.requestsPerSecond} | ${r.rowsPerSecond} | ${r.p50Ms} | ${r.p90Ms} | ${r.p99Ms} | ${r.meanBatchRows} | ${r.serverRssMB ?? '–'} | ${Math.round(r.weightBytes / 1024)} |`);
  const ratio = (f: 'json' | 'raw') => {
    const d = results.find((r) => r.variant === 'dense' && r.format === f), s = results.find((r) => r.variant === '2:4' && r.format === f);
    return d && s ? `${f}: 2:4/dense = ${(s.requestsPerSecond / d.requestsPerSecond).toFixed(2)}× req/s, p99 ${(s.p99Ms / d.p99Ms).toFixed(2)}×` : '';
  };
  // With hostile requests: the servers' memory at rest after them against at rest after the warm-up (the target: within 10%).
  const rss = cfg.hostile > 0 ? results.filter((r) => r.serverRssIdleMB && r.serverRssAfterWarmupMB).map((r) => {
    const q = r.serverRssIdleMB! / r.serverRssAfterWarmupMB!;
    return `${r.variant} ${r.format}: ${r.hostile} hostile requests answered 4xx; server RSS ${r.serverRssAfterWarmupMB} MB at rest after the warm-up → ` +
      `${r.serverRssMB} MB right after the rounds → ${r.serverRssIdleMB} MB at rest (${x2(q)} the warm-up's, within 10%: ${q <= 1.1 ? '**met**' : '**not met**'})`;
  }) : [];
  return [head, ...rows, '', ratio('json'), ratio('raw'), ...(rss.length ? ['', ...rss] : [])].join('\n');
}

function computeTable(c: { batch: number; denseMs: number; sparseMs: number }[]): string {
  return ['| batch | dense ms | 2:4 ms | 2:4 speed-up |', '|---:|---:|---:|---:|',
    ...c.map((r) => `| ${r.batch} | ${r.denseMs} | ${r.sparseMs} | ${(r.denseMs / r.sparseMs).toFixed(2)}× |`)].join('\n');
}

/** `nmsparse bench serve ...` (dispatched by lib/bench/index.ts). */
export async function benchServe(args: string[]): Promise<void> {
  const cfg = parse(args);
  const loadAtStart = loadavg(); // the 1-minute figure lags: it includes little of this bench yet
  const tmp = mkdtempSync(path.join(tmpdir(), 'nmsparse-bench-serve-'));
  try {
    const model = cfg.model ?? path.join(tmp, 'mnist-mlp-2of4.safetensors');
    if (!cfg.model) await writeMlp(model, mnistMlp(cfg.hidden));
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
      for (const v of variants) for (const f of formats) samples.set(`${v} ${f}`, { lat: [], seconds: 0, batches: 0, rows: 0, hostile: 0, hostileWrong: [] });
      // Warm-up until each server's RSS settles (V8 sizes its young generation to the allocation rate, and RSS
      // follows): rounds of --warmup requests per body, at least 4, until two in a row change it by under 2%, at most 8.
      for (const v of variants) {
        let prev = rssMB(servers.get(v)!.child.pid), calm = 0;
        for (let r = 0; r < 8 && calm < 2 && cfg.warmup > 0; r++) {
          for (const f of formats) await round(servers.get(v)!, cfg, f, f === 'json' ? json : raw, cfg.warmup, null);
          const now = rssMB(servers.get(v)!.child.pid);
          calm = r >= 3 && prev !== null && now !== null && Math.abs(now - prev) / prev < 0.02 ? calm + 1 : 0;
          prev = now;
        }
      }
      if (cfg.hostile > 0) await new Promise((r) => setTimeout(r, REST_MS));
      const rssWarm = new Map(variants.map((v) => [v, rssMB(servers.get(v)!.child.pid)]));
      // Rounds alternate the cases, so that other work on the machine falls on all of them alike.
      const per = Math.ceil(cfg.requests / cfg.rounds);
      for (let r = 0; r < cfg.rounds; r++)
        for (const v of r % 2 ? [...variants].reverse() : variants)
          for (const f of formats) await round(servers.get(v)!, cfg, f, f === 'json' ? json : raw, per, samples.get(`${v} ${f}`)!);
      const rssAfter = new Map(variants.map((v) => [v, rssMB(servers.get(v)!.child.pid)]));
      if (cfg.hostile > 0) await new Promise((r) => setTimeout(r, REST_MS));
      const rssIdle = new Map(variants.map((v) => [v, rssMB(servers.get(v)!.child.pid)]));
      for (const v of variants) {
        const info = (await getJson(`${servers.get(v)!.url}/info`)).model as { weightBytes: number };
        for (const f of formats) {
          const sm = samples.get(`${v} ${f}`)!;
          if (sm.hostileWrong.length)
            throw new NmSparseError('E_INTERNAL', `bench serve: ${v} ${f}: ${sm.hostileWrong.length} hostile requests got the wrong answer: ${sm.hostileWrong.slice(0, 3).join('; ')}`);
          const r: ServeResult = { variant: v, format: f, weightBytes: info.weightBytes, serverRssMB: rssAfter.get(v) ?? null, serverRssAfterWarmupMB: rssWarm.get(v) ?? null,
            ...(cfg.hostile > 0 ? { serverRssIdleMB: rssIdle.get(v) ?? null } : {}), ...summarize(sm, cfg) };
          results.push(r);
          process.stdout.write(`  ${v.padEnd(5)} ${f.padEnd(4)} ${String(r.requestsPerSecond).padStart(6)} req/s  p50 ${r.p50Ms} ms  p99 ${r.p99Ms} ms  mean batch ${r.meanBatchRows}` +
            (cfg.hostile > 0 ? `  (${r.hostile} hostile answered 4xx; server RSS at rest ${r.serverRssAfterWarmupMB} → ${r.serverRssMB} MB under load → ${r.serverRssIdleMB} MB at rest)` : '') + '\n');
        }
      }
    } finally {
      for (const [v, srv] of servers) {
        const code = await srv.stop();
        if (code !== 0) process.stderr.write(`bench serve: the ${v} server exited with ${code} on SIGTERM\n`);
      }
    }
    // With ONNX Runtime installed, its comparison (both MLPs, every batch) replaces the served model's dense vs 2:4 table.
    const peer = cfg.ort && cfg.device === 'cpu' ? await loadOrt() : { ort: null, note: cfg.ort ? `ONNX Runtime runs on the CPU only, not ${cfg.device}` : '--ort off' };
    const ortLoad = machineInfo().loadavg;
    const compared = [];
    if (peer.ort) {
      process.stdout.write(`\nvs ONNX Runtime (${peer.note}, CPU, 2 intra-op threads), ${cfg.ortRounds} interleaved rounds per batch:\n`);
      for (const spec of [mnistMlp(cfg.hidden), WIDE_MLP]) compared.push(await ortCompare(peer.ort, spec, tmp, cfg.ortBatch, cfg.ortRounds));
    } else process.stdout.write(`\nno ONNX Runtime comparison: ${peer.note}\n`);
    const compute = peer.ort ? null : await modelTimes(model, cfg.device as Device, [1, 16, 64]);
    const overhead: (PredictOverhead & { model: string })[] = [];
    for (const [label, file] of [[cfg.model ? path.basename(cfg.model) : mnistMlp(cfg.hidden).label, model], ...compared.slice(1).map((c) => [c.concurrent.model, c.file])])
      overhead.push(...(await predictOverhead(file, cfg.device as Device, [1, 8])).map((o) => ({ ...o, model: label })));
    type OrtDoc = { version: string; loadavg: number[]; maxAbsDiff: { model: string; maxAbsDiff: number }[]; rows: OrtRow[]; concurrent: OrtConcurrent[] } | { skipped: string };
    const ort: OrtDoc = peer.ort ? { version: peer.note, loadavg: ortLoad, maxAbsDiff: compared.map((c) => ({ model: c.concurrent.model, maxAbsDiff: c.maxAbsDiff })), rows: compared.flatMap((c) => c.rows), concurrent: compared.map((c) => c.concurrent) } : { skipped: peer.note };
    const doc = { bench: 'serve', date: new Date().toISOString(), machine: { ...machineInfo(), name: cfg.machine, gpu: null }, loadavgAtStart: loadAtStart, config: { ...cfg, out: undefined }, results, modelOnly: compute, ort, predictOverhead: overhead };
    makeWritableDir(cfg.out, '--out');
    const base = path.join(cfg.out, `serve-${cfg.machine}${cfg.hostile > 0 ? '-hostile' : ''}`);
    writeFileSync(`${base}.json`, JSON.stringify(doc, null, 1) + '\n');
    const ortMd = 'rows' in ort
      ? `ONNX Runtime (${ort.version}, CPU execution provider, 2 intra-op threads, sequential, all graph optimizations) on the same weights, ` +
        `as an ONNX model the bench writes (Gemm + Relu, lib/bench/onnx.ts); largest |ORT − nmsparse dense| ${ort.maxAbsDiff.map((d) => `${d.maxAbsDiff.toExponential(1)} (${d.model})`).join(', ')}. ` +
        `Medians of single calls, one call at a time, in blocks of ~50 ms per case whose order rotates over ${cfg.ortRounds} rounds, each block after a ${SETTLE_MS} ms pause and 3 untimed calls (ONNX Runtime's threads spin for tens of ms after its runs, on the cores the next case needs) (load average before: ${ortLoad.map((v) => v.toFixed(2)).join(', ')}):\n\n${ortTable(ort.rows)}\n\n` +
        `64 clients with one row each (predict() batches the rows that queue; ONNX Runtime runs them one session.run at a time), latency of a request:\n\n${concurrentTable(ort.concurrent)}\n\n` +
        `Targets (issue 11):\n\n${targets(ort.rows, ort.concurrent, overhead)}\n\n`
      : `No ONNX Runtime comparison: ${ort.skipped}.\n\nThe model alone (InferenceModel.forward on the thread pool, no HTTP; best of 3 medians of 15):\n\n${computeTable(compute!)}\n\n`;
    const md = `# bench serve — ${cfg.machine}\n\n${doc.machine.cpu} (${doc.machine.cpuId ?? '?'}), ${doc.machine.cores} cores, Node ${process.version}, ${doc.date.slice(0, 10)}. ` +
      `\`nmsparse serve\` (a child process) on 127.0.0.1, MNIST MLP 784-${cfg.hidden.join('-')}-10 (fc1, fc2 2:4; classifier dense), ` +
      `${cfg.requests} requests of ${cfg.rows} row(s) after warm-up rounds of ${cfg.warmup} until the server's RSS settles, ${cfg.concurrency} in flight over keep-alive, ` +
      (cfg.hostile > 0 ? `${Math.round(cfg.hostile * 100)}% of them hostile (nested, oversized, malformed, slow: every one answered its 4xx; latencies are the good ones'; the servers run with --request-timeout-ms 2000 and --max-in-flight ${cfg.concurrency + 512}, since a slow body holds a slot until its 408; ` +
        `RSS is compared at rest, ${REST_MS / 1000} s after the warm-up and after the rounds, the servers under node --expose-gc so that after 6 s of quiet they collect garbage and give the freed heap back: ` +
        `under load RSS is V8's young generation, which doubles thousands of requests after RSS first looks settled, plus glibc's heap at the burst's high-water mark, which says when the warm-up stopped rather than what the requests left behind), ` : '') +
      `max batch ${cfg.maxBatch}, max delay ${cfg.maxDelayMs} ms, device ${cfg.device}. "dense" serves the same pruned weights with --dense. ` +
      `The client runs on the same ${doc.machine.cores} cores as the server (load average at the start: ${loadAtStart.map((v) => v.toFixed(2)).join(', ')}; later ones include this bench's own processes); ` +
      `the cases alternate over ${cfg.rounds} rounds.\n\n${table(results, cfg)}\n\n${ortMd}` +
      `What predict() adds to a lone request (2:4 model; forward and predict() one call at a time, interleaved, medians of 300 pairs; ` +
      `load average ${machineInfo().loadavg.join(', ')}):\n\n${overheadTable(overhead)}\n`;
    writeFileSync(`${base}.md`, md);
    process.stdout.write(`\n${table(results, cfg)}\n\n${'rows' in ort ? `${ortTable(ort.rows)}\n\n${concurrentTable(ort.concurrent)}\n\n${targets(ort.rows, ort.concurrent, overhead)}` : computeTable(compute!)}\n\n${overheadTable(overhead)}\n\nwrote ${base}.json, ${base}.md\n`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
