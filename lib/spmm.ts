/**
 * N:M-sparse × dense products, straight from a SparseTensor's compressed form (no decompression):
 *   sparseLinear(x, S, bias)  = x·W̃ᵀ + bias   (nm.linear; x [..., in], S [out, in] → [..., out])
 *   sparseMatmul(S, b)        = W̃·b (+ bias)   (S.matmul(b); S [rows, cols], b [cols, p] → [rows, p])
 * On the CPU they run native/cpu/spmm.cc: only the kept values are multiplied (a 2:4 weight costs half the
 * FMAs of the dense product), float32 math, float16/bfloat16 converted on the fly, nothing allocated per call
 * beyond the result (and a float32 scratch for an activation on a 16-bit result). The async forms run on the
 * thread pool. The arguments are checked here once, by the rules of lib/gemm.ts for every device; a plan on
 * another device goes to its backend.
 */
import { native } from './native.js';
import { fail } from './errors.js';
import { deviceOp, type Activation, type SpmmPlan } from './device.js';
import { SparseTensor, checkSparse } from './compress.js';
import { Tensor, checkTensor, outputFor, type Shape } from './tensor.js';
import { allocPinnedStorage } from './dtype.js';
import {
  checkActivation, checkBias, checkOptions, checkProductOut, cpuTarget, finishCpu, nonEmpty, productDType, resultDType,
} from './gemm.js';

export interface SparseLinearOptions {
  /** Written in place of a new tensor: exactly [..., out], the result's dtype, on the same device. */
  out?: Tensor;
  /** Applied to x·W̃ᵀ + bias before it is rounded to the result's dtype: 'relu' or 'gelu' (x·Φ(x), the erf form). */
  activation?: Activation;
}

export interface SparseMatmulOptions {
  /** Added to every column of the result: [rows], the result's dtype. */
  bias?: Tensor;
  /** Written in place of a new tensor: exactly [rows, p], the result's dtype, on the same device. */
  out?: Tensor;
}

/** Throws E_DEVICE unless `t` is on the sparse tensor's device. */
function sparseDevice(S: SparseTensor, t: Tensor, arg: string, like: string): void {
  if (t.device !== S.device) fail('E_DEVICE', arg, t, `a tensor on '${S.device}' like ${like}`);
}

/** The inputs whose memory `out` must not share: on the CPU the weight's values too (a device form is its own). */
function inputsOf(S: SparseTensor, name: string, rest: [Tensor | null, string][]): [Tensor | null, string][] {
  return S.device === 'cpu' ? [[S.values, name], ...rest] : rest;
}

function planLinear(x: unknown, s: unknown, bias: unknown, opts: unknown): SpmmPlan {
  const S = checkSparse(s, 'weight');
  const X = checkTensor(x, 'x');
  const o = checkOptions<SparseLinearOptions>(opts);
  const activation = checkActivation(o.activation);
  sparseDevice(S, X, 'x', 'the weight');
  if (S.shape.length !== 2) fail('E_SHAPE', 'weight', S, 'a 2-D sparse weight [out, in]');
  const [outF, inF] = S.shape;
  if (X.rank < 1 || X.shape[X.rank - 1] !== inF) fail('E_SHAPE', 'x', X, `a tensor [..., ${inF}] (the weight is [${outF}, ${inF}])`);
  const input = productDType(X, 'x');
  if (S.dtype !== input) fail('E_DTYPE', 'x', X, `a ${S.dtype} tensor like the weight`);
  const rows = X.size / inF;
  nonEmpty(X, 'x', [rows]);
  const dtype = resultDType(input);
  const b = checkBias(bias, 'bias', outF, dtype, S.device, 'the weight');
  const shape = [...X.shape.slice(0, -1), outF];
  const out = checkProductOut(o.out, shape, dtype, S.device, inputsOf(S, 'the weight', [[X, 'x'], [b, 'bias']]));
  return { s: S, b: X, bias: b, rows: outF, cols: inF, p: rows, linear: true, activation, shape, dtype, out };
}

function planMatmul(s: unknown, b: unknown, opts: unknown): SpmmPlan {
  const S = checkSparse(s, 'sparse tensor');
  const B = checkTensor(b, 'b');
  const o = checkOptions<SparseMatmulOptions>(opts);
  sparseDevice(S, B, 'b', 'the sparse tensor');
  const cols = S.cols, rows = S.rows;
  if (B.rank !== 2 || B.shape[0] !== cols) fail('E_SHAPE', 'b', B, `a matrix [${cols}, p] (the sparse tensor is [${S.shape.join(', ')}])`);
  const input = productDType(B, 'b');
  if (S.dtype !== input) fail('E_DTYPE', 'b', B, `a ${S.dtype} tensor like the sparse tensor`);
  const p = B.shape[1];
  nonEmpty(B, 'b', [p]);
  const dtype = resultDType(input);
  const bias = checkBias(o.bias, 'options.bias', rows, dtype, S.device, 'the sparse tensor');
  const shape: Shape = [rows, p];
  const out = checkProductOut(o.out, shape, dtype, S.device, inputsOf(S, 'the sparse tensor', [[B, 'b'], [bias, 'options.bias']]));
  return { s: S, b: B, bias, rows, cols, p, linear: false, activation: null, shape, dtype, out };
}

/** The packed copies packSparse made, by weight. */
const packs = new WeakMap<SparseTensor, Float32Array>();

/**
 * Packs a float32 N:4 SparseTensor on the CPU (2:4, 1:4, 3:4) for nm.linear up to 256 rows of x: a
 * copy of its values and positions with 16 rows of the weight in each vector (native/cpu/spmm.cc, spmm_packed),
 * which those products then read instead of the compressed form, about twice as fast on the Zen 4 measured
 * (with AVX-512; elsewhere, and for other products, the compressed form is read as before). The copy takes about
 * as much memory as the weight and is released with it; it is of the values when packed: after changing the
 * weight in place, pack it again (else the two paths disagree). Returns the copy's bytes: 0 where there is
 * none (another device, dtype or N:M, or a weight that is not 2-D).
 */
export function packSparse(s: SparseTensor): number {
  const S = checkSparse(s, 'weight');
  if (S.device !== 'cpu' || S.dtype !== 'float32' || S.m !== 4 || S.shape.length !== 2) return 0;
  const floats = native.spmmPackedSize(S.rows, S.cols, S.n, S.m);
  const packed = allocPinnedStorage('float32', floats) as Float32Array;
  native.spmmPack({ values: S.values.storage('values'), positions: S.positions, rows: S.rows, cols: S.cols, n: S.n, m: S.m, out: packed });
  packs.set(S, packed);
  return packed.byteLength;
}

/** The copy packSparse made of `s` (what nm.linear reads at small batches), if any. */
export function packedOf(s: SparseTensor): Float32Array | undefined { return packs.get(s); }

/** Releases packSparse's copy of `s` now (InferenceModel.dispose), not when `s` is collected. */
export function unpackSparse(s: SparseTensor): void { packs.delete(s); }

/** The product of a validated plan: the native SpMM on the CPU (a Promise when async), else the device's. */
function runSpmm(c: SpmmPlan, async: boolean): Tensor | Promise<Tensor> {
  if (c.s.device !== 'cpu') return deviceOp(c.s.device, 'spmm')(c);
  const t = cpuTarget(c, async);
  const v = c.s.values;
  const bias = c.bias ? { bias: c.bias.storage('bias'), biasDtype: c.bias.dtypeCode } : {};
  const packed = c.linear ? packedOf(c.s) : undefined;
  const r = native.spmm({
    values: v.storage('values'), positions: c.s.positions, wDtype: v.dtypeCode, rows: c.rows, cols: c.cols, n: c.s.n, m: c.s.m,
    b: c.b.storage('b'), bDtype: c.b.dtypeCode, p: c.p, out: t.acc.storage('options.out'), outDtype: t.acc.dtypeCode,
    transB: c.linear, transOut: c.linear, async, ...bias, ...(packed ? { packed } : {}),
  });
  return r ? r.then(() => finishCpu(t, c.activation)) : finishCpu(t, c.activation);
}

/** x·W̃ᵀ + bias with W̃ N:M-sparse: x [..., in], S [out, in], bias [out] → [..., out], then options.activation (nm.linear). */
export function sparseLinear(x: Tensor, s: SparseTensor, bias?: Tensor | null, opts: SparseLinearOptions = {}): Tensor {
  return runSpmm(planLinear(x, s, bias, opts), false) as Tensor;
}

/** sparseLinear() on the thread pool: the event loop stays free while it runs. */
export async function sparseLinearAsync(x: Tensor, s: SparseTensor, bias?: Tensor | null, opts: SparseLinearOptions = {}): Promise<Tensor> {
  return runSpmm(planLinear(x, s, bias, opts), true);
}

/** W̃·b (+ bias) with W̃ N:M-sparse: S [rows, cols], b [cols, p], bias [rows] → [rows, p] (S.matmul(b)). */
export function sparseMatmul(s: SparseTensor, b: Tensor, opts: SparseMatmulOptions = {}): Tensor {
  return runSpmm(planMatmul(s, b, opts), false) as Tensor;
}

/** sparseMatmul() on the thread pool: the event loop stays free while it runs. */
export async function sparseMatmulAsync(s: SparseTensor, b: Tensor, opts: SparseMatmulOptions = {}): Promise<Tensor> {
  return runSpmm(planMatmul(s, b, opts), true);
}

/**
 * dX = dY·W̃, the input gradient of y = x·W̃ᵀ, with W̃ the masked weight of a sparse layer in compressed form (what
 * nmTrainPass writes): dy [rows, out], S [out, in] float32 → [rows, in]. Only the kept values are multiplied
 * (native/cpu/spmm.cc spmm_t: a 2:4 weight costs half the FMAs of matmul(dy, W̃) and reads half its bytes); the
 * result equals the dense product up to the order of the sums. CPU, float32.
 */
export function linearInputGrad(dy: Tensor, s: SparseTensor, opts: { out?: Tensor } = {}): Tensor {
  const D = checkTensor(dy, 'dy'), S = checkSparse(s, 'weight');
  if (D.device !== 'cpu') fail('E_DEVICE', 'dy', D, 'a cpu tensor');
  if (S.device !== 'cpu') fail('E_DEVICE', 'weight', S, 'a cpu sparse tensor');
  if (D.dtype !== 'float32') fail('E_DTYPE', 'dy', D, 'a float32 tensor');
  if (S.dtype !== 'float32') fail('E_DTYPE', 'weight', S, 'a float32 sparse tensor');
  if (D.rank !== 2) fail('E_SHAPE', 'dy', D, 'a matrix');
  if (S.shape.length !== 2) fail('E_SHAPE', 'weight', S, 'a 2-D sparse weight [out, in]');
  const [outF, inF] = S.shape, rows = D.shape[0];
  if (D.shape[1] !== outF) fail('E_SHAPE', 'dy', D, `a matrix [rows, ${outF}] (the weight is [${outF}, ${inF}])`);
  nonEmpty(D, 'dy', [rows, outF]);
  const out = outputFor(checkProductOut(opts.out, [rows, inF], 'float32', 'cpu', [[S.values, 'the weight'], [D, 'dy']]), [rows, inF], 'float32');
  native.spmmT({
    values: S.values.storage('values'), positions: S.positions, rows: outF, cols: inF, n: S.n, m: S.m, b: D.storage('dy'),
    bDtype: D.dtypeCode, p: rows, out: out.storage('options.out'), outDtype: out.dtypeCode, transB: true, transOut: true,
  });
  return out;
}
