// The whole-forward MLP call (lib/mlp.ts → native/cpu/mlp.cc) against float64 reference loops written here, and
// against the per-layer products it replaces.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NmSparseError, Tensor, tensor } from '../lib/index.js';
import { PackedWeight, linear } from '../lib/gemm.js';
import { MlpPlan, type MlpLayer } from '../lib/mlp.js';
import { SparseTensor, compress } from '../lib/compress.js';
import { packSparse, sparseLinear } from '../lib/spmm.js';
import { addonPath, native, type Addon } from '../lib/native.js';
import { ISAS, expectOptionError, prng } from './helpers.js';

afterAll(() => native.cpuIsa('auto'));

const rand = (shape: number[], seed: number): Tensor => {
  const r = prng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(Array.from({ length: n }, () => (r() + r() + r() - 1.5) * 2), shape);
};

/** Layers in → widths…, seeded; bias on all but `noBias`, ReLU on all but the last; packed or plain weights. */
function chain(widths: number[], seed: number, packed: boolean, noBias = -1): MlpLayer[] {
  return widths.slice(1).map((out, i) => {
    const w = rand([out, widths[i]], seed + i);
    return { weight: packed ? new PackedWeight(w) : w, bias: i === noBias ? null : rand([out], seed + 50 + i), relu: i < widths.length - 2 };
  });
}

/**
 * float64 forward of the layers on x [rows, in], with a first-order bound of the float32 error of every output: each
 * layer adds (k + 2)·2⁻²³ of its Σ|terms|, and what comes in is carried through |W| (ReLU does not enlarge it).
 */
function reference(layers: MlpLayer[], x: Float32Array, rows: number): { ref: Float64Array; tol: Float64Array } {
  let h = Float64Array.from(x), err = new Float64Array(x.length);
  for (const l of layers) {
    const dense = l.weight instanceof PackedWeight ? l.weight.weight : l.weight instanceof SparseTensor ? l.weight.decompress() : l.weight;
    const w = dense.toArray() as number[];
    const [n, k] = dense.shape;
    const b = l.bias ? (l.bias.toArray() as number[]) : null;
    const y = new Float64Array(rows * n), e = new Float64Array(rows * n);
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < n; j++) {
        let s = b ? b[j] : 0, abs = b ? Math.abs(b[j]) : 0, carried = 0;
        for (let p = 0; p < k; p++) {
          s += h[i * k + p] * w[j * k + p];
          abs += Math.abs(h[i * k + p] * w[j * k + p]);
          carried += err[i * k + p] * Math.abs(w[j * k + p]);
        }
        y[i * n + j] = l.relu ? Math.max(s, 0) : s;
        e[i * n + j] = carried + (k + 2) * 2 ** -23 * abs;
      }
    h = y;
    err = e;
  }
  return { ref: h, tol: err };
}

function expectClose(got: Float32Array, r: { ref: Float64Array; tol: Float64Array }): void {
  expect(got.length).toBe(r.ref.length);
  let worst = 0, at = -1;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - r.ref[i]) / (r.tol[i] + 1e-30);
    if (!(e <= worst)) { worst = e; at = i; }  // NaN propagates into `worst`
  }
  expect(worst, `element ${at}: got ${got[at]}, expected ${r.ref[at]}`).toBeLessThanOrEqual(1);
}

/** The layers one linear() call at a time, as InferenceModel ran them before the plan. */
function perLayer(layers: MlpLayer[], x: Float32Array, rows: number): Float32Array {
  let h = new Tensor([rows, x.length / rows], 'float32', x);
  for (const l of layers) {
    const opts = l.relu ? { activation: 'relu' as const } : {};
    h = l.weight instanceof SparseTensor ? sparseLinear(h, l.weight, l.bias, opts) : linear(h, l.weight, l.bias, opts);
  }
  return h.storage() as Float32Array;
}

// One x through `plan` into NaN-poisoned outputs: within the float64 reference's bound, bit for bit the per-layer
// ops, sync == async, and the same bits when the layers run in two calls (first sync, the rest async), as
// InferenceModel splits them around its inline budget.
async function checkPlan(plan: MlpPlan, layers: MlpLayer[], x: Float32Array, rows: number): Promise<void> {
  const n = rows * plan.outFeatures;
  const y = new Float32Array(n).fill(NaN), ya = new Float32Array(n).fill(NaN);
  plan.forward(x, rows, y);
  await plan.forwardAsync(x, rows, ya);
  expectClose(y, reference(layers, x, rows));
  expect(Array.from(ya)).toEqual(Array.from(y));
  expect(Array.from(perLayer(layers, x, rows))).toEqual(Array.from(y));
  if (layers.length > 1) {
    const mid = new Float32Array(rows * plan.widths[1]).fill(NaN), y2 = new Float32Array(n).fill(NaN);
    plan.forward(x, rows, mid, 0, 1);
    await plan.forwardAsync(mid, rows, y2, 1);
    expect(Array.from(mid)).toEqual(Array.from(perLayer(layers.slice(0, 1), x, rows)));
    expect(Array.from(y2)).toEqual(Array.from(y));
  }
}

describe('MlpPlan', () => {
  // widths around the kernel tiles (MR 12/6/4, NR 32/16), the KC block (256) and the row-streaming path (< 4 rows)
  const CHAINS = [[5, 3], [37, 65, 33, 7], [300, 40, 257, 10]];
  for (const isa of ISAS)
    for (const widths of CHAINS)
      for (const packed of [true, false])
        it(`${isa}, ${widths.join('-')}, ${packed ? 'packed' : 'plain'} weights: float64 reference, per-layer bits, sync and async`, async () => {
          native.cpuIsa(isa);
          const layers = chain(widths, widths.length * 7 + widths[0], packed, 1);
          const plan = new MlpPlan(layers);
          expect([plan.inFeatures, plan.outFeatures]).toEqual([widths[0], widths[widths.length - 1]]);
          for (const rows of [1, 2, 3, 4, 5, 13, 40]) await checkPlan(plan, layers, rand([rows, widths[0]], rows).storage() as Float32Array, rows);
        });

  // N:M layers (what nm.linear reads: packSparse's copy where made) mixed with dense ones; widths around the packed
  // blocks (16 rows of W̃) and the packed path's batch limit (32 rows)
  const SPARSE: [string, number[], (string | null)[]][] = [
    ['2:4 alone', [64, 20], ['2:4']],
    ['2:4, dense, 2:8, 1:4', [40, 64, 48, 24, 10], ['2:4', null, '2:8', '1:4']],
    ['1:4, 2:4, dense', [128, 36, 16, 7], ['1:4', '2:4', null]],
  ];
  for (const isa of ISAS)
    for (const [label, widths, patterns] of SPARSE)
      for (const pack of [true, false])
        it(`${isa}, ${label} ${widths.join('-')}, ${pack ? 'packed' : 'unpacked'} N:4: float64 reference, nm.linear bits, sync and async`, async () => {
          native.cpuIsa(isa);
          const layers = chain(widths, widths[0] + widths.length, false, 0).map((l, i) => {
            if (!patterns[i]) return l;
            const S = compress(l.weight as Tensor, patterns[i]!);
            if (pack) packSparse(S);
            return { ...l, weight: S };
          });
          const plan = new MlpPlan(layers);
          for (const rows of [1, 2, 3, 5, 16, 33, 70]) {
            await checkPlan(plan, layers, rand([rows, widths[0]], rows + 3).storage() as Float32Array, rows);
          }
        });

  it('keeps reading its N:M layers after the sparse tensors are disposed', async () => {
    const layers = chain([32, 24, 8], 5, false).map((l) => ({ ...l, weight: compress(l.weight as Tensor, '2:4') }));
    packSparse(layers[0].weight as SparseTensor);
    const plan = new MlpPlan(layers);
    const x = rand([3, 32], 9).storage() as Float32Array;
    const want = new Float32Array(24);
    plan.forward(x, 3, want);
    for (const l of layers) { (l.weight as SparseTensor).dispose(); l.bias?.dispose(); }
    const y = new Float32Array(24).fill(NaN);
    await plan.forwardAsync(x, 3, y);
    expect(Array.from(y)).toEqual(Array.from(want));
  });

  it('keeps reading its layers after the weights and PackedWeights are disposed', async () => {
    const layers = chain([20, 30, 6], 3, true);
    const plan = new MlpPlan(layers);
    const x = rand([4, 20], 9).storage() as Float32Array;
    const want = new Float32Array(24);
    plan.forward(x, 4, want);
    for (const l of layers) { (l.weight as PackedWeight).weight.dispose(); (l.weight as PackedWeight).dispose(); l.bias?.dispose(); }
    const y = new Float32Array(24).fill(NaN);
    await plan.forwardAsync(x, 4, y);
    expect(Array.from(y)).toEqual(Array.from(want));
  });

  const expectCode = (call: () => unknown, code: string, arg: string) => {
    let err: unknown;
    try { call(); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(NmSparseError);
    expect((err as NmSparseError).code, String(err)).toBe(code);
    expect((err as Error).message).toContain(arg);
  };

  it('bad layers and arguments are typed errors that name them', async () => {
    const w = rand([4, 6], 1), b = rand([4], 2);
    expectCode(() => new MlpPlan([]), 'E_TYPE', 'layers');
    expectCode(() => new MlpPlan([null as unknown as MlpLayer]), 'E_TYPE', 'layers[0]');
    expectCode(() => new MlpPlan([{ weight: w, bias: b, relu: true }, { weight: w, bias: null, relu: false }]), 'E_SHAPE', 'layers[1].weight');
    expectCode(() => new MlpPlan([{ weight: w, bias: rand([5], 3), relu: true }]), 'E_SHAPE', 'layers[0].bias');
    expectCode(() => new MlpPlan([{ weight: w.astype('float16'), bias: null, relu: true }]), 'E_DTYPE', 'layers[0].weight');
    expectCode(() => new MlpPlan([{ weight: rand([6], 1), bias: null, relu: true }]), 'E_SHAPE', 'layers[0].weight');
    expectCode(() => new MlpPlan([{ weight: w, bias: null, relu: 1 as unknown as boolean }]), 'E_TYPE', 'layers[0].relu');
    const pw = new PackedWeight(w);
    pw.dispose();
    expectCode(() => new MlpPlan([{ weight: pw, bias: null, relu: true }]), 'E_DISPOSED', 'layers[0].weight');
    const S = compress(rand([4, 8], 4), '2:4');
    expectCode(() => new MlpPlan([{ weight: S, bias: b, relu: true }, { weight: S, bias: null, relu: false }]), 'E_SHAPE', 'layers[1].weight');
    expectCode(() => new MlpPlan([{ weight: S, bias: rand([5], 3), relu: true }]), 'E_SHAPE', 'layers[0].bias');
    expectCode(() => new MlpPlan([{ weight: compress(rand([4, 8], 4).astype('float16'), '2:4'), bias: null, relu: true }]), 'E_DTYPE', 'layers[0].weight');
    expectCode(() => new MlpPlan([{ weight: compress(rand([2, 4, 8], 4), '2:4'), bias: null, relu: true }]), 'E_SHAPE', 'layers[0].weight');
    const gone = compress(rand([4, 8], 4), '2:4');
    gone.dispose();
    expectCode(() => new MlpPlan([{ weight: gone, bias: null, relu: true }]), 'E_DISPOSED', 'layers[0].weight');
    const plan = new MlpPlan([{ weight: w, bias: b, relu: true }]);
    const x = new Float32Array(12), y = new Float32Array(8);
    expectCode(() => plan.forward(x, 0, y), 'E_VALUE', 'rows');
    expectCode(() => plan.forward(x, 2, y, 1), 'E_VALUE', 'first');
    expectCode(() => plan.forward(x, 2, y, 0, 0), 'E_VALUE', 'last');
    expectCode(() => plan.forward(x, 2, y, 0, 2), 'E_VALUE', 'last');
    expectCode(() => plan.forward(x, 3, y), 'E_SHAPE', 'x');
    expectCode(() => plan.forward(x, 2, new Float32Array(9)), 'E_SHAPE', 'out');
    const both = new Float32Array(20);
    expectCode(() => plan.forward(both.subarray(0, 12), 2, both.subarray(10, 18)), 'E_VALUE', 'out');
    await expect(plan.forwardAsync(x, 3, y)).rejects.toMatchObject({ code: 'E_SHAPE' });
  });

  it('the native calls check what lib/ checks, naming the option or argument', () => {
    const w = new Float32Array(24), layer = { w, bias: null, n: 4, k: 6, relu: false };
    expectOptionError(() => native.mlpPlan({} as never), 'E_TYPE', 'layers');
    expectOptionError(() => native.mlpPlan({ layers: [layer], extra: 1 } as never), 'E_VALUE', 'extra');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...layer, w: new Float32Array(23) }] }), 'E_SHAPE', 'layers[0].w');
    expectOptionError(() => native.mlpPlan({ layers: [layer, { ...layer, k: 5 }] }), 'E_SHAPE', 'layers[1].k');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...layer, n: 0 }] }), 'E_SHAPE', 'layers[0]');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...layer, packed: new Float32Array(8), packedIsa: 2 }] }), 'E_SHAPE', 'layers[0].packed');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...layer, packed: new Float32Array(4096), packedIsa: 9 }] }), 'E_VALUE', 'layers[0].packedIsa');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...layer, relu: undefined as never }] }), 'E_TYPE', 'layers[0].relu');
    // an N:M layer: W̃ [4, 8] 2:4 has 4 values and 1 position byte a row
    const sp = { values: new Float32Array(16), positions: new Uint8Array(4), nmN: 2, nmM: 4, bias: null, n: 4, k: 8, relu: true };
    native.mlpPlan({ layers: [sp] });
    expectOptionError(() => native.mlpPlan({ layers: [{ ...sp, values: new Float32Array(15) }] }), 'E_SHAPE', 'layers[0].values');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...sp, positions: new Uint8Array(3) }] }), 'E_SHAPE', 'layers[0].positions');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...sp, nmM: 5 }] }), 'E_PATTERN', 'layers[0].nmN, nmM');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...sp, nmN: 4 }] }), 'E_PATTERN', 'layers[0].nmN, nmM');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...sp, nmN: undefined as never }] }), 'E_TYPE', 'layers[0].nmN');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...sp, k: 6, values: new Float32Array(12) }] }), 'E_SHAPE', 'layers[0].k');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...sp, packed: new Float32Array(8) }] }), 'E_SHAPE', 'layers[0].packed');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...sp, nmM: 8, positions: new Uint8Array(8), values: new Float32Array(8), packed: new Float32Array(64) }] }), 'E_PATTERN', 'layers[0].packed');
    expectOptionError(() => native.mlpPlan({ layers: [{ ...sp, w: new Float32Array(32) } as never] }), 'E_VALUE', 'layers[0].w');
    expectOptionError(() => native.mlpPlan({ layers: [layer, sp] }), 'E_SHAPE', 'layers[1].k');
    const plan = native.mlpPlan({ layers: [layer] });
    expectCode(() => native.mlpForward({ handle: 1 }, 0, 1, new Float32Array(6), 1, new Float32Array(4), false), 'E_TYPE', 'plan');
    expectCode(() => native.mlpForward(plan, 0, 1, new Float32Array(5), 1, new Float32Array(4), false), 'E_SHAPE', 'x');
    expectCode(() => native.mlpForward(plan, 0, 1, new Float32Array(6), 1, new Float32Array(3), false), 'E_SHAPE', 'out');
    expectCode(() => native.mlpForward(plan, 0, 1, new Float32Array(6), 0, new Float32Array(4), false), 'E_SHAPE', 'm');
    expectCode(() => native.mlpForward(plan, 0, 2, new Float32Array(6), 1, new Float32Array(4), false), 'E_VALUE', 'first, last');
    expectCode(() => native.mlpForward(plan, 1, 1, new Float32Array(6), 1, new Float32Array(4), false), 'E_VALUE', 'first, last');
    const both = new Float32Array(10);
    expectCode(() => native.mlpForward(plan, 0, 1, both.subarray(0, 6), 1, both.subarray(4, 8), false), 'E_VALUE', 'out and x');
  });

  it('takes as a plan only what its own mlpPlan made: not an External of another native module (E_TYPE, nothing read)', async () => {
    // Another copy of the addon file is another native module (its own Plan type, layout and deleter): the only
    // other N-API External a JavaScript caller can get hold of here. Its plans are Externals like ours.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nmsparse-other-'));
    const file = path.join(dir, 'nmsparse.node');
    fs.copyFileSync(addonPath, file);
    const other = { exports: {} as Addon };
    process.dlopen(other, file);
    const layer = { w: new Float32Array(24).fill(1), bias: null, n: 4, k: 6, relu: false };
    const theirs = other.exports.mlpPlan({ layers: [layer] }), ours = native.mlpPlan({ layers: [layer] });
    const x = new Float32Array(6).fill(1), y = new Float32Array(4).fill(NaN);
    other.exports.mlpForward(theirs, 0, 1, x, 1, y, false);
    expect(Array.from(y)).toEqual([6, 6, 6, 6]);  // a working plan, in its own module
    for (const async of [false, true]) {
      y.fill(NaN);
      expectCode(() => native.mlpForward(theirs, 0, 1, x, 1, y, async), 'E_TYPE', 'plan (argument 0)');
      expect(() => other.exports.mlpForward(ours, 0, 1, x, 1, y, async)).toThrow(expect.objectContaining({ code: 'E_TYPE' }));  // raw: not lib's wrapper
      expect(Array.from(y).every(Number.isNaN)).toBe(true);
    }
    let err: unknown;
    try { native.mlpForward(theirs, 0, 1, x, 1, y, false); } catch (e) { err = e; }
    expect((err as Error).message).toMatch(/expected a plan from mlpPlan, got an object whose handle is an External that this addon's mlpPlan did not make/);
    // what is not even an External, named
    expectCode(() => native.mlpForward({ handle: {} }, 0, 1, x, 1, y, false), 'E_TYPE', 'got an object whose handle is an object');
    expectCode(() => native.mlpForward({} as never, 0, 1, x, 1, y, false), 'E_TYPE', 'got an object whose handle is undefined');
    expectCode(() => native.mlpForward(ours.handle as never, 0, 1, x, 1, y, false), 'E_TYPE', 'got an External');
    expectCode(() => native.mlpForward(null as never, 0, 1, x, 1, y, false), 'E_TYPE', 'got null');
    // and the process is alive: our own plans still work, sync and async
    await native.mlpForward(ours, 0, 1, x, 1, y, true);
    expect(Array.from(y)).toEqual([6, 6, 6, 6]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
