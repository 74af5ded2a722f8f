// Test-only utilities: a seeded PRNG independent of the library's own, float64 reference N:M loops and products,
// and poisoning of outputs so unwritten elements show.
import { expect } from 'vitest';
import { Tensor, tensor, type DType } from '../lib/index.js';
import { NmSparseError } from '../lib/errors.js';
import { registerBackend, type DeviceStorage, type GemmPlan, type SpmmPlan } from '../lib/device.js';
import { dtypeBytes } from '../lib/dtype.js';
import { SparseTensor } from '../lib/compress.js';
import { native } from '../lib/native.js';

/** The CPU kernel sets this machine runs, lowest first (native.cpuIsa(name) selects one; 'auto' restores). */
export const ISAS: string[] = (() => {
  const best = (native.cpuIsa() as { best: string }).best;
  return ['scalar', 'avx2', 'avx512'].slice(0, ['scalar', 'avx2', 'avx512'].indexOf(best) + 1);
})();

/** mulberry32: a different generator from lib/random.ts, so tests do not share the library's code paths. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random values as a tensor: normal-ish floats, or integers in range for int8/uint8. */
export function randomTensor(shape: number[], dtype: DType, seed: number): Tensor {
  const r = prng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    if (dtype === 'int8') v[i] = Math.floor(r() * 256) - 128;
    else if (dtype === 'uint8') v[i] = Math.floor(r() * 256);
    else v[i] = (r() + r() + r() - 1.5) * 4;
  }
  return tensor(v, shape, { dtype });
}

/** Fills a CPU tensor with NaN (floats) or 0x5a (integers/uint8 masks). */
export function poison(t: Tensor): Tensor {
  const s = t.storage();
  if (t.dtype === 'float32') (s as Float32Array).fill(NaN);
  else if (t.dtype === 'float16') (s as Uint16Array).fill(0x7e00);
  else if (t.dtype === 'bfloat16') (s as Uint16Array).fill(0x7fc0);
  else (s as Uint8Array).fill(0x5a);
  return t;
}

/** Magnitude with NaN above everything, in float64. */
const mag = (x: number): number => (Number.isNaN(x) ? Infinity : Math.abs(x));
/** Whether a beats b (ranks higher) in the N:M selection: larger magnitude, NaN above +inf, ties to the lower index. */
function beats(va: number, ia: number, vb: number, ib: number): boolean {
  const na = Number.isNaN(va), nb = Number.isNaN(vb);
  if (na !== nb) return na;
  const ma = mag(va), mb = mag(vb);
  if (ma !== mb) return ma > mb;
  return ia < ib;
}

/** Reference N:M mask of flat values viewed as [rows, cols], groups along cols. */
export function refMask(values: number[], cols: number, n: number, m: number): number[] {
  const out = new Array<number>(values.length).fill(0);
  for (let g = 0; g < values.length; g += m) {
    const idx = Array.from({ length: m }, (_, i) => i);
    idx.sort((a, b) => (beats(values[g + a], a, values[g + b], b) ? -1 : 1));
    for (let k = 0; k < n; k++) out[g + idx[k]] = 1;
  }
  void cols;
  return out;
}

/** Sum of |w| (NaN → 1e300, inf → 1e299) over the kept entries of a 4×4 tile pattern (bits r*4+c). */
function tileScore(tile: number[], code: number): number {
  let s = 0;
  for (let b = 0; b < 16; b++) {
    if (!((code >> b) & 1)) continue;
    const v = tile[b];
    s += Number.isNaN(v) ? 1e300 : Math.abs(v) > 3.4e38 ? 1e299 : Math.abs(v);
  }
  return s;
}

/** Reference transposable 2:4 mask: exhaustive search over every 16-bit code with two ones per row and column. */
export function refTransposableMask(values: number[], rows: number, cols: number): number[] {
  const codes: number[] = [];
  for (let c = 0; c < 1 << 16; c++) {
    let ok = true;
    for (let r = 0; r < 4; r++) if (popcount((c >> (4 * r)) & 0xf) !== 2) ok = false;
    for (let k = 0; k < 4; k++) if (popcount(c & (0x1111 << k)) !== 2) ok = false;
    if (ok) codes.push(c);
  }
  if (codes.length !== 90) throw new Error('expected 90 transposable patterns');
  const out = new Array<number>(values.length).fill(0);
  for (let tr = 0; tr < rows; tr += 4)
    for (let tc = 0; tc < cols; tc += 4) {
      const tile: number[] = [];
      for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) tile.push(values[(tr + r) * cols + tc + c]);
      let best = codes[0], bestScore = -1;
      for (const code of codes) {
        const s = tileScore(tile, code);
        if (s > bestScore) { best = code; bestScore = s; }
      }
      for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) out[(tr + r) * cols + tc + c] = (best >> (r * 4 + c)) & 1;
    }
  return out;
}

function popcount(x: number): number {
  let c = 0;
  for (; x; x &= x - 1) c++;
  return c;
}

/** Position field t of a packed portable-form row starting at byte rowStart (`bits` bits each, little-endian), bit by bit. */
function posField(pos: Uint8Array, rowStart: number, t: number, bits: number): number {
  let v = 0;
  for (let k = 0; k < bits; k++) {
    const bit = t * bits + k;
    v |= ((pos[rowStart + (bit >> 3)] >> (bit & 7)) & 1) << k;
  }
  return v;
}

/**
 * Fails unless (vals, pos) is the portable N:M form of w under `keep` (row-major 0/1, [rows, cols]): each row's kept
 * values in ascending position, each with its in-group index in log2(M) bits, rows padded to whole bytes.
 */
export function expectPortableForm(label: string, keep: number[], w: Float32Array, vals: Float32Array, pos: Uint8Array,
  rows: number, cols: number, n: number, m: number): void {
  const bits = Math.log2(m), kpr = (cols / m) * n, prb = Math.ceil((kpr * bits) / 8);
  for (let row = 0; row < rows; row++) {
    let t = 0;
    for (let g = 0; g < cols; g += m)
      for (let i = 0; i < m; i++) {
        if (!keep[row * cols + g + i]) continue;
        const k = row * kpr + t;
        if (!Object.is(vals[k], w[row * cols + g + i])) throw new Error(`${label} values[${k}]: ${vals[k]}, expected ${w[row * cols + g + i]}`);
        if (posField(pos, row * prb, t, bits) !== i) throw new Error(`${label} position ${row}/${t}: expected ${i}`);
        t++;
      }
  }
}

/** Bitwise equality of two tensors' storage (NaN patterns included). */
export function sameBits(a: Tensor, b: Tensor): boolean {
  const x = new Uint8Array(a.storage().buffer, a.storage().byteOffset, a.storage().byteLength);
  const y = new Uint8Array(b.storage().buffer, b.storage().byteOffset, b.storage().byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** erf in float64, |error| < 1e-11: its Taylor series below |x| = 3, 1 − erfc (Numerical Recipes' fit) above. */
export function erf(x: number): number {
  const z = Math.abs(x);
  if (z < 3) {
    let term = x, sum = x;
    for (let n = 1; n < 80; n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  const t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - erfc : erfc - 1;
}

export type Act = 'relu' | 'gelu' | undefined;
/** The products' epilogue activations in float64 (gelu = x·Φ(x), the erf form). */
export const applyAct = (v: number, act: Act): number =>
  act === 'relu' ? Math.max(v, 0) : act === 'gelu' ? 0.5 * v * (1 + erf(v / Math.SQRT2)) : v;

export interface Ref {
  ref: Float64Array<ArrayBuffer>;
  /** Σ|terms| per output: the scale of the rounding errors of a float32 (or lower) accumulation. */
  absSum: Float64Array<ArrayBuffer>;
}

/**
 * The float64 reference of every product: C[i, j] = act(Σ_k L(i, k)·R(k, j) + bias) for i < m, j < n, with
 * L(i, k) = l[i*lsi + k*lsk] and R(k, j) = r[k*rsk + j*rsj] (strides express transposes); bias[i] when biasPerRow,
 * else bias[j].
 */
export function refProduct(
  l: ArrayLike<number>, lsi: number, lsk: number, r: ArrayLike<number>, rsk: number, rsj: number,
  m: number, n: number, k: number, bias: ArrayLike<number> | null = null, biasPerRow = false, act: Act = undefined,
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

/**
 * Runs a direct addon call that must fail on one options field: a typed NmSparseError with `code` whose message
 * names options.<key>.
 */
export function expectOptionError(call: () => unknown, code: string, key: string): void {
  let err: unknown;
  try {
    call();
  } catch (e) {
    err = e;
  }
  expect(err, `options.${key}: no error`).toBeInstanceOf(NmSparseError);
  expect((err as NmSparseError).code, String(err)).toBe(code);
  expect((err as Error).message).toContain(`options.${key}`);
}

/**
 * The options-object contract of a direct addon call, from a valid `base` call: each required key missing (E_TYPE),
 * each key of the wrong type (E_TYPE; 'x' is a string, which no field takes), an unknown key (E_VALUE), each named.
 */
export function checkOptionsContract(call: (o: Record<string, unknown>) => unknown, base: Record<string, unknown>, optional: string[] = []): void {
  for (const key of Object.keys(base)) {
    if (!optional.includes(key)) {
      const without = { ...base };
      delete without[key];
      expectOptionError(() => call(without), 'E_TYPE', key);
    }
    expectOptionError(() => call({ ...base, [key]: 'x' }), 'E_TYPE', key);
  }
  expectOptionError(() => call({ ...base, tranposeB: true }), 'E_VALUE', 'tranposeB');
}

/** Device memory that is not there: enough for a tensor on 'cuda' that lib/ validates and no kernel reads. */
class FakeStorage implements DeviceStorage {
  disposed = false;
  constructor(readonly bytes: number) {}
  dispose(): void { this.disposed = true; }
}

/** A tensor, or (2:4) sparse tensor, on a 'cuda' without a GPU (fakeCudaProducts). */
export const fakeCuda = (shape: readonly number[], dtype: DType = 'float32'): Tensor =>
  new Tensor(shape, dtype, new FakeStorage(shape.reduce((a, b) => a * b, 1) * dtypeBytes(dtype)), 'cuda');
export const fakeCudaSparse = (shape: number[], dtype: DType = 'float32'): SparseTensor =>
  new SparseTensor(shape, { n: 2, m: 4 }, dtype, { device: 'cuda', handle: new FakeStorage(1) });

/**
 * Replaces the 'cuda' backend of this test process (put it last in a file) with one whose products only record
 * the plans that reach them, and return a fake result of the plan's shape and dtype (or its out).
 */
export async function fakeCudaProducts(): Promise<{ gemm: GemmPlan[]; spmm: SpmmPlan[] }> {
  await import('../lib/cuda.js'); // the real backend registers itself on first import: before it is replaced
  const calls: { gemm: GemmPlan[]; spmm: SpmmPlan[] } = { gemm: [], spmm: [] };
  const none = (): never => { throw new Error('no transfers on the fake cuda backend'); };
  registerBackend({
    name: 'cuda', unavailableReason: () => null, upload: none, download: none, downloadAsync: none, alloc: none, copy: none,
    ops: {
      gemm: (g) => { calls.gemm.push(g); return g.out ?? fakeCuda(g.shape, g.dtype); },
      spmm: (c) => { calls.spmm.push(c); return c.out ?? fakeCuda(c.shape, c.dtype); },
    },
  });
  return calls;
}

/**
 * float32 bit patterns for the casts' edge cases, then `random` random ones: NaNs (quiet, signalling, payloads,
 * both signs), ±Inf, ±0, float32 subnormals, float16 subnormals and their ties, ties of the float16 and bfloat16
 * grids to even and to odd, float16's overflow edge. Read them through a Float32Array on the same buffer (a NaN
 * read into a JS number may lose its payload).
 */
export function castEdgeBits(random = 4096, seed = 9): Uint32Array {
  const edge = [0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa5a5a5, 0xffbfffff, 0x7fffffff, 0x7fc0e000,
    0x7f800000, 0xff800000, 0, 0x80000000, 1, 0x80000001, 0x007fffff, 0x00800000,
    0x3f808000, 0x3f818000, 0xbf808000, 0x3f801000, 0x3f803000, 0xbf801000, // ties: bfloat16, float16
    0x33800000, 0x33000000, 0x33400000, 0x33c00000, 0x34200000, 0x387fc000, 0x38800000, // float16 subnormals
    0x477fe000, 0x477fefff, 0x477ff000, 0xc77ff000, 0x7f7fffff, 0x7f7f8000];
  const r = prng(seed);
  const out = new Uint32Array(edge.length + random);
  out.set(edge);
  for (let i = edge.length; i < out.length; i++) out[i] = Math.floor(r() * 2 ** 32) >>> 0;
  return out;
}

/** One unit in the last place of bfloat16 / float16 at |v| (float16's subnormal unit below 2^-14). */
export function ulp16(dtype: 'bfloat16' | 'float16', v: number): number {
  const e = v === 0 ? -126 : Math.floor(Math.log2(Math.abs(v)));
  return dtype === 'bfloat16' ? 2 ** (e - 7) : 2 ** (Math.max(e, -14) - 10);
}
