// Shared by the module tests (nn.test.ts, transformer.test.ts, attention.test.ts): float64 values, finite-difference
// gradient checks, and the float64 references of Linear, LayerNorm, causal attention and the dropout generator.
import { expect } from 'vitest';
import { Tensor } from '../lib/index.js';
import type { Module } from '../lib/nn/module.js';
import { prng, refProduct } from './helpers.js';


/** Values in (−a, a) from the test generator. */
export function values(n: number, seed: number, a = 1): Float64Array {
  const r = prng(seed);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = (2 * r() - 1) * a;
  return v;
}
export const f32 = (v: Float64Array | number[], shape: number[]): Tensor => new Tensor(shape, 'float32', Float32Array.from(v));
export const arr = (t: Tensor): Float32Array => t.storage() as Float32Array;
/** Float64 copy of a tensor's values (the reference starts from exactly the module's float32 parameters). */
export const f64 = (t: Tensor): Float64Array => Float64Array.from(arr(t));

/** Σ ref()·r, the scalar whose gradient the module's backward(r) computes. */
export function dot(y: Float64Array, r: Float64Array): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i] * r[i];
  return s;
}

/**
 * Compares `analytic` with central differences of `loss` with respect to `theta` (perturbed in place).
 * Checks every element when there are few, else a seeded sample of 64.
 */
export function expectGrad(name: string, theta: Float64Array, analytic: Float32Array, loss: () => number, opts: { h?: number; rtol?: number; atol?: number } = {}): void {
  const h = opts.h ?? 1e-6, rtol = opts.rtol ?? 2e-3, atol = opts.atol ?? 2e-4;
  expect(analytic.length, `${name}: gradient size`).toBe(theta.length);
  const r = prng(theta.length);
  const idx = theta.length <= 96 ? [...theta.keys()] : Array.from({ length: 64 }, () => Math.floor(r() * theta.length));
  let worst = 0;
  for (const i of idx) {
    const v = theta[i];
    theta[i] = v + h;
    const lp = loss();
    theta[i] = v - h;
    const lm = loss();
    theta[i] = v;
    const num = (lp - lm) / (2 * h);
    const err = Math.abs(analytic[i] - num) - (atol + rtol * Math.abs(num));
    worst = Math.max(worst, err);
    if (err > 0) expect.fail(`${name}[${i}]: analytic ${analytic[i]} vs numeric ${num}`);
  }
  expect(worst).toBeLessThanOrEqual(0);
}

export function expectClose(name: string, got: Float32Array, want: Float64Array, tol = 1e-5): void {
  expect(got.length, name).toBe(want.length);
  for (let i = 0; i < want.length; i++)
    if (!(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])))) expect.fail(`${name}[${i}]: ${got[i]} vs ${want[i]}`);
}

/** Runs forward(x) then backward(r) on a module; returns output, dx and the upstream gradient r. */
export function run(m: Module, x: Float64Array, shape: number[], seed: number) {
  const y = m.forward(f32(x, shape));
  const r = values(y.size, seed);
  const dx = m.backward(f32(r, [...y.shape]));
  return { y: arr(y).slice(), dx: dx ? arr(dx).slice() : null, r, yShape: [...y.shape] };
}


/** float64 x [rows, in] · wᵀ (+ b), w [out, in]. */
export const refLinear = (x: Float64Array, w: Float64Array, b: Float64Array | null, rows: number, inF: number, outF: number): Float64Array =>
  refProduct(x, inF, 1, w, 1, inF, rows, outF, inF, b).ref;

export function refLayerNorm(x: Float64Array, g: Float64Array, b: Float64Array, rows: number, cols: number, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let mu = 0;
    for (let c = 0; c < cols; c++) mu += x[r * cols + c];
    mu /= cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (x[r * cols + c] - mu) ** 2;
    v /= cols;
    for (let c = 0; c < cols; c++) y[r * cols + c] = ((x[r * cols + c] - mu) / Math.sqrt(v + eps)) * g[c] + b[c];
  }
  return y;
}

/** The dropout generator re-derived with BigInt from its documented formula (elementwise.h). */
export function refKeep(seed: number, counter: number, p: number): boolean {
  const M = (1n << 64n) - 1n;
  const mix = (z: bigint): bigint => {
    z = (z + 0x9e3779b97f4a7c15n) & M;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
    return z ^ (z >> 31n);
  };
  const u = Number(mix(BigInt(seed) ^ mix(BigInt(counter))) >> 40n) / 16777216;
  return u >= p;
}


/** float64 causal attention: y [B, T, d] and probs [B, H, T, T] of qkv [B, T, 3d]. */
export function refAttention(qkv: Float64Array, [B, T, H, hd]: number[], drop = { p: 0, seed: 0, offset: 0 }) {
  const d = H * hd, ld = 3 * d;
  const y = new Float64Array(B * T * d), probs = new Float64Array(B * H * T * T);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < T; i++) {
        const q = (b * T + i) * ld + h * hd;
        const s: number[] = [];
        for (let j = 0; j <= i; j++) {
          const k = (b * T + j) * ld + d + h * hd;
          let v = 0;
          for (let c = 0; c < hd; c++) v += qkv[q + c] * qkv[k + c];
          s.push(v / Math.sqrt(hd));
        }
        const mx = Math.max(...s);
        const e = s.map((v) => Math.exp(v - mx)), sum = e.reduce((a, v) => a + v, 0);
        const row = ((b * H + h) * T + i) * T;
        for (let j = 0; j <= i; j++) {
          const p = e[j] / sum;
          probs[row + j] = p;
          const kept = drop.p === 0 || refKeep(drop.seed, drop.offset + row + j, drop.p);
          const pd = kept ? p / (1 - drop.p) : 0;
          const v = (b * T + j) * ld + 2 * d + h * hd;
          for (let c = 0; c < hd; c++) y[(b * T + i) * d + h * hd + c] += pd * qkv[v + c];
        }
      }
  return { y, probs };
}
