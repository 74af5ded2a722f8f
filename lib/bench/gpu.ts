/**
 * `nmsparse bench gpu` (npm run bench:gpu): 2:4 sparse GEMM through cuSPARSELt against cuBLASLt dense on the same
 * GPU, in one run, for the issue's shapes; our Node path against the same cuSPARSELt plan driven from a native loop;
 * prune + compress throughput against a device-to-device copy. Writes bench-results/gpu-<gpu>.json and .md.
 *
 *   nmsparse bench gpu [--quick] [--dtypes float16,bfloat16,int8,e4m3,float32] [--iters 20] [--warmup 5]
 *                      [--no-search] [--overhead-iters 200] [--budget-s 900] [--out DIR]
 *
 * --quick: float16, bfloat16 and int8 at 4096³ and 8192³ and two Linear shapes, in under 4 minutes on an H100.
 * Every GEMM time is a median over `iters` interleaved rounds (sparse, then each of cuBLASLt's top heuristics, so
 * that clock ramps fall on both), each sample many back-to-back calls between one pair of CUDA events, on random
 * data (never zeros), inputs rotated among copies so that small problems do not run from L2; dense is the fastest
 * heuristic. Sparse TFLOP/s counts the dense FLOPs replaced (2·M·N·K), so the ratio sparse/dense is the speed-up.
 * The JSON is rewritten after every row (a run cut short keeps what it measured); rows past --budget-s are skipped
 * and say so. Layout: the Linear one, Y[N, M] = X[N, K] · W[M, K]ᵀ with W 2:4 (float32:
 * 1:2, cuSPARSELt's rule), M = out features, N = tokens, K = in features. Nothing here is a test: it prints what the
 * GPU did and records it, with the machine, driver and library versions.
 */
import { writeFileSync } from 'node:fs';
import { makeWritableDir } from '../io/dir.js';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { backendInfo } from '../backend-info.js';
import { benchGemm, benchNativeLoop, clearPlans, planInfo, synchronize, type GemmBenchResult } from '../cuda.js';
import { compress } from '../compress.js';
import { sparseLinear as linear } from '../spmm.js';
import { randn } from '../tensor.js';
import { NmSparseError } from '../errors.js';
import { UsageError } from '../cli/usage.js';
import { defaultResultsDir, machineInfo, slug } from './machine.js';

const BENCH_DTYPES = ['float16', 'bfloat16', 'float32', 'int8', 'e4m3'] as const;
type BenchDtype = (typeof BENCH_DTYPES)[number];

interface GemmRow {
  kind: 'square' | 'linear';
  dtype: BenchDtype;
  m: number;
  n: number;
  k: number;
  sparseMs: number | null;
  denseMs: number | null;
  sparseTflops: number | null;
  denseTflops: number | null;
  ratio: number | null;
  algId: number;
  splitK: number;
  denseHeuristic: number;
  batch: number;
  rounds: number;
  maxRelErr: number | null;
  notes: string[];
  compress?: { pruneMs: number | null; compressMs: number | null; copyMs: number | null; weightBytes: number };
}

interface OverheadRow {
  m: number;
  n: number;
  k: number;
  path: string;
  nodeMsPerCall: number;
  nativeMsPerCall: number;
  nativeHostUsPerCall: number;
  overheadPct: number;
}

interface CompressRow {
  rows: number;
  cols: number;
  dtype: string;
  pruneGBs: number | null;
  compressGBs: number | null;
  pruneCompressGBs: number | null;
  copyGBs: number | null;
  ratioToCopy: number | null;
  nmCompressMs: number;
}

const fmt = (v: number | null | undefined, d = 1): string => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d));
const tflops = (m: number, n: number, k: number, ms: number | null): number | null => (ms && ms > 0 ? (2 * m * n * k) / (ms * 1e-3) / 1e12 : null);

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function gemmRow(kind: GemmRow['kind'], dtype: BenchDtype, m: number, n: number, k: number, r: GemmBenchResult): GemmRow {
  const sparseTflops = tflops(m, n, k, r.sparseMs), denseTflops = tflops(m, n, k, r.denseMs);
  const notes: string[] = [];
  if (r.sparseError) notes.push(`sparse: ${r.sparseError}`);
  if (r.denseError) notes.push(`dense: ${r.denseError}`);
  return {
    kind, dtype, m, n, k,
    sparseMs: r.sparseMs, denseMs: r.denseMs, sparseTflops, denseTflops,
    ratio: sparseTflops && denseTflops ? sparseTflops / denseTflops : null,
    algId: r.algId, splitK: r.splitK, denseHeuristic: r.denseHeuristic, batch: r.batch, rounds: r.rounds, maxRelErr: r.maxRelErr, notes,
    compress: { pruneMs: r.pruneMs, compressMs: r.compressMs, copyMs: r.copyMs, weightBytes: r.weightBytes },
  };
}

/** nm.linear through our whole Node path vs the same plan in a native loop (both forced onto the sparse path). */
function overhead(m: number, n: number, k: number, iters: number): OverheadRow {
  const before = process.env.NMSPARSE_CUDA_DISPATCH;
  process.env.NMSPARSE_CUDA_DISPATCH = 'sparse';
  try {
    const w = randn([m, k], { seed: 1, dtype: 'float16', device: 'cuda' });
    const x = randn([n, k], { seed: 2, dtype: 'float16', device: 'cuda' });
    const s = compress(w, '2:4');
    for (let i = 0; i < 5; i++) linear(x, s, null, {}).dispose();  // plan, search, check
    synchronize();
    const samples: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < iters; i++) linear(x, s, null, {}).dispose();
      synchronize();
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6 / iters);
    }
    const nat = benchNativeLoop(s, x, iters);
    const natSamples = [nat.msPerCallGpu];
    for (let rep = 0; rep < 4; rep++) natSamples.push(benchNativeLoop(s, x, iters).msPerCallGpu);
    const nodeMs = median(samples), nativeMs = median(natSamples);
    for (const t of [w, x, s]) t.dispose();
    return { m, n, k, path: nat.path, nodeMsPerCall: nodeMs, nativeMsPerCall: nativeMs, nativeHostUsPerCall: nat.usPerCallHost, overheadPct: (nodeMs / nativeMs - 1) * 100 };
  } finally {
    if (before === undefined) delete process.env.NMSPARSE_CUDA_DISPATCH;
    else process.env.NMSPARSE_CUDA_DISPATCH = before;
  }
}

/** nm.compress on cuda (our prune + portable form + cuSPARSELt compression), wall time with a sync. */
function nmCompressMs(rows: number, cols: number): number {
  const w = randn([rows, cols], { seed: 3, dtype: 'float16', device: 'cuda' });
  for (let i = 0; i < 2; i++) compress(w, '2:4').dispose();
  synchronize();
  const t: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = process.hrtime.bigint();
    const s = compress(w, '2:4');
    synchronize();
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
    s.dispose();
  }
  w.dispose();
  return median(t);
}

export async function benchGpu(args: string[]): Promise<void> {
  const { values: o } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      dtypes: { type: 'string' },
      'budget-s': { type: 'string' },
      iters: { type: 'string', default: '20' },
      warmup: { type: 'string', default: '5' },
      'no-search': { type: 'boolean', default: false },
      'overhead-iters': { type: 'string', default: '200' },
      out: { type: 'string', default: defaultResultsDir() },
    },
    allowPositionals: false,
  });
  const dtypes = (o.dtypes ?? (o.quick ? 'float16,bfloat16,int8' : 'float16,bfloat16,int8,e4m3,float32')).split(',').map((s) => s.trim()) as BenchDtype[];
  const iters = Number(o.iters), warmup = Number(o.warmup), search = !o['no-search'];
  const budgetS = Number(o['budget-s'] ?? (o.quick ? 200 : 900));
  for (const [name, v] of [['--iters', iters], ['--warmup', warmup], ['--budget-s', budgetS]] as const)
    if (!Number.isFinite(v) || v < (name === '--iters' ? 1 : 0)) throw new UsageError(`${name}: got ${v}, expected a number >= ${name === '--iters' ? 1 : 0}`);
  for (const d of dtypes)
    if (!BENCH_DTYPES.includes(d)) throw new UsageError(`--dtypes: got ${JSON.stringify(d)}, expected a comma-separated list of ${BENCH_DTYPES.join(', ')}`);
  const info = backendInfo();
  if (!info.cuda.usable) throw new NmSparseError('E_DEVICE', `bench gpu: 'cuda' is not available: ${info.cuda.reason}`);
  const dev = info.cuda.device!;
  const squares = o.quick ? [4096, 8192] : [1024, 2048, 4096, 8192, 16384];
  const tokens = o.quick ? [8192] : [4096, 8192, 16384];
  const linearShapes: Array<[number, number]> = [[4096, 16384], [16384, 4096]];  // in -> out
  console.log(`nmsparse bench gpu · ${dev.name} (sm ${dev.sm}, driver ${dev.driver}) · cuSPARSELt ${info.cuda.cusparselt?.version} · cuBLASLt ${info.cuda.cublaslt?.version}`);
  const started = Date.now();
  const overBudget = () => (Date.now() - started) / 1000 > budgetS;

  const gemm: GemmRow[] = [];
  const ovh: OverheadRow[] = [];
  const comp: CompressRow[] = [];
  const name = `gpu-${slug(dev.name)}`;
  makeWritableDir(o.out!, '--out');
  // Rewritten after every row, so that a run cut short keeps what it measured ("complete": false until the end).
  const save = (complete: boolean) => {
    const result = {
      benchmark: 'gpu',
      date: new Date().toISOString(),
      complete,
      machine: { ...machineInfo(), gpu: dev, cuda: info.cuda },
      settings: { iters, warmup, search, quick: o.quick, dtypes, budgetS },
      gemm,
      overhead: ovh,
      compress: comp,
      plans: planInfo(),
    };
    writeFileSync(path.join(o.out!, `${name}.json`), JSON.stringify(result, null, 2) + '\n');
    writeFileSync(path.join(o.out!, `${name}.md`), markdown(result));
  };
  const run = (kind: GemmRow['kind'], dtype: BenchDtype, m: number, n: number, k: number) => {
    const empty = { kind, dtype, m, n, k, sparseMs: null, denseMs: null, sparseTflops: null, denseTflops: null, ratio: null, algId: -1, splitK: 0, denseHeuristic: -1, batch: 0, rounds: 0, maxRelErr: null };
    let row: GemmRow;
    if (overBudget()) row = { ...empty, notes: [`skipped: past the ${budgetS} s budget`] };
    else {
      try {
        row = gemmRow(kind, dtype, m, n, k, benchGemm({ dtype, m, n, k, warmup, iters, search }));
      } catch (e) {
        row = { ...empty, notes: [String((e as Error).message)] };
      }
    }
    gemm.push(row);
    save(false);
    console.log(`${kind.padEnd(6)} ${dtype.padEnd(8)} M=${m} N=${n} K=${k}: sparse ${fmt(row.sparseTflops)} TFLOP/s, dense ${fmt(row.denseTflops)} TFLOP/s, ratio ${fmt(row.ratio, 2)}x${row.notes.length ? ` (${row.notes.join('; ')})` : ''}`);
  };
  for (const dtype of dtypes) {
    for (const s of squares) run('square', dtype, s, s, s);
    for (const [inF, outF] of linearShapes) for (const t of tokens) run('linear', dtype, outF, t, inF);
  }

  // Our Node path vs the native loop of the same plan (the issue's target is >= 4096³).
  for (const s of o.quick ? [4096] : [1024, 4096, 8192]) {  // inputs made on the host by randn: <= 8192²
    if (overBudget()) {
      console.log(`overhead ${s}³: skipped (past the ${budgetS} s budget)`);
      continue;
    }
    try {
      const r = overhead(s, s, s, Number(o['overhead-iters']));
      ovh.push(r);
      save(false);
      console.log(`overhead ${s}³ float16: node ${fmt(r.nodeMsPerCall, 4)} ms/call, native ${fmt(r.nativeMsPerCall, 4)} ms/call (${fmt(r.overheadPct, 1)}%), path ${r.path}`);
    } catch (e) {
      console.log(`overhead ${s}³: ${(e as Error).message}`);
    }
  }

  // prune + compress vs a device-to-device copy of the same weight (float16 2:4).
  for (const row of gemm.filter((r) => r.kind === 'square' && r.dtype === 'float16' && r.compress)) {
    const c = row.compress!;
    const gbs = (ms: number | null) => (ms && ms > 0 ? c.weightBytes / (ms * 1e-3) / 1e9 : null);
    const pc = c.pruneMs !== null && c.compressMs !== null ? c.pruneMs + c.compressMs : null;
    let nmMs = NaN;
    try {
      // The public path needs a host-made input (randn in JS): bounded to 8192² so the run stays short.
      if (row.m * row.k <= 8192 * 8192 && !overBudget()) nmMs = nmCompressMs(row.m, row.k);
    } catch (e) {
      console.log(`nm.compress ${row.m}x${row.k}: ${(e as Error).message}`);
    }
    const r: CompressRow = {
      rows: row.m, cols: row.k, dtype: 'float16',
      pruneGBs: gbs(c.pruneMs), compressGBs: gbs(c.compressMs), pruneCompressGBs: gbs(pc), copyGBs: gbs(c.copyMs),
      ratioToCopy: pc && c.copyMs ? c.copyMs / pc : null, nmCompressMs: nmMs,
    };
    comp.push(r);
    save(false);
    console.log(`compress ${r.rows}x${r.cols} f16: prune ${fmt(r.pruneGBs)} GB/s, compress ${fmt(r.compressGBs)} GB/s, prune+compress ${fmt(r.pruneCompressGBs)} GB/s vs copy ${fmt(r.copyGBs)} GB/s (${fmt((r.ratioToCopy ?? NaN) * 100, 0)}%); nm.compress ${fmt(r.nmCompressMs, 3)} ms`);
  }

  save(true);
  clearPlans();
  console.log('\n' + summary(gemm));
  console.log(`wrote ${path.join(o.out!, name)}.json and .md`);
}

function summary(rows: GemmRow[]): string {
  const lines = ['kind    dtype     M      N      K      sparse TF/s  dense TF/s  ratio'];
  for (const r of rows)
    lines.push(`${r.kind.padEnd(7)} ${r.dtype.padEnd(9)} ${String(r.m).padEnd(6)} ${String(r.n).padEnd(6)} ${String(r.k).padEnd(6)} ${fmt(r.sparseTflops).padStart(11)} ${fmt(r.denseTflops).padStart(11)} ${fmt(r.ratio, 2).padStart(6)}`);
  return lines.join('\n');
}

function markdown(r: {
  date: string; complete: boolean; machine: { hostname: string; cpu: string; gpu: { name: string; sm: string; driver: string | null; memoryBytes: number }; cuda: ReturnType<typeof backendInfo>['cuda'] };
  settings: { iters: number; warmup: number; search: boolean }; gemm: GemmRow[]; overhead: OverheadRow[]; compress: CompressRow[];
}): string {
  const g = r.machine.gpu;
  const out: string[] = [
    `# nmsparse GPU benchmark — ${g.name}`,
    '',
    `${r.date} · ${g.name} (sm ${g.sm}, ${(g.memoryBytes / 2 ** 30).toFixed(0)} GiB, driver ${g.driver}) · CUDA runtime ${r.machine.cuda.runtime} · ` +
      `cuSPARSELt ${r.machine.cuda.cusparselt?.version} · cuBLASLt ${r.machine.cuda.cublaslt?.version} · host ${r.machine.hostname} (${r.machine.cpu})`,
    '',
    ...(r.complete ? [] : ['**Incomplete: the run stopped before its end; the rows below are those it measured.**', '']),
    `Median of ${r.settings.iters} interleaved rounds (sparse, then each cuBLASLt heuristic; each sample many back-to-back calls between two CUDA events) after ${r.settings.warmup} warm-up calls, random data; cusparseLtMatmulSearch ${r.settings.search ? 'on' : 'off'}. ` +
      'Linear layout Y[N, M] = X[N, K]·W[M, K]ᵀ, W 2:4 (float32: 1:2). Sparse TFLOP/s counts the dense FLOPs (2·M·N·K); ratio = sparse / the fastest cuBLASLt heuristic on the same pruned W (dense h = which).',
    '',
    '| shape | dtype | M | N | K | sparse TFLOP/s | dense TFLOP/s | ratio | alg | dense h | calls/sample | max rel. diff | notes |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const x of r.gemm)
    out.push(`| ${x.kind} | ${x.dtype} | ${x.m} | ${x.n} | ${x.k} | ${fmt(x.sparseTflops)} | ${fmt(x.denseTflops)} | ${fmt(x.ratio, 2)}× | ${x.algId}${x.splitK > 1 ? `/sk${x.splitK}` : ''} | ${x.denseHeuristic < 0 ? '–' : x.denseHeuristic} | ${x.batch || '–'} | ${x.maxRelErr === null ? '–' : x.maxRelErr.toExponential(1)} | ${x.notes.join('; ')} |`);
  out.push('', '## Our Node path vs the same cuSPARSELt plan in a native loop (float16, M = N = K)', '',
    '| size | path | Node ms/call | native ms/call | overhead | native host µs/call |', '|---:|---|---:|---:|---:|---:|');
  for (const x of r.overhead)
    out.push(`| ${x.m} | ${x.path} | ${fmt(x.nodeMsPerCall, 4)} | ${fmt(x.nativeMsPerCall, 4)} | ${fmt(x.overheadPct, 1)}% | ${fmt(x.nativeHostUsPerCall, 1)} |`);
  out.push('', '## Prune + compress vs a device-to-device copy (float16 2:4 weight [M, K])', '',
    '| weight | prune GB/s | compress GB/s | prune+compress GB/s | copy GB/s | vs copy | nm.compress ms |', '|---|---:|---:|---:|---:|---:|---:|');
  for (const x of r.compress)
    out.push(`| ${x.rows}×${x.cols} | ${fmt(x.pruneGBs)} | ${fmt(x.compressGBs)} | ${fmt(x.pruneCompressGBs)} | ${fmt(x.copyGBs)} | ${fmt((x.ratioToCopy ?? NaN) * 100, 0)}% | ${fmt(x.nmCompressMs, 3)} |`);
  out.push('', 'GB/s = bytes of the dense weight / time (a copy reads and writes them once each).', '');
  return out.join('\n');
}
