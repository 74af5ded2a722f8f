/**
 * `nmsparse bench <kind> [options]` (npm run bench -- <kind>): cpu (lib/bench/cpu.ts), gpu (lib/bench/gpu.ts),
 * serve (lib/bench/serve.ts), train (lib/bench/train.ts). Each kind is imported only when asked for, so a missing
 * or failing one (a build without the GPU part) fails that kind alone.
 */
import { NmSparseError } from '../errors.js';

type Runner = (args: string[]) => Promise<void>;

/** Module file and the name of the function it exports, per kind. */
const KINDS: Record<string, { file: string; fn: string; what: string }> = {
  cpu: { file: './cpu.js', fn: 'benchCpu', what: 'dense vs 2:4 sparse vs OpenBLAS on the CPU' },
  gpu: { file: './gpu.js', fn: 'benchGpu', what: 'cuSPARSELt 2:4 vs cuBLASLt dense on the GPU' },
  serve: { file: './serve.js', fn: 'benchServe', what: 'nmsparse serve: requests/s and latency, dense vs 2:4' },
  train: { file: './train.js', fn: 'benchTrain', what: 'a training step by phase and MNIST epochs: dense vs the sparse recipes (lib/bench/train.ts)' },
};

export function benchUsage(): string {
  return ['usage: nmsparse bench <kind> [options]', ...Object.entries(KINDS).map(([k, v]) => `  ${k.padEnd(6)} ${v.what}`)].join('\n');
}

export async function runBench(args: string[]): Promise<void> {
  const [kind, ...rest] = args;
  const entry = kind === undefined ? undefined : KINDS[kind];
  if (!entry) throw new NmSparseError('E_VALUE', `bench: got ${kind === undefined ? 'no kind' : JSON.stringify(kind)}, expected one of ${Object.keys(KINDS).join(', ')}\n${benchUsage()}`);
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
