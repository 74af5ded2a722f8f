/**
 * Dense products: matmul(a, b) = op(a)·op(b) and linear(x, W, bias) = x·Wᵀ + bias (PyTorch's Linear, W [out, in]).
 * On the CPU they run the native GEMM (native/cpu/gemm.cc: packed, cache-blocked, AVX-512/AVX2 kernels chosen at
 * run time, multi-threaded); float16/bfloat16 inputs are converted while packing, the math is float32, and the
 * result has the inputs' dtype. The async forms run on the thread pool and leave the event loop free. Tensors
 * on another device go to that device's backend (lib/device.ts).
 */
import { native } from './native.js';
import { fail } from './errors.js';
import { deviceOp, type Device } from './device.js';
import { isFloat, type DType } from './dtype.js';
import { Tensor, checkOptions, checkOut, checkTensor, outputFor, type Shape } from './tensor.js';

export { checkOptions };

export interface MatmulOptions {
  /** Use aᵀ: a is [k, m]. */
  transA?: boolean;
  /** Use bᵀ: b is [n, k]. */
  transB?: boolean;
  /** Added to every row of the result: [n], the inputs' dtype. */
  bias?: Tensor;
  /** Written in place of a new tensor: exactly [m, n], the inputs' dtype, on the same device. */
  out?: Tensor;
}

export interface LinearOptions {
  /** Written in place of a new tensor: exactly [..., out], x's dtype, on the same device. */
  out?: Tensor;
}

// ---- argument checks shared with lib/spmm.ts ---------------------------------------------------------------------

export function checkFlag(v: unknown, arg: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') fail('E_TYPE', arg, v, 'a boolean');
  return v;
}

/** Throws E_DEVICE unless `t` is on `device` (the device of the first operand, named `like`). */
export function sameDevice(t: Tensor, arg: string, device: Device, like: string): void {
  if (t.device !== device) fail('E_DEVICE', arg, t, `a tensor on '${device}' like ${like}`);
}

/** A float dtype for the CPU products (E_DTYPE otherwise). */
export function floatDType(t: Tensor, arg: string): DType {
  if (!isFloat(t.dtype)) fail('E_DTYPE', arg, t, 'a float32, float16 or bfloat16 tensor');
  return t.dtype;
}

export function sameDType(t: Tensor, arg: string, dtype: DType, like: string): void {
  if (t.dtype !== dtype) fail('E_DTYPE', arg, t, `a ${dtype} tensor like ${like}`);
}

/** An optional bias: undefined/null, or a live 1-D tensor of `len` elements, `dtype`, on `device`. */
export function checkBias(bias: unknown, arg: string, len: number, dtype: DType, device: Device, like: string): Tensor | undefined {
  if (bias === undefined || bias === null) return undefined;
  const b = checkTensor(bias, arg);
  sameDevice(b, arg, device, like);
  if (b.rank !== 1 || b.shape[0] !== len) fail('E_SHAPE', arg, b, `a 1-D tensor of ${len} elements`);
  sameDType(b, arg, dtype, like);
  return b;
}

/** The output tensor (a new one, or the validated `out`), which must not share memory with any input. */
export function outputTensor(out: unknown, shape: Shape, dtype: DType, inputs: [Tensor | undefined, string][], async: boolean): Tensor {
  const o = checkOut(out, shape, dtype, 'cpu');
  if (o) {
    const os = o.storage('options.out');
    for (const [t, name] of inputs) {
      if (!t) continue;
      const s = t.storage(name);
      if (s.buffer === os.buffer && s.byteOffset < os.byteOffset + os.byteLength && os.byteOffset < s.byteOffset + s.byteLength)
        fail('E_VALUE', 'options.out', o, `a tensor that does not share memory with ${name}`);
    }
  }
  return outputFor(o, shape, dtype, async);
}

/** Throws E_SHAPE when a product dimension is 0. */
export function nonEmpty(t: Tensor, arg: string, dims: number[]): void {
  if (dims.some((d) => d === 0)) fail('E_SHAPE', arg, t, 'a non-empty tensor');
}

// ---- matmul ------------------------------------------------------------------------------------------------------

interface GemmCall {
  a: Tensor; b: Tensor; out: Tensor; bias?: Tensor;
  m: number; n: number; k: number; transA: boolean; transB: boolean;
}

/** Validates matmul's arguments; a device result when the tensors are not on the CPU. */
function planMatmul(a: unknown, b: unknown, opts: unknown, async: boolean): GemmCall | { device: Tensor } {
  const A = checkTensor(a, 'a');
  const B = checkTensor(b, 'b');
  const o = checkOptions<MatmulOptions>(opts);
  const transA = checkFlag(o.transA, 'options.transA');
  const transB = checkFlag(o.transB, 'options.transB');
  sameDevice(B, 'b', A.device, 'a');
  if (A.device !== 'cpu') {
    if (o.bias !== undefined && o.bias !== null) sameDevice(checkTensor(o.bias, 'options.bias'), 'options.bias', A.device, 'a');
    return { device: deviceOp(A.device, 'matmul')(A, B, { transA, transB, bias: o.bias ?? undefined, out: o.out }) as Tensor };
  }
  if (A.rank !== 2) fail('E_SHAPE', 'a', A, 'a 2-D tensor');
  if (B.rank !== 2) fail('E_SHAPE', 'b', B, 'a 2-D tensor');
  const dtype = floatDType(A, 'a');
  sameDType(B, 'b', dtype, 'a');
  const [m, k] = transA ? [A.shape[1], A.shape[0]] : [A.shape[0], A.shape[1]];
  const [kb, n] = transB ? [B.shape[1], B.shape[0]] : [B.shape[0], B.shape[1]];
  if (kb !== k)
    fail('E_SHAPE', 'b', B, transB ? `a matrix [n, ${k}] (op(a) is [${m}, ${k}])` : `a matrix [${k}, n] (op(a) is [${m}, ${k}])`);
  nonEmpty(A, 'a', [m, k]);
  nonEmpty(B, 'b', [n]);
  const bias = checkBias(o.bias, 'options.bias', n, dtype, 'cpu', 'a');
  const out = outputTensor(o.out, [m, n], dtype, [[A, 'a'], [B, 'b'], [bias, 'options.bias']], async);
  return { a: A, b: B, out, bias, m, n, k, transA, transB };
}

function runGemm(g: GemmCall, async: boolean): unknown {
  return native.gemm(g.a.storage('a'), g.a.dtypeCode, g.b.storage('b'), g.b.dtypeCode, g.out.storage('options.out'), g.out.dtypeCode,
    g.m, g.n, g.k, g.transA, g.transB, g.bias ? g.bias.storage('bias') : null, g.bias ? g.bias.dtypeCode : 0, async);
}

/**
 * op(a)·op(b) (+ bias): a [m, k] (or [k, m] with transA), b [k, n] (or [n, k] with transB) → [m, n].
 * Both inputs share one float dtype, which the result keeps.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const g = planMatmul(a, b, opts, false);
  if ('device' in g) return g.device;
  runGemm(g, false);
  return g.out;
}

/** matmul() on the thread pool: the event loop stays free while it runs. */
export async function matmulAsync(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Promise<Tensor> {
  const g = planMatmul(a, b, opts, true);
  if ('device' in g) return g.device;
  await runGemm(g, true);
  return g.out;
}

// ---- linear ------------------------------------------------------------------------------------------------------

function planLinear(x: unknown, w: unknown, bias: unknown, opts: unknown, async: boolean): GemmCall | { device: Tensor } {
  const X = checkTensor(x, 'x');
  const W = checkTensor(w, 'weight');
  const o = checkOptions<LinearOptions>(opts);
  sameDevice(W, 'weight', X.device, 'x');
  if (X.device !== 'cpu') {
    if (bias !== undefined && bias !== null) sameDevice(checkTensor(bias, 'bias'), 'bias', X.device, 'x');
    return { device: deviceOp(X.device, 'linear')(X, W, bias as Tensor | null | undefined, { out: o.out }) };
  }
  if (W.rank !== 2) fail('E_SHAPE', 'weight', W, 'a 2-D weight [out, in]');
  const [outF, inF] = W.shape;
  if (X.rank < 1 || X.shape[X.rank - 1] !== inF) fail('E_SHAPE', 'x', X, `a tensor [..., ${inF}] (the weight is [${outF}, ${inF}])`);
  const dtype = floatDType(X, 'x');
  sameDType(W, 'weight', dtype, 'x');
  const rows = inF === 0 ? 0 : X.size / inF;
  nonEmpty(X, 'x', [rows, inF]);
  nonEmpty(W, 'weight', [outF]);
  const b = checkBias(bias, 'bias', outF, dtype, 'cpu', 'x');
  const out = outputTensor(o.out, [...X.shape.slice(0, -1), outF], dtype, [[X, 'x'], [W, 'weight'], [b, 'bias']], async);
  return { a: X, b: W, out, bias: b, m: rows, n: outF, k: inF, transA: false, transB: true };
}

/** x·Wᵀ + bias, PyTorch's Linear: x [..., in], W [out, in], bias [out] → [..., out]. */
export function linear(x: Tensor, w: Tensor, bias?: Tensor | null, opts: LinearOptions = {}): Tensor {
  const g = planLinear(x, w, bias, opts, false);
  if ('device' in g) return g.device;
  runGemm(g, false);
  return g.out;
}

/** linear() on the thread pool: the event loop stays free while it runs. */
export async function linearAsync(x: Tensor, w: Tensor, bias?: Tensor | null, opts: LinearOptions = {}): Promise<Tensor> {
  const g = planLinear(x, w, bias, opts, true);
  if ('device' in g) return g.device;
  await runGemm(g, true);
  return g.out;
}
