/**
 * `nmsparse bench cpu`: the CPU products side by side, in one run, on this machine.
 *   square  M = N = K:   dense matmul(W, B)      vs 2:4 S.matmul(B) = sparseMatmul(S, B)   vs OpenBLAS sgemm
 *   linear  per --batch: dense linear(x, W)      vs 2:4 nm.linear(x, S) = sparseLinear      vs OpenBLAS sgemm (x·Wᵀ)
 * GFLOP/s count 2·M·N·K for every column, so the sparse column is the dense work it replaces. Each timing is the
 * median of several runs after a warm-up; ours take turns, OpenBLAS runs after them and is followed by a pause
 * so that its spinning threads do not slow the next measurement. Prints a table and writes
 * bench-results/cpu-<machine>.json and .md (under the working directory, or --out).
 *
 *   nmsparse bench cpu [--sizes 512,1024,2048,4096] [--batch 256 | 1,8,64,...] [--no-linear] [--reps N] [--threads N]
 *                      [--openblas-core NAME] [--machine NAME] [--out DIR] [--no-write]
 * --openblas-core sets OPENBLAS_CORETYPE (e.g. SkylakeX: OpenBLAS's AVX-512 kernels, which its DYNAMIC_ARCH
 * builds do not pick by themselves on CPUs newer than they know) and adds `-openblas-<name>` to the file names.
 */
import { writeFileSync } from 'node:fs';
import { makeWritableDir } from '../io/dir.js';
import { loadavg } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { UsageError } from '../cli/usage.js';
import { native } from '../native.js';
import { randn, type Tensor } from '../tensor.js';
import { compress } from '../compress.js';
import { linear, matmul } from '../gemm.js';
import { sparseLinear, sparseMatmul } from '../spmm.js';
import { defaultResultsDir, machineInfo, type MachineInfo } from './machine.js';

interface Config {
  sizes: number[];
  batch: number[];
  linear: boolean;
  reps: number | null;
  threads: number | null;
  machine: string | null;
  openblasCore: string | null;
  out: string;
  write: boolean;
}

export interface Timing {
  medianMs: number;
  minMs: number;
  runs: number;
  gflops: number;
}

export interface CpuResult {
  case: string;
  kind: 'square' | 'linear';
  /** The product as a GEMM: [m, k]·[k, n]. */
  m: number;
  n: number;
  k: number;
  flops: number;
  dense: Timing;
  sparse: Timing;
  openblas: Timing | null;
  sparseOverDense: number;
  denseOverOpenblas: number | null;
  sparseOverOpenblas: number | null;
  /** Bytes of the 2:4 SparseTensor (values + packed positions) and of the dense float32 weight. */
  sparseBytes: number;
  denseBytes: number;
}


function positiveInts(s: string, arg: string): number[] {
  const v = s.split(',').map((x) => Number(x.trim()));
  if (v.length === 0 || v.some((x) => !Number.isSafeInteger(x) || x < 1))
    throw new UsageError(`${arg}: got "${s}", expected positive integers separated by commas`);
  return v;
}

function parse(args: string[]): Config {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        sizes: { type: 'string' }, batch: { type: 'string' }, 'no-linear': { type: 'boolean' }, reps: { type: 'string' },
        threads: { type: 'string' }, machine: { type: 'string' }, out: { type: 'string' }, 'no-write': { type: 'boolean' },
        'openblas-core': { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]} (see nmsparse bench cpu --help)`);
  }
  return {
    sizes: values.sizes ? positiveInts(values.sizes, '--sizes') : [512, 1024, 2048, 4096],
    batch: values.batch ? positiveInts(values.batch, '--batch') : [256],
    linear: !values['no-linear'],
    reps: values.reps ? positiveInts(values.reps, '--reps')[0] : null,
    threads: values.threads ? positiveInts(values.threads, '--threads')[0] : null,
    machine: values.machine ?? null,
    openblasCore: values['openblas-core'] ?? null,
    out: values.out ?? defaultResultsDir(),
    write: !values['no-write'],
  };
}

interface Method {
  name: 'dense' | 'sparse' | 'openblas';
  run: () => void;
  times: number[];
}

function summarize(times: number[], flops: number): Timing {
  const s = [...times].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { medianMs: round(median, 3), minMs: round(s[0], 3), runs: s.length, gflops: round(flops / (median * 1e6), 1) };
}

const round = (x: number, d: number): number => Math.round(x * 10 ** d) / 10 ** d;

/**
 * Times the methods: a warm-up, then `reps` timed rounds (or enough for ~0.6 s each, 5 to 200) in which ours take
 * turns; OpenBLAS's rounds come after ours, then a pause: its worker threads spin for a while after each call
 * (2^28 cycles by default), which would otherwise take a core from whatever is timed next.
 */
async function measure(methods: Method[], reps: number | null): Promise<void> {
  const once = (m: Method): number => {
    const t0 = performance.now();
    m.run();
    return performance.now() - t0;
  };
  const ours = methods.filter((m) => m.name !== 'openblas'), peer = methods.filter((m) => m.name === 'openblas');
  let slowest = 0;
  for (const m of ours) slowest = Math.max(slowest, once(m), once(m));
  const rounds = reps ?? Math.min(200, Math.max(5, Math.ceil(600 / Math.max(slowest, 1e-3))));
  for (let r = 0; r < rounds; r++) for (const m of ours) m.times.push(once(m));
  for (const m of peer) {
    once(m);
    once(m);
    for (let r = 0; r < rounds; r++) m.times.push(once(m));
    await sleep(300);
  }
}

async function benchCase(kind: 'square' | 'linear', m: number, n: number, k: number, cfg: Config, blas: boolean): Promise<CpuResult> {
  // square: W [m, k] sparse, B [k, n]: Y = W·B.   linear: x [m = batch, k = in], W [n = out, k]: Y = x·Wᵀ.
  const seed = m * 7 + n * 3 + k;
  let dense: () => void, sparse: () => void, peer: (() => void) | null = null;
  let W: Tensor, S: ReturnType<typeof compress>;
  if (kind === 'square') {
    W = randn([m, k], { seed });
    const B = randn([k, n], { seed: seed + 1 });
    S = compress(W, '2:4');
    const out = randn([m, n], { seed: 0 });
    dense = () => matmul(W, B, { out });
    sparse = () => sparseMatmul(S, B, { out });
    if (blas) {
      const a = W.storage() as Float32Array, b = B.storage() as Float32Array, c = out.storage() as Float32Array;
      peer = () => native.blasSgemm({ a, b, c, m, n, k, transA: false, transB: false });
    }
  } else {
    const x = randn([m, k], { seed });
    W = randn([n, k], { seed: seed + 1 });
    S = compress(W, '2:4');
    const out = randn([m, n], { seed: 0 });
    dense = () => linear(x, W, null, { out });
    sparse = () => sparseLinear(x, S, null, { out });
    if (blas) {
      const a = x.storage() as Float32Array, b = W.storage() as Float32Array, c = out.storage() as Float32Array;
      peer = () => native.blasSgemm({ a, b, c, m, n, k, transA: false, transB: true });
    }
  }
  const methods: Method[] = [{ name: 'dense', run: dense, times: [] }, { name: 'sparse', run: sparse, times: [] }];
  if (peer) methods.push({ name: 'openblas', run: peer, times: [] });
  await measure(methods, cfg.reps);
  const flops = 2 * m * n * k;
  const [d, s] = [summarize(methods[0].times, flops), summarize(methods[1].times, flops)];
  const o = peer ? summarize(methods[2].times, flops) : null;
  const r = {
    case: kind === 'square' ? `${m}³` : `linear ${k}→${n}, batch ${m}`,
    kind, m, n, k, flops,
    dense: d, sparse: s, openblas: o,
    sparseOverDense: round(s.gflops / d.gflops, 2),
    denseOverOpenblas: o ? round(d.gflops / o.gflops, 2) : null,
    sparseOverOpenblas: o ? round(s.gflops / o.gflops, 2) : null,
    sparseBytes: S.bytes,
    denseBytes: S.denseBytes,
  };
  S.dispose();
  return r;
}

const COLUMNS = ['shape', 'dense GFLOP/s', '2:4 GFLOP/s', '2:4 / dense', 'OpenBLAS GFLOP/s', 'dense / OpenBLAS', '2:4 / OpenBLAS', '2:4 bytes / dense'];

function row(r: CpuResult): string[] {
  const f = (x: number | null | undefined, d = 1): string => (x === null || x === undefined ? '–' : x.toFixed(d));
  return [r.case, f(r.dense.gflops), f(r.sparse.gflops), f(r.sparseOverDense, 2) + '×', f(r.openblas?.gflops),
    r.denseOverOpenblas === null ? '–' : f(r.denseOverOpenblas, 2) + '×', r.sparseOverOpenblas === null ? '–' : f(r.sparseOverOpenblas, 2) + '×',
    f(r.sparseBytes / r.denseBytes, 3)];
}

function textTable(rows: string[][]): string {
  const all = [COLUMNS, ...rows];
  const w = COLUMNS.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(COLUMNS), w.map((x) => '-'.repeat(x)).join('  '), ...rows.map(line)].join('\n');
}

function markdown(doc: { date: string; machine: MachineInfo; results: CpuResult[]; loadavgAfter: number[] }): string {
  const m = doc.machine;
  const t = (r: string[]): string => `| ${r.join(' | ')} |`;
  const squares = doc.results.filter((r) => r.kind === 'square' && r.m >= 1024);
  const min = (xs: Array<number | null>): string => {
    const v = xs.filter((x): x is number => x !== null);
    return v.length ? Math.min(...v).toFixed(2) + '×' : '–';
  };
  return [
    `# bench cpu — ${m.name}`,
    '',
    `${m.cpu}${m.cpuId ? ` (${m.cpuId})` : ''}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}; Node ${m.node}, nmsparse ${m.nmsparse}, ` +
      `CPU kernels: ${m.cpuIsa.active} on ${m.threads} threads; peer: ${m.openblas.available ? `${m.openblas.config ?? 'OpenBLAS'} (core ${m.openblas.corename ?? '?'})` : `none (${m.openblas.error})`}. ` +
      `${doc.date.slice(0, 10)}; load average ${m.loadavg.join(' ')} before, ${doc.loadavgAfter.join(' ')} after.`,
    '',
    'GFLOP/s count 2·M·N·K for every column (the sparse column is the dense work it replaces); median of the runs.',
    '',
    t(COLUMNS),
    t(COLUMNS.map((_, i) => (i === 0 ? '---' : '---:'))),
    ...doc.results.map((r) => t(row(r))),
    '',
    'Targets, at worst over the square shapes ≥ 1024:',
    '',
    ...([['2:4 ≥ 1.6× our dense', squares.map((r) => r.sparseOverDense), 1.6], ['our dense ≥ 0.6× OpenBLAS', squares.map((r) => r.denseOverOpenblas), 0.6],
      ['2:4 ≥ 1.0× OpenBLAS', squares.map((r) => r.sparseOverOpenblas), 1.0]] as const).map(([what, v, goal]) => {
      const known = (v as readonly (number | null)[]).filter((x): x is number => x !== null);
      if (known.length === 0) return `- ${what}: not measured`;
      return `- ${what}: ${known.every((x) => x >= goal) ? 'met' : '**not met**'} (${min([...known])})`;
    }),
    '',
  ].join('\n');
}

export async function benchCpu(args: string[]): Promise<void> {
  const cfg = parse(args);
  if (cfg.threads !== null) native.setNumThreads(cfg.threads);
  if (cfg.machine) process.env.NMSPARSE_MACHINE = cfg.machine;
  // OpenBLAS reads OPENBLAS_CORETYPE when it is loaded, which is at the first blasPeer() call (machineInfo).
  if (cfg.openblasCore) {
    if (!/^[A-Za-z0-9]+$/.test(cfg.openblasCore)) throw new UsageError(`--openblas-core: got "${cfg.openblasCore}", expected a core name like SkylakeX`);
    process.env.OPENBLAS_CORETYPE = cfg.openblasCore;
  }
  const machine = machineInfo();
  const blas = machine.openblas.available;
  process.stdout.write(`bench cpu: ${machine.cpu}, ${machine.cores} cores, ${machine.cpuIsa.active} kernels on ${machine.threads} threads; ` +
    `OpenBLAS: ${blas ? `${machine.openblas.corename ?? ''} ${machine.openblas.path}` : `not available (${machine.openblas.error})`}\n`);
  const shapes: Array<['square' | 'linear', number, number, number]> = cfg.sizes.map((s) => ['square', s, s, s] as ['square', number, number, number]);
  // Linear layers per batch: the two 4096/1024 shapes, and below 256 rows also the square hidden layers of the
  // serving MLPs (1024 and 4096 wide), where a service's few rows decide the speed.
  if (cfg.linear)
    for (const b of cfg.batch) {
      shapes.push(['linear', b, 4096, 1024], ['linear', b, 1024, 4096]);
      if (b < 256) shapes.push(['linear', b, 1024, 1024], ['linear', b, 4096, 4096]);
    }
  const results: CpuResult[] = [];
  for (const [kind, m, n, k] of shapes) {
    const r = await benchCase(kind, m, n, k, cfg, blas);
    results.push(r);
    process.stdout.write(`  ${r.case}: dense ${r.dense.gflops} GFLOP/s, 2:4 ${r.sparse.gflops} (${r.sparseOverDense}×)` +
      (r.openblas ? `, OpenBLAS ${r.openblas.gflops}` : '') + '\n');
  }
  const doc = { bench: 'cpu', date: new Date().toISOString(), machine, config: { ...cfg, out: undefined }, results, loadavgAfter: loadavg().map((x) => round(x, 2)) };
  process.stdout.write('\n' + textTable(results.map(row)) + '\n');
  if (cfg.write) {
    makeWritableDir(cfg.out, '--out');
    const base = path.join(cfg.out, `cpu-${machine.name}${cfg.openblasCore ? `-openblas-${cfg.openblasCore.toLowerCase()}` : ''}`);
    writeFileSync(base + '.json', JSON.stringify(doc, null, 2) + '\n');
    writeFileSync(base + '.md', markdown(doc));
    process.stdout.write(`wrote ${base}.json and .md\n`);
  }
}
