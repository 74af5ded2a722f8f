/**
 * Dense products: matmul(a, b) = op(a)·op(b) and linear(x, W, bias) = x·Wᵀ + bias (PyTorch's Linear, W [out, in]).
 * On the CPU they run the native GEMM (native/cpu/gemm.cc: packed, cache-blocked, AVX-512/AVX2 kernels chosen at
 * run time, multi-threaded); float16/bfloat16 inputs are converted while packing, the math is float32, and the
 * result has the inputs' dtype. The async forms run on the thread pool and leave the event loop free.
 * Every product's arguments are checked here (and in lib/spmm.ts for the sparse ones) once, by the same rules on
 * every device (docs/design.md §4); a tensor on another device then goes, as a validated plan, to that device's
 * backend (lib/device.ts), which trusts it.
 */
import { native } from './native.js';
import { NmSparseError, fail } from './errors.js';
import { deviceOp, type Activation, type Device, type GemmPlan } from './device.js';
import { allocPinnedStorage, isFloat, type DType } from './dtype.js';
import { Tensor, checkOptions, checkOut, checkTensor, outputFor, type Shape } from './tensor.js';

export { checkOptions };
export type { Activation };

/** The native activation codes (index = code), the table of native/core/activation.h. */
export const ACTIVATIONS = ['none', 'relu', 'gelu'] as const;

export interface MatmulOptions {
  /** Use aᵀ: a is [k, m]. */
  transA?: boolean;
  /** Use bᵀ: b is [n, k]. */
  transB?: boolean;
  /** Added to every row of the result: [n], the result's dtype. */
  bias?: Tensor;
  /** Written in place of a new tensor: exactly [m, n], the result's dtype, on the same device. */
  out?: Tensor;
}

export interface LinearOptions {
  /** Written in place of a new tensor: exactly [..., out], the result's dtype, on the same device. */
  out?: Tensor;
  /** Applied to x·Wᵀ + bias before it is rounded to the result's dtype: 'relu' or 'gelu' (x·Φ(x), the erf form). */
  activation?: Activation;
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

/**
 * The input dtype of a product on t's device: float32, float16 or bfloat16 everywhere, and int8 on 'cuda' (int32
 * accumulation, a float32 result). E_DTYPE otherwise; uint8 on 'cuda' is E_UNSUPPORTED.
 */
export function productDType(t: Tensor, arg: string): DType {
  if (isFloat(t.dtype) || (t.dtype === 'int8' && t.device === 'cuda')) return t.dtype;
  if (t.device === 'cuda' && t.dtype === 'uint8') fail('E_UNSUPPORTED', arg, t, "a float or int8 tensor (uint8 products are not implemented on 'cuda')");
  fail('E_DTYPE', arg, t, t.device === 'cuda' ? 'a float32, float16, bfloat16 or int8 tensor' : 'a float32, float16 or bfloat16 tensor');
}

/** The dtype of a product's result, its bias and its `out`: the inputs' dtype, float32 for int8 inputs. */
export const resultDType = (input: DType): DType => (input === 'int8' ? 'float32' : input);

export function sameDType(t: Tensor, arg: string, dtype: DType, like: string): void {
  if (t.dtype !== dtype) fail('E_DTYPE', arg, t, `a ${dtype} tensor like ${like}`);
}

/** An optional bias: undefined/null, or a live 1-D tensor of `len` elements, `dtype`, on `device`. */
export function checkBias(bias: unknown, arg: string, len: number, dtype: DType, device: Device, like: string): Tensor | null {
  if (bias === undefined || bias === null) return null;
  const b = checkTensor(bias, arg);
  sameDevice(b, arg, device, like);
  if (b.rank !== 1 || b.shape[0] !== len) fail('E_SHAPE', arg, b, `a 1-D tensor of ${len} elements`);
  if (b.dtype !== dtype) fail('E_DTYPE', arg, b, `a ${dtype} tensor (the result's dtype)`);
  return b;
}

/** An optional epilogue activation: 'relu', 'gelu', or undefined/null for none. */
export function checkActivation(v: unknown, arg = 'options.activation'): Activation | null {
  if (v === undefined || v === null) return null;
  if (v !== 'relu' && v !== 'gelu') fail('E_VALUE', arg, v, "'relu', 'gelu' or undefined");
  return v;
}

/** Whether two live tensors on one device share memory (device tensors own whole buffers, views share them). */
function sharesMemory(a: Tensor, b: Tensor): boolean {
  if (a.device !== 'cpu') return a.deviceStorage() === b.deviceStorage();
  const s = a.storage(), o = b.storage();
  return s.buffer === o.buffer && s.byteOffset < o.byteOffset + o.byteLength && o.byteOffset < s.byteOffset + s.byteLength;
}

/**
 * The caller's `out`, validated: exactly `shape`, `dtype`, on `device`, sharing no memory with any input (the
 * kernels read the inputs while they write, and the first GPU call of a shape runs the product more than once).
 */
export function checkProductOut(out: unknown, shape: Shape, dtype: DType, device: Device, inputs: [Tensor | null, string][]): Tensor | undefined {
  const o = checkOut(out, shape, dtype, device);
  if (o)
    for (const [t, name] of inputs)
      if (t && sharesMemory(t, o)) fail('E_VALUE', 'options.out', o, `a tensor that does not share memory with ${name}`);
  return o;
}

/** Throws E_SHAPE when a product dimension is 0. */
export function nonEmpty(t: Tensor, arg: string, dims: number[]): void {
  if (dims.some((d) => d === 0)) fail('E_SHAPE', arg, t, 'a non-empty tensor');
}

// ---- the CPU epilogue ------------------------------------------------------------------------------------------

/**
 * Where a CPU product writes: its result `out`, or with an activation on a 16-bit result a float32 `acc`, so that
 * the activation sees the float32 sums and the result is rounded once, as in the GPU epilogue.
 */
export interface CpuTarget { out: Tensor; acc: Tensor }

export function cpuTarget(p: { out: Tensor | undefined; shape: Shape; dtype: DType; activation: Activation | null }, async: boolean): CpuTarget {
  const out = outputFor(p.out, p.shape, p.dtype, async);
  return { out, acc: p.activation && p.dtype !== 'float32' ? outputFor(undefined, p.shape, 'float32', async) : out };
}

/**
 * The activation as a second pass over `acc` (null: none, or one the native epilogue applied), then the rounding
 * to the result's dtype.
 */
export function finishCpu(t: CpuTarget, activation: Activation | null): Tensor {
  if (t.acc === t.out && !activation) return t.out;
  const acc = t.acc.storage('options.out');
  if (activation === 'relu') native.reluForward(acc, acc, t.acc.size);
  else if (activation === 'gelu') native.geluForward(acc, acc, t.acc.size);
  if (t.acc !== t.out) native.convert(acc, t.acc.dtypeCode, t.out.storage('options.out'), t.out.dtypeCode, t.out.size);
  return t.out;
}

// ---- matmul ------------------------------------------------------------------------------------------------------

function planMatmul(a: unknown, b: unknown, opts: unknown): GemmPlan {
  const A = checkTensor(a, 'a');
  const B = checkTensor(b, 'b');
  const o = checkOptions<MatmulOptions>(opts);
  const transA = checkFlag(o.transA, 'options.transA');
  const transB = checkFlag(o.transB, 'options.transB');
  sameDevice(B, 'b', A.device, 'a');
  if (A.rank !== 2) fail('E_SHAPE', 'a', A, 'a 2-D tensor');
  if (B.rank !== 2) fail('E_SHAPE', 'b', B, 'a 2-D tensor');
  const input = productDType(A, 'a');
  sameDType(B, 'b', input, 'a');
  const [m, k] = transA ? [A.shape[1], A.shape[0]] : [A.shape[0], A.shape[1]];
  const [kb, n] = transB ? [B.shape[1], B.shape[0]] : [B.shape[0], B.shape[1]];
  if (kb !== k)
    fail('E_SHAPE', 'b', B, transB ? `a matrix [n, ${k}] (op(a) is [${m}, ${k}])` : `a matrix [${k}, n] (op(a) is [${m}, ${k}])`);
  nonEmpty(A, 'a', [m, k]);
  nonEmpty(B, 'b', [n]);
  const dtype = resultDType(input);
  const bias = checkBias(o.bias, 'options.bias', n, dtype, A.device, 'a');
  const shape = [m, n];
  const out = checkProductOut(o.out, shape, dtype, A.device, [[A, 'a'], [B, 'b'], [bias, 'options.bias']]);
  return { a: A, b: B, bias, m, n, k, transA, transB, activation: null, shape, dtype, out };
}

/**
 * The product of a validated plan: the native GEMM on the CPU (a Promise when async), else the device's. `packed`:
 * the weight b packed by a PackedWeight.
 */
function runGemm(g: GemmPlan, async: boolean, packed: { packed: Float32Array; packedIsa: number } | null = null): Tensor | Promise<Tensor> {
  if (g.a.device !== 'cpu') return deviceOp(g.a.device, 'gemm')(g);
  const t = cpuTarget(g, async);
  const bias = g.bias ? { bias: g.bias.storage('bias'), biasDtype: g.bias.dtypeCode } : {};
  const r = native.gemm({
    a: g.a.storage('a'), aDtype: g.a.dtypeCode, b: g.b.storage('b'), bDtype: g.b.dtypeCode, c: t.acc.storage('options.out'),
    cDtype: t.acc.dtypeCode, m: g.m, n: g.n, k: g.k, transA: g.transA, transB: g.transB, async, ...bias, ...packed,
    relu: g.activation === 'relu',
  });
  // ReLU runs in the native epilogue, on each tile as it is written (a second pass over a result that the pool's
  // threads wrote cost 0.4 ms per 256x1024 layer here after an async product); GELU is a pass afterwards.
  const after = g.activation === 'relu' ? null : g.activation;
  return r ? r.then(() => finishCpu(t, after)) : finishCpu(t, after);
}

/**
 * op(a)·op(b) (+ bias): a [m, k] (or [k, m] with transA), b [k, n] (or [n, k] with transB) → [m, n].
 * Both inputs share one float dtype, which the result keeps.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return runGemm(planMatmul(a, b, opts), false) as Tensor;
}

/** matmul() on the thread pool: the event loop stays free while it runs. */
export async function matmulAsync(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Promise<Tensor> {
  return runGemm(planMatmul(a, b, opts), true);
}

// ---- linear ------------------------------------------------------------------------------------------------------

/**
 * A Linear weight [out, in] on the CPU, packed once into the layout of the GEMM's kernels (the panels a product
 * otherwise packs on every call): linear(x, packed, bias) and linearAsync then skip that pass over the weight,
 * which at a service's batch sizes costs as much as the product. From 4 rows on every batch runs the same
 * kernels, so a row's result does not depend on the rows it is batched with (under 4, each weight row is streamed
 * against the rows as for a plain tensor: faster there). The packing is for the CPU's kernels when it
 * was made: after cpuIsa() selects others, or for a float16/bfloat16 x (a result that is not float32), the
 * product packs the weight as for a plain tensor. The weight itself stays the caller's (it is still read then,
 * and must stay alive); the copy is of the weight's values when packed: after changing the weight in place, pack
 * it again (else the paths above and the packed one disagree). dispose() drops the packed copy (as much memory as
 * a float32 copy of the weight), which native storage releases when it is collected.
 */
export class PackedWeight {
  readonly weight: Tensor;
  #packed: Float32Array | null;
  readonly #isa: number;

  constructor(weight: Tensor) {
    const w = checkTensor(weight, 'weight');
    if (w.device !== 'cpu') fail('E_DEVICE', 'weight', w, "a tensor on 'cpu' (the packed form is the CPU GEMM's)");
    if (w.rank !== 2) fail('E_SHAPE', 'weight', w, 'a 2-D weight [out, in]');
    if (!isFloat(w.dtype)) fail('E_DTYPE', 'weight', w, 'a float32, float16 or bfloat16 tensor');
    nonEmpty(w, 'weight', [...w.shape]);
    const [n, k] = w.shape;
    const { floats, isa } = native.gemmPackedSize(n, k);
    this.#packed = allocPinnedStorage('float32', floats) as Float32Array;
    native.gemmPackB({ b: w.storage('weight'), bDtype: w.dtypeCode, n, k, transB: true, out: this.#packed, isa });
    this.weight = w;
    this.#isa = isa;
  }

  get shape(): Shape { return this.weight.shape; }
  get disposed(): boolean { return this.#packed === null; }
  /** Bytes of the packed copy (0 once disposed). */
  get bytes(): number { return this.#packed?.byteLength ?? 0; }
  /** Drops the packed copy (released when collected); the weight is left alone. Using the PackedWeight afterwards is E_DISPOSED. */
  dispose(): void { this.#packed = null; }

  /** The packed form for the native GEMM (E_DISPOSED after dispose(), or when the weight was disposed). */
  forGemm(arg: string): { packed: Float32Array; packedIsa: number } {
    if (!this.#packed) throw new NmSparseError('E_DISPOSED', `${arg}: the PackedWeight was disposed`);
    checkTensor(this.weight, `${arg}.weight`);
    return { packed: this.#packed, packedIsa: this.#isa };
  }
}

function planLinear(x: unknown, w: unknown, bias: unknown, opts: unknown): GemmPlan {
  const X = checkTensor(x, 'x');
  const W = checkTensor(w, 'weight');
  const o = checkOptions<LinearOptions>(opts);
  const activation = checkActivation(o.activation);
  sameDevice(W, 'weight', X.device, 'x');
  if (W.rank !== 2) fail('E_SHAPE', 'weight', W, 'a 2-D weight [out, in]');
  const [outF, inF] = W.shape;
  if (X.rank < 1 || X.shape[X.rank - 1] !== inF) fail('E_SHAPE', 'x', X, `a tensor [..., ${inF}] (the weight is [${outF}, ${inF}])`);
  const input = productDType(X, 'x');
  sameDType(W, 'weight', input, 'x');
  const rows = inF === 0 ? 0 : X.size / inF;
  nonEmpty(X, 'x', [rows, inF]);
  nonEmpty(W, 'weight', [outF]);
  const dtype = resultDType(input);
  const b = checkBias(bias, 'bias', outF, dtype, X.device, 'x');
  const shape = [...X.shape.slice(0, -1), outF];
  const out = checkProductOut(o.out, shape, dtype, X.device, [[X, 'x'], [W, 'weight'], [b, 'bias']]);
  return { a: X, b: W, bias: b, m: rows, n: outF, k: inF, transA: false, transB: true, activation, shape, dtype, out };
}

/** The plan of linear(x, w, …) and, for a PackedWeight w, its packed form. */
function linearCall(x: unknown, w: unknown, bias: unknown, opts: unknown, async: boolean): Tensor | Promise<Tensor> {
  if (w instanceof PackedWeight) {
    const packed = w.forGemm('weight');
    return runGemm(planLinear(x, w.weight, bias, opts), async, packed);
  }
  return runGemm(planLinear(x, w, bias, opts), async);
}

/**
 * x·Wᵀ + bias, PyTorch's Linear: x [..., in], W [out, in] (a Tensor, or a PackedWeight of one), bias [out] →
 * [..., out], then options.activation.
 */
export function linear(x: Tensor, w: Tensor | PackedWeight, bias?: Tensor | null, opts: LinearOptions = {}): Tensor {
  return linearCall(x, w, bias, opts, false) as Tensor;
}

/** linear() on the thread pool: the event loop stays free while it runs. */
export async function linearAsync(x: Tensor, w: Tensor | PackedWeight, bias?: Tensor | null, opts: LinearOptions = {}): Promise<Tensor> {
  return linearCall(x, w, bias, opts, true);
}
