// Shared by test/gpu/*.test.ts: whether a usable GPU is here (every GPU suite skips itself otherwise), float64
// reference products written for the tests, and tolerance checks. Importing lib/cuda.js registers the backend.
// With NMSPARSE_REQUIRE_GPU=1 (npm run test:gpu, the GPU machine) an unusable GPU fails every GPU file instead:
// a run that skipped everything must not pass.
import { backendInfo } from '../../lib/backend-info.js';
import { Tensor } from '../../lib/index.js';
import '../../lib/cuda.js';

const info = backendInfo();
if (process.env.NMSPARSE_REQUIRE_GPU === '1' && !info.cuda.usable)
  throw new Error(`NMSPARSE_REQUIRE_GPU=1 but the GPU is unusable: ${info.cuda.reason}`);
/** True only where the CUDA backend is built and usable (driver, sm >= 80, cuBLASLt or cuSPARSELt found). */
export const gpuUsable: boolean = info.cuda.usable;
export const gpuInfo = info;

/** erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit). */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

export type Act = 'relu' | 'gelu' | undefined;
export const applyAct = (v: number, act: Act): number =>
  act === 'relu' ? Math.max(v, 0) : act === 'gelu' ? 0.5 * v * (1 + erf(v / Math.SQRT2)) : v;

/** Values of a tensor (any device) as float64 numbers. */
export const values = (t: Tensor): number[] => (t.device === 'cpu' ? t : t.to('cpu')).toArray();

export interface Ref {
  ref: Float64Array;
  absSum: Float64Array;  // Σ|terms| per output, for the tolerance
}

/**
 * C[i, j] = act(Σ_k L(i, k)·R(k, j) + bias) in float64. L(i, k) = l[i*lsi + k*lsk], R(k, j) = r[k*rsk + j*rsj].
 * biasPerRow: bias[i], else bias[j].
 */
export function refProduct(
  l: number[], lsi: number, lsk: number, r: number[], rsk: number, rsj: number,
  m: number, n: number, k: number, bias: number[] | null, biasPerRow: boolean, act: Act,
): Ref {
  const ref = new Float64Array(m * n), absSum = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0, a = 0;
      for (let p = 0; p < k; p++) {
        const t = l[i * lsi + p * lsk] * r[p * rsk + j * rsj];
        s += t;
        a += Math.abs(t);
      }
      if (bias) {
        const b = bias[biasPerRow ? i : j];
        s += b;
        a += Math.abs(b);
      }
      ref[i * n + j] = applyAct(s, act);
      absSum[i * n + j] = a;
    }
  return { ref, absSum };
}

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

/** Runs `fn` with NMSPARSE_CUDA_DISPATCH set (read by the addon on every call), then restores it. */
export function withDispatch<T>(mode: 'auto' | 'sparse' | 'dense', fn: () => T): T {
  const before = process.env.NMSPARSE_CUDA_DISPATCH;
  process.env.NMSPARSE_CUDA_DISPATCH = mode;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.NMSPARSE_CUDA_DISPATCH;
    else process.env.NMSPARSE_CUDA_DISPATCH = before;
  }
}
