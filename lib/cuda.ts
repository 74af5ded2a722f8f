/**
 * The 'cuda' device backend (lib/device.ts): transfers, device memory, and one entry per op family, implemented by
 * the addon's CUDA side (native/cuda, bound in native/napi/cuda_*.cc). Importing this file registers the backend
 * and touches no GPU: the driver is probed the first time something asks (unavailableReason(), backendInfo(),
 * t.to('cuda')). In a build without CUDA the backend is registered all the same and reports why it is unavailable.
 *
 * Op names and arguments (the op files call deviceOp('cuda', name)(...) for tensors on 'cuda'; the arguments are
 * those of the public CPU functions, already validated by them, and every tensor argument is on 'cuda'):
 *   mask(w: Tensor, p: Pattern, opts: {out?})                      -> uint8 Tensor, w's shape
 *   prune(w: Tensor, p: Pattern, opts: {out?})                     -> Tensor of w's dtype (out may be w)
 *   check(w: Tensor, p: Pattern)                                   -> CheckResult (lib/mask.ts)
 *   transposableMask(w: Tensor, opts: {out?})                      -> uint8 Tensor
 *   sad(a: Tensor, b: Tensor)                                      -> SadResult
 *   compress(w: Tensor, p: Pattern)                                -> SparseTensor on 'cuda' (handle: CudaSparse)
 *   decompress(s: SparseTensor, opts: {out?})                      -> Tensor, s.shape and s.dtype
 *   sparseToCpu(s: SparseTensor)                                   -> the same SparseTensor on 'cpu' (its portable
 *                                                                     form downloaded: exact, no recompression)
 *   sparseFromCpu(s: SparseTensor)  (s on 'cpu')                   -> the same SparseTensor on 'cuda' (portable form
 *                                                                     uploaded, cuSPARSELt form built on the GPU)
 *   sparseLinear(x: Tensor, s: SparseTensor, bias?: Tensor, opts: {out?, activation?, outDtype?})
 *                                                                  -> [..., out] = x [..., in] · W̃ᵀ (+ bias)
 *   sparseMatmul(s: SparseTensor, b: Tensor, opts: {bias?, out?, activation?, outDtype?})
 *                                                                  -> [rows, p] = W̃ [rows, cols] · b [cols, p]
 *   matmul(a: Tensor, b: Tensor, opts: {transA?, transB?, out?, bias?, activation?})
 *                                                                  -> [m, n] = op(a) · op(b), cuBLASLt
 *   linear(x: Tensor, w: Tensor, bias?: Tensor, opts: {out?, activation?})
 *                                                                  -> [..., out] = x [..., in] · wᵀ (+ bias)
 * activation: 'relu' | 'gelu' (gelu = x·Φ(x), the erf form). Products keep the input dtype; int8 inputs give
 * float32 (int32 accumulation) unless opts.outDtype says otherwise; int8 biases are float32. uint8 GEMMs are
 * E_UNSUPPORTED on 'cuda'. float32 sparse products use TF32 tensor cores (cuSPARSELt's float32 kernels), and
 * need the weight's pattern to be 1:2 in pairs; other float32 weights run through cuBLASLt on the pruned weight.
 *
 * Training ops (lib/cuda-train.ts), with the arguments of lib/nn/elementwise.ts and lib/optim: biasAdd, biasGrad,
 * reluForward, reluBackward, geluForward, geluBackward, layerNormForward, layerNormBackward, softmaxCrossEntropy,
 * softmaxCrossEntropyBackward, im2col, col2im, maxPoolForward, maxPoolBackward, dropout, maskedScale, maskedAdd,
 * nmMaskScale, sgdStep, adamwStep, sumSquares, scaleInplace.
 *
 * Tuning and inspection (exported below): planInfo(), clearPlans(), memStats(), synchronize(). Environment:
 * NMSPARSE_CUDA_DISPATCH=auto|sparse|dense, NMSPARSE_CUSPARSELT_SEARCH=1|0, NMSPARSE_CUDA_VERIFY=1|0,
 * NMSPARSE_CUDA_LIBS=<dir>, NMSPARSE_CUDA_DEVICE=<index>.
 */
import { native, convertNativeError } from './native.js';
import { NmSparseError, fail } from './errors.js';
import { registerBackend, type DeviceBackend, type DeviceStorage } from './device.js';
import { allocStorage, dtypeCode, DTYPES, type DType } from './dtype.js';
import { Tensor, checkOut, checkTensor, numel, type Shape } from './tensor.js';
import { SparseTensor, checkSparse } from './compress.js';
import type { Pattern } from './pattern.js';
import type { CheckResult, SadResult } from './mask.js';
import { trainOps } from './cuda-train.js';

/** What the addon's probe found (native cudaInfo()). */
export interface CudaProbe {
  usable: boolean;
  reason: string | null;
  runtimeVersion: string;
  driverVersion: string | null;
  deviceCount: number;
  device?: { index: number; name: string; sm: string; smCount: number; memoryBytes: number; driver: string | null; memoryPools: boolean };
  cusparselt: { loaded: boolean; path?: string; version?: string; error?: string; note?: string };
  cublaslt: { loaded: boolean; path?: string; version?: string; error?: string; note?: string };
  /** Usable without cuSPARSELt: why sparse products run dense. */
  sparseReason?: string;
}

/** One entry of the sparse plan cache: which path a shape runs on and why. */
export interface PlanInfo {
  key: string;
  path: 'sparse' | 'dense';
  reason?: string;
  algId: number;
  maxAlgId: number;
  splitK: number;
  splitKMode: number;
  searched: boolean;
  verified: boolean;
  sparseMs: number | null;
  denseMs: number | null;
  workspaceBytes: number;
}

export type Activation = 'relu' | 'gelu';

export const NOT_BUILT = 'this build of nmsparse has no CUDA backend (nvcc was not found when it was built)';

/** True when this build of the addon contains the CUDA backend. */
export const cudaBuilt: boolean = typeof native.cudaInfo === 'function';

let probe: CudaProbe | null = null;
/** The driver / device / library probe (runs once; needs no GPU). null in a build without CUDA. */
export function cudaProbe(): CudaProbe | null {
  if (!cudaBuilt) return null;
  if (!probe) probe = native.cudaInfo() as CudaProbe;
  return probe;
}

// ---- helpers ------------------------------------------------------------------------------------------------------

/** Calls a method of a native handle (classes are not wrapped by lib/native.ts) with errors made NmSparseError. */
function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw convertNativeError(e);
  }
}

const storageOf = (t: Tensor, arg: string): DeviceStorage => t.deviceStorage(arg);

function onCuda(t: Tensor, arg: string): Tensor {
  if (t.device !== 'cuda') fail('E_DEVICE', arg, t, "a tensor on 'cuda' (move it with .to('cuda'))");
  return t;
}

function wrap(shape: Shape, dtype: DType, buf: DeviceStorage): Tensor {
  return new Tensor(shape, dtype, buf, 'cuda');
}

/** The tensor to write into: `out` (validated) or null to let the native op allocate. */
function outBuffer(out: unknown, shape: Shape, dtype: DType): { tensor: Tensor | undefined; buf: DeviceStorage | null } {
  const t = checkOut(out, shape, dtype, 'cuda');
  return { tensor: t, buf: t ? t.deviceStorage('options.out') : null };
}

/** Products cannot write over their own inputs (the first call of a shape runs the product more than once). */
function notAliased(out: Tensor | undefined, inputs: Array<Tensor | null | undefined>): void {
  if (!out) return;
  const o = out.deviceStorage('options.out');
  for (const t of inputs)
    if (t && t.deviceStorage() === o) fail('E_VALUE', 'options.out', out, 'a tensor that is not one of the inputs of the product');
}

function result(out: Tensor | undefined, shape: Shape, dtype: DType, buf: DeviceStorage): Tensor {
  return out ?? wrap(shape, dtype, buf);
}

function activationCode(a: unknown): number {
  if (a === undefined || a === null) return 0;
  if (a === 'relu') return 1;
  if (a === 'gelu') return 2;
  fail('E_VALUE', 'options.activation', a, "'relu', 'gelu' or undefined");
}

function sparseHandle(s: SparseTensor, arg: string): DeviceStorage {
  if (s.device !== 'cuda') fail('E_DEVICE', arg, s, "a SparseTensor on 'cuda'");
  return s.handle;
}

const productDtype = (d: DType): DType => (d === 'int8' ? 'float32' : d);

function checkOutDtype(v: unknown, input: DType): DType {
  if (v === undefined) return productDtype(input);
  if (typeof v !== 'string' || !(DTYPES as readonly string[]).includes(v)) fail('E_DTYPE', 'options.outDtype', v, 'a dtype name');
  const d = v as DType;
  if (input !== 'int8' && d !== input) fail('E_DTYPE', 'options.outDtype', v, `'${input}' (products of ${input} tensors are ${input})`);
  return d;
}

function checkBias(bias: unknown, len: number, dtype: DType, arg = 'bias'): Tensor | null {
  if (bias === undefined || bias === null) return null;
  const b = onCuda(checkTensor(bias, arg), arg);
  const want = dtype === 'int8' ? 'float32' : dtype;
  if (b.dtype !== want) fail('E_DTYPE', arg, b, `a ${want} tensor`);
  if (b.size !== len) fail('E_SHAPE', arg, b, `a bias of ${len} elements`);
  return b;
}

// ---- ops --------------------------------------------------------------------------------------------------------

function nmRowsCols(w: Tensor): [number, number] {
  const cols = w.shape[w.rank - 1];
  return [w.size / cols, cols];
}

function mask(w: Tensor, p: Pattern, opts: { out?: Tensor } = {}): Tensor {
  const [rows, cols] = nmRowsCols(w);
  const o = outBuffer(opts.out, w.shape, 'uint8');
  const buf = native.cudaNmMask(storageOf(w, 'w'), w.dtypeCode, rows, cols, p.n, p.m, o.buf);
  return result(o.tensor, w.shape, 'uint8', buf);
}

function prune(w: Tensor, p: Pattern, opts: { out?: Tensor } = {}): Tensor {
  const [rows, cols] = nmRowsCols(w);
  const o = outBuffer(opts.out, w.shape, w.dtype);
  const buf = native.cudaNmPrune(storageOf(w, 'w'), w.dtypeCode, rows, cols, p.n, p.m, o.buf);
  return result(o.tensor, w.shape, w.dtype, buf);
}

function check(w: Tensor, p: Pattern): CheckResult {
  const [rows, cols] = nmRowsCols(w);
  const r = native.cudaNmCheck(storageOf(w, 'w'), w.dtypeCode, rows, cols, p.n, p.m);
  if (r === -1) return { ok: true };
  const [group, nonzeros] = r as [number, number];
  let flat = group * p.m;
  const index = new Array<number>(w.rank);
  for (let d = w.rank - 1; d >= 0; d--) {
    index[d] = flat % w.shape[d];
    flat = Math.floor(flat / w.shape[d]);
  }
  return { ok: false, firstViolation: { index, group, nonzeros } };
}

function transposableMask(w: Tensor, opts: { out?: Tensor } = {}): Tensor {
  const o = outBuffer(opts.out, w.shape, 'uint8');
  const buf = native.cudaTransposableMask(storageOf(w, 'w'), w.dtypeCode, w.shape[0], w.shape[1], o.buf);
  return result(o.tensor, w.shape, 'uint8', buf);
}

function sad(a: Tensor, b: Tensor): SadResult {
  onCuda(b, 'b');
  const changed = native.cudaMaskSad(storageOf(a, 'a'), storageOf(b, 'b'), a.size) as number;
  return { changed, fraction: changed / a.size, total: a.size };
}

function compress(w: Tensor, p: Pattern): SparseTensor {
  const [rows, cols] = nmRowsCols(w);
  const handle = native.cudaNmCompress(storageOf(w, 'w'), w.dtypeCode, rows, cols, p.n, p.m) as DeviceStorage;
  return new SparseTensor(w.shape, p, w.dtype, { device: 'cuda', handle });
}

function decompress(s: SparseTensor, opts: { out?: Tensor } = {}): Tensor {
  const o = outBuffer(opts.out, s.shape, s.dtype);
  const buf = native.cudaNmDecompress(sparseHandle(s, 'sparse tensor'), o.buf);
  return result(o.tensor, s.shape, s.dtype, buf);
}

function sparseToCpu(s: SparseTensor): SparseTensor {
  const cols = s.shape[s.shape.length - 1], rows = numel(s.shape) / cols;
  const kept = (cols / s.m) * s.n;
  const values = new Tensor([...s.shape.slice(0, -1), kept], s.dtype, allocStorage(s.dtype, rows * kept));
  const positions = new Uint8Array(native.nmPositionBytes(rows, cols, s.n, s.m) as number);
  native.cudaNmDownloadPortable(sparseHandle(s, 'sparse tensor'), values.storage(), positions);
  return new SparseTensor(s.shape, { n: s.n, m: s.m }, s.dtype, { values, positions });
}

function sparseFromCpu(s: SparseTensor): SparseTensor {
  if (s.device !== 'cpu') fail('E_DEVICE', 'sparse tensor', s, "a SparseTensor on 'cpu'");
  const cols = s.shape[s.shape.length - 1], rows = numel(s.shape) / cols;
  const handle = native.cudaNmFromPortable(s.values.storage(), s.positions, dtypeCode(s.dtype), rows, cols, s.n, s.m) as DeviceStorage;
  return new SparseTensor(s.shape, { n: s.n, m: s.m }, s.dtype, { device: 'cuda', handle });
}

interface ProductOptions {
  out?: Tensor;
  activation?: Activation;
  outDtype?: DType;
}

function sparseLinear(x: Tensor, s: SparseTensor, bias?: Tensor | null, opts: ProductOptions = {}): Tensor {
  checkSparse(s, 'weight');
  onCuda(checkTensor(x, 'x'), 'x');
  if (s.shape.length !== 2) fail('E_SHAPE', 'weight', s, 'a 2-D sparse weight [out, in]');
  const [outF, inF] = s.shape;
  if (x.rank < 1 || x.shape[x.rank - 1] !== inF) fail('E_SHAPE', 'x', x, `a tensor [..., ${inF}] (the weight is [${outF}, ${inF}])`);
  if (x.dtype !== s.dtype) fail('E_DTYPE', 'x', x, `a ${s.dtype} tensor like the weight`);
  const rows = x.size / inF;
  if (rows === 0) fail('E_SHAPE', 'x', x, 'a non-empty tensor');
  const outDtype = checkOutDtype(opts.outDtype, s.dtype);
  const b = checkBias(bias, outF, s.dtype);
  const shape = [...x.shape.slice(0, -1), outF];
  const o = outBuffer(opts.out, shape, outDtype);
  notAliased(o.tensor, [x, b]);
  const buf = native.cudaSparseLinear(storageOf(x, 'x'), rows, sparseHandle(s, 'weight'), b ? storageOf(b, 'bias') : null,
    activationCode(opts.activation), dtypeCode(outDtype), o.buf);
  return result(o.tensor, shape, outDtype, buf);
}

function sparseMatmul(s: SparseTensor, b: Tensor, opts: ProductOptions & { bias?: Tensor | null } = {}): Tensor {
  checkSparse(s, 'sparse tensor');
  onCuda(checkTensor(b, 'b'), 'b');
  const cols = s.shape[s.shape.length - 1], rows = numel(s.shape) / cols;
  if (b.rank !== 2 || b.shape[0] !== cols) fail('E_SHAPE', 'b', b, `a matrix [${cols}, p]`);
  if (b.dtype !== s.dtype) fail('E_DTYPE', 'b', b, `a ${s.dtype} tensor like the sparse tensor`);
  const p = b.shape[1];
  if (p === 0) fail('E_SHAPE', 'b', b, 'a non-empty matrix');
  const outDtype = checkOutDtype(opts.outDtype, s.dtype);
  const bias = checkBias(opts.bias, rows, s.dtype, 'options.bias');
  const shape = [rows, p];
  const o = outBuffer(opts.out, shape, outDtype);
  notAliased(o.tensor, [b, bias]);
  const buf = native.cudaSparseMatmul(sparseHandle(s, 'sparse tensor'), storageOf(b, 'b'), p, bias ? storageOf(bias, 'options.bias') : null,
    activationCode(opts.activation), dtypeCode(outDtype), o.buf);
  return result(o.tensor, shape, outDtype, buf);
}

function matmul(a: Tensor, b: Tensor, opts: ProductOptions & { transA?: boolean; transB?: boolean; bias?: Tensor | null; tf32?: boolean } = {}): Tensor {
  onCuda(checkTensor(a, 'a'), 'a');
  onCuda(checkTensor(b, 'b'), 'b');
  if (a.rank !== 2) fail('E_SHAPE', 'a', a, 'a 2-D tensor');
  if (b.rank !== 2) fail('E_SHAPE', 'b', b, 'a 2-D tensor');
  if (a.dtype !== b.dtype) fail('E_DTYPE', 'b', b, `a ${a.dtype} tensor like a`);
  const ta = !!opts.transA, tb = !!opts.transB;
  const m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const kb = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  if (kb !== k) fail('E_SHAPE', 'b', b, `a matrix whose ${tb ? 'second' : 'first'} dimension is ${k} (op(a) is [${m}, ${k}])`);
  const outDtype = checkOutDtype(opts.outDtype, a.dtype);
  const bias = checkBias(opts.bias, n, a.dtype, 'options.bias');
  const shape = [m, n];
  const o = outBuffer(opts.out, shape, outDtype);
  notAliased(o.tensor, [a, b, bias]);
  const buf = native.cudaMatmul(storageOf(a, 'a'), storageOf(b, 'b'), a.dtypeCode, m, n, k, ta, tb,
    bias ? storageOf(bias, 'options.bias') : null, false, activationCode(opts.activation), dtypeCode(outDtype), !!opts.tf32, o.buf);
  return result(o.tensor, shape, outDtype, buf);
}

function linear(x: Tensor, w: Tensor, bias?: Tensor | null, opts: ProductOptions = {}): Tensor {
  onCuda(checkTensor(x, 'x'), 'x');
  onCuda(checkTensor(w, 'weight'), 'weight');
  if (w.rank !== 2) fail('E_SHAPE', 'weight', w, 'a 2-D weight [out, in]');
  const [outF, inF] = w.shape;
  if (x.rank < 1 || x.shape[x.rank - 1] !== inF) fail('E_SHAPE', 'x', x, `a tensor [..., ${inF}] (the weight is [${outF}, ${inF}])`);
  if (x.dtype !== w.dtype) fail('E_DTYPE', 'weight', w, `a ${x.dtype} tensor like x`);
  const rows = x.size / inF;
  const outDtype = checkOutDtype(opts.outDtype, x.dtype);
  const b = checkBias(bias, outF, x.dtype);
  const shape = [...x.shape.slice(0, -1), outF];
  const o = outBuffer(opts.out, shape, outDtype);
  notAliased(o.tensor, [x, w, b]);
  const buf = native.cudaMatmul(storageOf(x, 'x'), storageOf(w, 'weight'), x.dtypeCode, rows, outF, inF, false, true,
    b ? storageOf(b, 'bias') : null, false, activationCode(opts.activation), dtypeCode(outDtype), false, o.buf);
  return result(o.tensor, shape, outDtype, buf);
}

// ---- the backend ------------------------------------------------------------------------------------------------

export const cudaBackend: DeviceBackend = {
  name: 'cuda',
  unavailableReason(): string | null {
    const p = cudaProbe();
    if (!p) return NOT_BUILT;
    return p.usable ? null : (p.reason ?? 'unknown reason');
  },
  upload(src: ArrayBufferView, _dtypeCode: number): DeviceStorage {
    return native.cudaUpload(src) as DeviceStorage;
  },
  download(storage: DeviceStorage, dst: ArrayBufferView): void {
    native.cudaDownload(storage, dst);
  },
  downloadAsync(storage: DeviceStorage, dst: ArrayBufferView): Promise<void> {
    return native.cudaDownloadAsync(storage, dst) as Promise<void>;
  },
  alloc(bytes: number): DeviceStorage {
    return native.cudaAlloc(bytes) as DeviceStorage;
  },
  ops: { mask, prune, check, transposableMask, sad, compress, decompress, sparseToCpu, sparseFromCpu, sparseLinear, sparseMatmul, matmul, linear, ...trainOps },
};

// Registered in every build: in one without CUDA, unavailableReason() says so, and no op is ever reached.
registerBackend(cudaBackend);

// ---- inspection and tuning --------------------------------------------------------------------------------------

function requireCuda(what: string): void {
  const why = cudaBackend.unavailableReason();
  if (why) throw new NmSparseError('E_DEVICE', `${what}: 'cuda' is not available: ${why}`);
}

/** The sparse plan cache: for each (kind, dtype, shape, epilogue) key, the path taken and why. */
export function planInfo(): PlanInfo[] {
  if (!cudaBuilt) return [];
  return native.cudaPlanInfo() as PlanInfo[];
}

/** Forgets every cached plan and dispatch decision (the next call of each shape searches and measures again). */
export function clearPlans(): void {
  if (cudaBuilt) native.cudaClearPlans();
}

/** Device memory held by nmsparse (liveBytes/liveBuffers) and by the device (cudaMemGetInfo). */
export function memStats(opts: { trim?: boolean } = {}): {
  liveBytes: number; liveBuffers: number; freeBytes: number; totalBytes: number; poolReserved: number; poolUsed: number;
} {
  requireCuda('memStats');
  return native.cudaMemStats(opts.trim ?? true);
}

/** Waits for all GPU work enqueued so far (off the main thread with { async: true }). */
export function synchronize(): void {
  requireCuda('synchronize');
  native.cudaSynchronize();
}
export function synchronizeAsync(): Promise<void> {
  requireCuda('synchronize');
  return native.cudaSynchronizeAsync() as Promise<void>;
}

/** The native facts of a cuda SparseTensor: whether it has a cuSPARSELt form, its padded shape, or why not. */
export function sparseInfo(s: SparseTensor): Record<string, unknown> {
  checkSparse(s, 'sparse tensor');
  const h = sparseHandle(s, 'sparse tensor') as unknown as { info(): Record<string, unknown> };
  return call(() => h.info());
}

/** bench/gpu: the plan nm.linear uses for x·W̃ᵀ, driven by a native loop of cusparseLtMatmul calls. */
export function benchNativeLoop(s: SparseTensor, x: Tensor, iters: number): { path: string; iters: number; msPerCallGpu: number; usPerCallHost: number } {
  const inF = s.shape[s.shape.length - 1];
  return native.cudaBenchNativeLoop(sparseHandle(s, 'weight'), storageOf(x, 'x'), x.size / inF, null, iters);
}

export interface GemmBenchOptions { dtype: DType | 'e4m3'; m: number; n: number; k: number; warmup?: number; iters?: number; search?: boolean }
export interface GemmBenchResult {
  sparseMs: number | null; denseMs: number | null; sparseError?: string; denseError?: string; algId: number; splitK: number;
  maxRelErr: number | null; pruneMs: number | null; compressMs: number | null; copyMs: number | null; weightBytes: number;
  /** The fastest of the cuBLASLt heuristics timed (0 = its first answer), and how many were timed. */
  denseHeuristic: number; denseHeuristics: number;
  /** Calls between each pair of CUDA events, and the interleaved sparse/dense rounds each median is over. */
  batch: number; rounds: number;
}
/** bench/gpu: cuSPARSELt vs cuBLASLt on synthetic data in the Linear layout (Y[n, m] = X[n, k]·W[m, k]ᵀ). */
export function benchGemm(opts: GemmBenchOptions): GemmBenchResult {
  requireCuda('benchGemm');
  return native.cudaBenchGemm(opts) as GemmBenchResult;
}
