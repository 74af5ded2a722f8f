/**
 * A chain of float32 Linear layers on the CPU, dense or N:M sparse, run by one native call per forward
 * (native/cpu/mlp.h): InferenceModel's path for an MLP. Per layer, linear() costs a trip through these checks and
 * N-API (about 30 µs on Zen 4, as much as the 784x1024 product at one row); a plan checks the layers once, and a
 * forward then reads only its input and output. Each layer runs the GEMM with the arguments linear(x, packed, bias,
 * {activation}) passes, or the SpMM with those of nm.linear(x, S, bias, {activation}) (S's packSparse copy
 * included, as when the plan is made), so the results are theirs bit for bit.
 *
 * The plan holds the layers' memory (a native buffer stays alive with it; other memory is copied when the plan is
 * made), so disposing a weight or a PackedWeight does not free what a plan still reads.
 */
import { native, type NativeMlpWeight } from './native.js';
import { fail } from './errors.js';
import { PackedWeight } from './gemm.js';
import { SparseTensor, checkSparse } from './compress.js';
import { packedOf } from './spmm.js';
import { Tensor, checkTensor } from './tensor.js';

export interface MlpLayer {
  /** W [out, in], float32 on the CPU: dense, packed (PackedWeight) or not, or N:M sparse (a SparseTensor). */
  weight: PackedWeight | Tensor | SparseTensor;
  /** [out] float32, or null. */
  bias: Tensor | null;
  /** max(0, ·) after the bias. */
  relu: boolean;
}

type Handle = { handle: unknown; inFeatures: number; outFeatures: number };

export class MlpPlan {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** The input width, then each layer's output width. */
  readonly widths: readonly number[];
  /** Per layer, the fraction of its weights kept: N/M for an N:M layer, 1 for a dense one. */
  readonly density: readonly number[];
  readonly #plan: Handle;

  constructor(layers: MlpLayer[]) {
    if (!Array.isArray(layers) || layers.length === 0) fail('E_TYPE', 'layers', layers, 'a non-empty array of layers');
    let width = -1;
    const native_layers = layers.map((l, i) => {
      const arg = `layers[${i}]`;
      if (l === null || typeof l !== 'object') fail('E_TYPE', arg, l, 'a layer {weight, bias, relu}');
      let n: number, k: number, weight: NativeMlpWeight;
      if (l.weight instanceof SparseTensor) {
        const S = checkSparse(l.weight, `${arg}.weight`);
        if (S.device !== 'cpu') fail('E_DEVICE', `${arg}.weight`, S, "a sparse tensor on 'cpu'");
        if (S.shape.length !== 2) fail('E_SHAPE', `${arg}.weight`, S, 'a 2-D weight [out, in]');
        if (S.dtype !== 'float32') fail('E_DTYPE', `${arg}.weight`, S, 'a float32 sparse tensor');
        [n, k] = S.shape;
        const packed = packedOf(S);
        weight = { values: S.values.storage(`${arg}.weight`), positions: S.positions, nmN: S.n, nmM: S.m, ...(packed ? { packed } : {}) };
      } else {
        const packed = l.weight instanceof PackedWeight ? l.weight.forGemm(`${arg}.weight`) : null;
        const w = checkTensor(l.weight instanceof PackedWeight ? l.weight.weight : l.weight, `${arg}.weight`);
        if (w.device !== 'cpu') fail('E_DEVICE', `${arg}.weight`, w, "a tensor on 'cpu'");
        if (w.rank !== 2) fail('E_SHAPE', `${arg}.weight`, w, 'a 2-D weight [out, in]');
        if (w.dtype !== 'float32') fail('E_DTYPE', `${arg}.weight`, w, 'a float32 tensor');
        [n, k] = w.shape;
        if (n === 0 || k === 0) fail('E_SHAPE', `${arg}.weight`, w, 'a non-empty weight');
        weight = { w: w.storage(`${arg}.weight`), ...(packed ?? {}) };
      }
      if (width >= 0 && k !== width) fail('E_SHAPE', `${arg}.weight`, l.weight, `a weight [out, ${width}] (the previous layer's out)`);
      width = n;
      let bias: Float32Array | null = null;
      if (l.bias !== null && l.bias !== undefined) {
        const b = checkTensor(l.bias, `${arg}.bias`);
        if (b.device !== 'cpu' || b.dtype !== 'float32' || b.rank !== 1 || b.shape[0] !== n)
          fail('E_SHAPE', `${arg}.bias`, b, `a float32 CPU tensor [${n}]`);
        bias = b.storage(`${arg}.bias`) as Float32Array;
      }
      if (typeof l.relu !== 'boolean') fail('E_TYPE', `${arg}.relu`, l.relu, 'a boolean');
      return { ...weight, bias, n, k, relu: l.relu, density: l.weight instanceof SparseTensor ? l.weight.n / l.weight.m : 1 };
    });
    this.#plan = native.mlpPlan({ layers: native_layers.map(({ density: _, ...l }) => l) }) as Handle;
    this.widths = [native_layers[0].k, ...native_layers.map((l) => l.n)];
    this.density = native_layers.map((l) => l.density);
    this.inFeatures = this.#plan.inFeatures;
    this.outFeatures = this.#plan.outFeatures;
  }

  /** The layer range [first, last) (default: all) and the arrays, checked; the native arguments after the plan. */
  #args(x: unknown, rows: unknown, out: unknown, first: unknown, last: unknown): [number, number, Float32Array, number, Float32Array] {
    const L = this.widths.length - 1;
    const f = first ?? 0, l = last ?? L;
    if (typeof f !== 'number' || !Number.isSafeInteger(f) || f < 0 || f >= L) fail('E_VALUE', 'first', f, `a layer index in [0, ${L})`);
    if (typeof l !== 'number' || !Number.isSafeInteger(l) || l <= f || l > L) fail('E_VALUE', 'last', l, `a layer index in (${f}, ${L}]`);
    if (typeof rows !== 'number' || !Number.isSafeInteger(rows) || rows < 1) fail('E_VALUE', 'rows', rows, 'a positive integer');
    const inW = this.widths[f], outW = this.widths[l];
    if (!(x instanceof Float32Array) || x.length !== rows * inW) fail('E_SHAPE', 'x', x, `a Float32Array of ${rows} x ${inW} values`);
    if (!(out instanceof Float32Array) || out.length !== rows * outW) fail('E_SHAPE', 'out', out, `a Float32Array of ${rows} x ${outW} values`);
    if (x.buffer === out.buffer && x.byteOffset < out.byteOffset + out.byteLength && out.byteOffset < x.byteOffset + x.byteLength)
      fail('E_VALUE', 'out', out, 'an array that does not share memory with x');
    return [f, l, x, rows, out];
  }

  /**
   * out [rows, widths[last]] = layers [first, last) (default: all) on x [rows, widths[first]], on the calling thread
   * and the pool.
   */
  forward(x: Float32Array, rows: number, out: Float32Array, first?: number, last?: number): void {
    native.mlpForward(this.#plan, ...this.#args(x, rows, out, first, last), false);
  }

  /** forward() off the event loop (x and out are pinned when native, else copied, as for every async op). */
  async forwardAsync(x: Float32Array, rows: number, out: Float32Array, first?: number, last?: number): Promise<void> {
    await native.mlpForward(this.#plan, ...this.#args(x, rows, out, first, last), true);
  }
}
