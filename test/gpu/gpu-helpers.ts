// Shared by test/gpu/*.test.ts: whether a usable GPU is here (every GPU suite skips itself otherwise), the float64
// reference products of test/helpers.ts, and tolerance checks. Importing lib/cuda.js registers the backend.
// With NMSPARSE_REQUIRE_GPU=1 (npm run test:gpu, the GPU machine) an unusable GPU fails every GPU file instead:
// a run that skipped everything must not pass.
import { backendInfo } from '../../lib/backend-info.js';
import { Tensor } from '../../lib/index.js';
import '../../lib/cuda.js';
import type { Ref } from '../helpers.js';

export { applyAct, erf, refProduct, type Act, type Ref } from '../helpers.js';

const info = backendInfo();
if (process.env.NMSPARSE_REQUIRE_GPU === '1' && !info.cuda.usable)
  throw new Error(`NMSPARSE_REQUIRE_GPU=1 but the GPU is unusable: ${info.cuda.reason}`);
/** True only where the CUDA backend is built and usable (driver, sm >= 80, cuBLASLt or cuSPARSELt found). */
export const gpuUsable: boolean = info.cuda.usable;
export const gpuInfo = info;

/** Values of a tensor (any device) as float64 numbers. */
export const values = (t: Tensor): number[] => (t.device === 'cpu' ? t : t.to('cpu')).toArray();

/** Relative tolerances (on Σ|terms| and on |reference|) of a product computed in `dtype` on the GPU. */
export function tolerance(dtype: string, outDtype: string, tf32: boolean): { terms: number; out: number } {
  const terms = dtype === 'int8' ? 0 : dtype === 'float32' ? (tf32 ? 2 ** -9 : 2 ** -16) : 2 ** -10;
  const out = outDtype === 'float16' ? 2 ** -10 : outDtype === 'bfloat16' ? 2 ** -7 : 2 ** -20;
  return { terms, out };
}

/** The first element outside tolerance, as a message, or null when every element matches. */
export function mismatch(got: number[], r: Ref, tol: { terms: number; out: number }, slack = 1.25): string | null {
  if (got.length !== r.ref.length) return `length ${got.length}, expected ${r.ref.length}`;
  for (let i = 0; i < got.length; i++) {
    const allowed = slack * (tol.terms * r.absSum[i] + tol.out * Math.abs(r.ref[i])) + 1e-30;
    if (!(Math.abs(got[i] - r.ref[i]) <= allowed)) return `element ${i}: got ${got[i]}, expected ${r.ref[i]} (±${allowed})`;
  }
  return null;
}

/** Runs `fn` with environment variable `name` set to `value` (the addon reads it at the call), then restores it. */
export function withEnv<T>(name: string, value: string, fn: () => T): T {
  const before = process.env[name];
  process.env[name] = value;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

/** Runs `fn` with NMSPARSE_CUDA_DISPATCH set (read by the addon on every call), then restores it. */
export function withDispatch<T>(mode: 'auto' | 'sparse' | 'dense', fn: () => T): T {
  return withEnv('NMSPARSE_CUDA_DISPATCH', mode, fn);
}
