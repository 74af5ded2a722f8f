/**
 * N:M-sparse × dense products, straight from a SparseTensor's compressed form (no decompression):
 *   sparseLinear(x, S, bias)  = x·W̃ᵀ + bias   (nm.linear; x [..., in], S [out, in] → [..., out])
 *   sparseMatmul(S, b)        = W̃·b (+ bias)   (S.matmul(b); S [rows, cols], b [cols, p] → [rows, p])
 * On the CPU they run native/cpu/spmm.cc: only the kept values are multiplied (a 2:4 weight costs half the
 * FMAs of the dense product), float32 math, float16/bfloat16 converted on the fly, nothing allocated per call
 * beyond the result. The async forms run on the thread pool. Tensors on another device go to its backend.
 */
import { native } from './native.js';
import { fail } from './errors.js';
import { deviceOp } from './device.js';
import { SparseTensor, checkSparse } from './compress.js';
import { Tensor, checkTensor } from './tensor.js';
import { checkBias, checkOptions, floatDType, nonEmpty, outputTensor, sameDevice } from './gemm.js';

export interface SparseLinearOptions {
  /** Written in place of a new tensor: exactly [..., out], the weight's dtype, on the same device. */
  out?: Tensor;
}

export interface SparseMatmulOptions {
  /** Added to every column of the result: [rows], the sparse tensor's dtype. */
  bias?: Tensor;
  /** Written in place of a new tensor: exactly [rows, p], the sparse tensor's dtype, on the same device. */
  out?: Tensor;
}

interface SpmmCall {
  s: SparseTensor; b: Tensor; out: Tensor; bias?: Tensor;
  rows: number; cols: number; p: number; transB: boolean; transOut: boolean;
}

function sparseDevice(S: SparseTensor, t: Tensor, arg: string, like: string): void {
  if (t.device !== S.device) fail('E_DEVICE', arg, t, `a tensor on '${S.device}' like ${like}`);
}

function planLinear(x: unknown, s: unknown, bias: unknown, opts: unknown, async: boolean): SpmmCall | { device: Tensor } {
  const S = checkSparse(s, 'weight');
  const X = checkTensor(x, 'x');
  const o = checkOptions<SparseLinearOptions>(opts);
  sparseDevice(S, X, 'x', 'the weight');
  if (S.device !== 'cpu') {
    if (bias !== undefined && bias !== null) sameDevice(checkTensor(bias, 'bias'), 'bias', S.device, 'the weight');
    return { device: deviceOp(S.device, 'sparseLinear')(X, S, bias as Tensor | null | undefined, { out: o.out }) };
  }
  if (S.shape.length !== 2) fail('E_SHAPE', 'weight', S, 'a 2-D sparse weight [out, in]');
  const [outF, inF] = S.shape;
  if (X.rank < 1 || X.shape[X.rank - 1] !== inF) fail('E_SHAPE', 'x', X, `a tensor [..., ${inF}] (the weight is [${outF}, ${inF}])`);
  const dtype = floatDType(X, 'x');
  if (S.dtype !== dtype) fail('E_DTYPE', 'x', X, `a ${S.dtype} tensor like the weight`);
  const rows = X.size / inF;
  nonEmpty(X, 'x', [rows]);
  const b = checkBias(bias, 'bias', outF, dtype, 'cpu', 'the weight');
  const out = outputTensor(o.out, [...X.shape.slice(0, -1), outF], dtype, [[X, 'x'], [S.values, 'the weight'], [b, 'bias']], async);
  return { s: S, b: X, out, bias: b, rows: outF, cols: inF, p: rows, transB: true, transOut: true };
}

function planMatmul(s: unknown, b: unknown, opts: unknown, async: boolean): SpmmCall | { device: Tensor } {
  const S = checkSparse(s, 'sparse tensor');
  const B = checkTensor(b, 'b');
  const o = checkOptions<SparseMatmulOptions>(opts);
  sparseDevice(S, B, 'b', 'the sparse tensor');
  if (S.device !== 'cpu') {
    if (o.bias !== undefined && o.bias !== null) sameDevice(checkTensor(o.bias, 'options.bias'), 'options.bias', S.device, 'the sparse tensor');
    return { device: deviceOp(S.device, 'sparseMatmul')(S, B, { bias: o.bias ?? undefined, out: o.out }) as Tensor };
  }
  const cols = S.cols, rows = S.rows;
  if (B.rank !== 2 || B.shape[0] !== cols) fail('E_SHAPE', 'b', B, `a matrix [${cols}, p] (the sparse tensor is [${S.shape.join(', ')}])`);
  const dtype = floatDType(B, 'b');
  if (S.dtype !== dtype) fail('E_DTYPE', 'b', B, `a ${S.dtype} tensor like the sparse tensor`);
  const p = B.shape[1];
  nonEmpty(B, 'b', [p]);
  const bias = checkBias(o.bias, 'options.bias', rows, dtype, 'cpu', 'the sparse tensor');
  const out = outputTensor(o.out, [rows, p], dtype, [[B, 'b'], [S.values, 'the sparse tensor'], [bias, 'options.bias']], async);
  return { s: S, b: B, out, bias, rows, cols, p, transB: false, transOut: false };
}

function runSpmm(c: SpmmCall, async: boolean): unknown {
  const v = c.s.values;
  return native.spmm(v.storage('values'), c.s.positions, v.dtypeCode, c.rows, c.cols, c.s.n, c.s.m,
    c.b.storage('b'), c.b.dtypeCode, c.p, c.out.storage('options.out'), c.out.dtypeCode, c.transB, c.transOut,
    c.bias ? c.bias.storage('bias') : null, c.bias ? c.bias.dtypeCode : 0, async);
}

/** x·W̃ᵀ + bias with W̃ N:M-sparse: x [..., in], S [out, in], bias [out] → [..., out] (nm.linear). */
export function sparseLinear(x: Tensor, s: SparseTensor, bias?: Tensor | null, opts: SparseLinearOptions = {}): Tensor {
  const c = planLinear(x, s, bias, opts, false);
  if ('device' in c) return c.device;
  runSpmm(c, false);
  return c.out;
}

/** sparseLinear() on the thread pool: the event loop stays free while it runs. */
export async function sparseLinearAsync(x: Tensor, s: SparseTensor, bias?: Tensor | null, opts: SparseLinearOptions = {}): Promise<Tensor> {
  const c = planLinear(x, s, bias, opts, true);
  if ('device' in c) return c.device;
  await runSpmm(c, true);
  return c.out;
}

/** W̃·b (+ bias) with W̃ N:M-sparse: S [rows, cols], b [cols, p], bias [rows] → [rows, p] (S.matmul(b)). */
export function sparseMatmul(s: SparseTensor, b: Tensor, opts: SparseMatmulOptions = {}): Tensor {
  const c = planMatmul(s, b, opts, false);
  if ('device' in c) return c.device;
  runSpmm(c, false);
  return c.out;
}

/** sparseMatmul() on the thread pool: the event loop stays free while it runs. */
export async function sparseMatmulAsync(s: SparseTensor, b: Tensor, opts: SparseMatmulOptions = {}): Promise<Tensor> {
  const c = planMatmul(s, b, opts, true);
  if ('device' in c) return c.device;
  await runSpmm(c, true);
  return c.out;
}

/**
 * dX = dY·W̃, the input gradient of y = x·W̃ᵀ, with W̃ the masked weight of a sparse layer: dy [rows, out], w
 * [out, in] float32 with its pruned entries zero → [rows, in]. The zeros are skipped (native/cpu/spmm.cc spmm_t:
 * a 2:4 weight costs half the FMAs of matmul(dy, w)); the result equals the dense product up to the order of the
 * sums. CPU, float32.
 */
export function linearInputGrad(dy: Tensor, w: Tensor, opts: { out?: Tensor } = {}): Tensor {
  const D = checkTensor(dy, 'dy'), W = checkTensor(w, 'w');
  for (const [t, arg] of [[D, 'dy'], [W, 'w']] as const) {
    if (t.device !== 'cpu') fail('E_DEVICE', arg, t, 'a cpu tensor');
    if (t.dtype !== 'float32') fail('E_DTYPE', arg, t, 'a float32 tensor');
    if (t.rank !== 2) fail('E_SHAPE', arg, t, 'a matrix');
  }
  const [outF, inF] = W.shape, rows = D.shape[0];
  if (D.shape[1] !== outF) fail('E_SHAPE', 'dy', D, `a matrix [rows, ${outF}] (w is [${outF}, ${inF}])`);
  nonEmpty(D, 'dy', [rows, outF, inF]);
  const out = outputTensor(opts.out, [rows, inF], 'float32', [[D, 'dy'], [W, 'w']], false);
  native.spmmT(W.storage('w'), outF, inF, D.storage('dy'), D.dtypeCode, rows, out.storage('options.out'), out.dtypeCode, true, true);
  return out;
}
