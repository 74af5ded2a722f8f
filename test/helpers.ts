// Test-only utilities: a seeded PRNG independent of the library's own, float64 reference N:M loops, and
// poisoning of outputs so unwritten elements show.
import { Tensor, tensor, type DType } from '../lib/index.js';
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

/** Bitwise equality of two tensors' storage (NaN patterns included). */
export function sameBits(a: Tensor, b: Tensor): boolean {
  const x = new Uint8Array(a.storage().buffer, a.storage().byteOffset, a.storage().byteLength);
  const y = new Uint8Array(b.storage().buffer, b.storage().byteOffset, b.storage().byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}
