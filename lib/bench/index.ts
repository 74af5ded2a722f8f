/**
 * `nmsparse bench <kind> [options]` (npm run bench -- <kind>): cpu (lib/bench/cpu.ts), gpu (lib/bench/gpu.ts),
 * serve (lib/bench/serve.ts), train (lib/bench/train.ts), ngram (lib/bench/ngram.ts). Each kind is imported only when asked for, so a missing
 * or failing one (a build without the GPU part) fails that kind alone.
 */
import { NmSparseError } from '../errors.js';
import { UsageError, wantsHelp } from '../cli/usage.js';

type Runner = (args: string[]) => Promise<void>;

/**
 * Module file, the name of the function it exports, and its flags, per kind. The flags live here so that
 * `nmsparse bench <kind> --help` works without loading the kind (nor needing it to be built).
 */
const KINDS: Record<string, { file: string; fn: string; what: string; flags: string }> = {
  cpu: {
    file: './cpu.js', fn: 'benchCpu', what: 'dense vs 2:4 sparse vs OpenBLAS on the CPU',
    flags: '[--sizes 512,1024,2048,4096] [--batch 256 | 1,8,64] [--no-linear] [--reps N] [--threads N] [--openblas-core NAME] [--machine NAME] [--out DIR] [--no-write]',
  },
  gpu: {
    file: './gpu.js', fn: 'benchGpu', what: 'cuSPARSELt 2:4 vs cuBLASLt dense on the GPU',
    flags: '[--quick] [--dtypes float16,bfloat16,int8,e4m3,float32] [--iters 20] [--warmup 5] [--no-search] [--overhead-iters 200] [--budget-s 900] [--out DIR]',
  },
  serve: {
    file: './serve.js', fn: 'benchServe', what: 'nmsparse serve: requests/s and latency, dense vs 2:4',
    flags: '[--requests 4000] [--rounds 4] [--warmup N] [--concurrency 32] [--rows 1] [--hidden 1024,1024] [--device cpu|cuda] [--max-batch 64] [--max-delay-ms 0] [--hostile 0] [--model FILE] [--ort auto|off] [--ort-batch 1,8,64,256] [--ort-rounds 7] [--machine NAME] [--out DIR]',
  },
  train: {
    file: './train.js', fn: 'benchTrain', what: 'a training step by phase and MNIST epochs (or a character GPT\'s tokens/s): dense vs the sparse recipes (lib/bench/train.ts)',
    flags: '[--recipes dense,ste,srste] [--patterns 2:4] [--epochs 3] [--steps 20] [--batch 128|32] [--model mlp|cnn|transformer] [--hidden A,B | L,d,H,T] [--device cpu|cuda] [--precision float32|bfloat16|float16] [--dense-kernels] [--transposable] [--torch] [--threads N] [--machine NAME] [--out DIR] [--no-write]',
  },
  ngram: {
    file: './ngram.js', fn: 'benchNgram', what: 'the character n-gram baseline on the Brown split: validation and test bits per character (lib/bench/ngram.ts)',
    flags: '[--order 5] [--out DIR] [--no-write]',
  },
};

/** The usage of one kind, or of `bench` itself. */
export function benchUsage(kind?: string): string {
  if (kind) return `usage: nmsparse bench ${kind} ${KINDS[kind].flags}\n${KINDS[kind].what}; results go to ./bench-results/ (in the working directory) unless --out says otherwise.`;
  return ['usage: nmsparse bench <kind> [options]   (nmsparse bench <kind> --help lists its options)', ...Object.entries(KINDS).map(([k, v]) => `  ${k.padEnd(6)} ${v.what}`)].join('\n');
}

export async function runBench(args: string[]): Promise<void> {
  const [kind, ...rest] = args;
  if (kind === undefined || kind === 'help' || kind === '--help' || kind === '-h') {
    if (kind === undefined) throw new UsageError(`expected a kind: ${Object.keys(KINDS).join(', ')}\n${benchUsage()}`);
    console.log(benchUsage());
    return;
  }
  const entry = KINDS[kind];
  if (!entry) throw new UsageError(`got ${JSON.stringify(kind)}, expected one of ${Object.keys(KINDS).join(', ')}\n${benchUsage()}`);
  if (wantsHelp(rest)) {
    console.log(benchUsage(kind));
    return;
  }
  let mod: Record<string, unknown>;
  try {
    const file: string = entry.file;  // a variable, so that the compiler does not require every kind to exist
    mod = (await import(file)) as Record<string, unknown>;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(entry.file.slice(2)))
      throw new NmSparseError('E_UNSUPPORTED', `bench ${kind}: not available in this installation (${entry.file.slice(2, -3)}.ts was not built)`, { cause: e });
    throw e;
  }
  const run = mod[entry.fn];
  if (typeof run !== 'function') throw new NmSparseError('E_INTERNAL', `bench ${kind}: ${entry.file} does not export ${entry.fn}()`);
  await (run as Runner)(rest);
}
