/**
 * The 'cuda' device backend (lib/device.ts): transfers, device memory, and one entry per op family, implemented by
 * the addon's CUDA side (native/cuda, bound in native/napi/cuda_*.cc). Importing this file registers the backend
 * and touches no GPU: the driver is probed the first time something asks (unavailableReason(), backendInfo(),
 * t.to('cuda')). In a build without CUDA the backend is registered all the same and reports why it is unavailable.
 *
 * The op entries implement DeviceOps (lib/device.ts); the op files call them for tensors on 'cuda' with arguments
 * they have validated (the products: one GemmPlan / SpmmPlan, checked by lib/gemm.ts and lib/spmm.ts by the rules
 * of every device), so these are thin calls. int8 products accumulate in int32 and give float32 (their bias is
 * float32). float32 sparse products use TF32 tensor cores (cuSPARSELt's float32 kernels), and need the weight's
 * pattern to be 1:2 in pairs; other float32 weights run through cuBLASLt on the pruned weight.
 *
 * Tuning and inspection (exported below): planInfo(), clearPlans(), memStats(), synchronize(). The environment
 * variables that steer it are listed in docs/design.md §11.
 */
import { native, convertNativeError, type CudaSparse } from './native.js';
import { NmSparseError, fail } from './errors.js';
import { registerBackend, type DeviceBackend, type DeviceOps, type DeviceStorage, type GemmPlan, type SpmmPlan } from './device.js';
import { ACTIVATIONS } from './gemm.js';
import { allocStorage, dtypeCode, type DType } from './dtype.js';
import { Tensor, checkOut, numel, type Shape } from './tensor.js';
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

export const NOT_BUILT = 'this build of nmsparse has no CUDA backend (nvcc was not found when it was built)';

/** True when this build of the addon contains the CUDA backend. */
export const cudaBuilt: boolean = typeof native.cudaInfo === 'function';

let probe: CudaProbe | null = null;
/** The driver / device / library probe (runs once; needs no GPU). null in a build without CUDA. */
export function cudaProbe(): CudaProbe | null {
  if (!cudaBuilt) return null;
  if (!probe) probe = native.cudaInfo();
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

function result(out: Tensor | undefined, shape: Shape, dtype: DType, buf: DeviceStorage): Tensor {
  return out ?? wrap(shape, dtype, buf);
}

function sparseHandle(s: SparseTensor, arg: string): CudaSparse {
  if (s.device !== 'cuda') fail('E_DEVICE', arg, s, "a SparseTensor on 'cuda'");
  return s.handle as CudaSparse;
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
  const [group, nonzeros] = r;
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
  const changed = native.cudaMaskSad(storageOf(a, 'a'), storageOf(b, 'b'), a.size);
  return { changed, fraction: changed / a.size, total: a.size };
}

function compress(w: Tensor, p: Pattern): SparseTensor {
  const [rows, cols] = nmRowsCols(w);
  const handle = native.cudaNmCompress(storageOf(w, 'w'), w.dtypeCode, rows, cols, p.n, p.m);
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
  const positions = new Uint8Array(native.nmPositionBytes(rows, cols, s.n, s.m));
  native.cudaNmDownloadPortable(sparseHandle(s, 'sparse tensor'), values.storage(), positions);
  return new SparseTensor(s.shape, { n: s.n, m: s.m }, s.dtype, { values, positions });
}

function sparseFromCpu(s: SparseTensor): SparseTensor {
  if (s.device !== 'cpu') fail('E_DEVICE', 'sparse tensor', s, "a SparseTensor on 'cpu'");
  const cols = s.shape[s.shape.length - 1], rows = numel(s.shape) / cols;
  const handle = native.cudaNmFromPortable({ values: s.values.storage(), positions: s.positions, dtype: dtypeCode(s.dtype), rows, cols, n: s.n, m: s.m });
  return new SparseTensor(s.shape, { n: s.n, m: s.m }, s.dtype, { device: 'cuda', handle });
}

/** The epilogue and output of a validated product plan, as cuda_gemm.cc reads them. */
function epilogue(p: GemmPlan | SpmmPlan): { bias: DeviceStorage | null; activation: number; outDtype: number; out: DeviceStorage | null } {
  return {
    bias: p.bias ? storageOf(p.bias, 'bias') : null, activation: p.activation ? ACTIVATIONS.indexOf(p.activation) : 0,
    outDtype: dtypeCode(p.dtype), out: p.out ? storageOf(p.out, 'options.out') : null,
  };
}

function gemm(g: GemmPlan): Tensor {
  const buf = native.cudaMatmul({
    a: storageOf(g.a, 'a'), b: storageOf(g.b, 'b'), dtype: g.a.dtypeCode, m: g.m, n: g.n, k: g.k, transA: g.transA, transB: g.transB,
    ...epilogue(g),
  });
  return result(g.out, g.shape, g.dtype, buf);
}

function spmm(c: SpmmPlan): Tensor {
  const sparse = sparseHandle(c.s, 'weight');
  const buf = c.linear
    ? native.cudaSparseLinear({ x: storageOf(c.b, 'x'), p: c.p, sparse, ...epilogue(c) })
    : native.cudaSparseMatmul({ sparse, b: storageOf(c.b, 'b'), p: c.p, ...epilogue(c) });
  return result(c.out, c.shape, c.dtype, buf);
}

// ---- the backend ------------------------------------------------------------------------------------------------

/** The cuda backend; its ops are all of DeviceOps (bench/gpu calls them directly). */
export const cudaBackend = {
  name: 'cuda',
  unavailableReason(): string | null {
    const p = cudaProbe();
    if (!p) return NOT_BUILT;
    return p.usable ? null : (p.reason ?? 'unknown reason');
  },
  upload(src: ArrayBufferView, _dtypeCode: number): DeviceStorage {
    return native.cudaUpload(src);
  },
  download(storage: DeviceStorage, dst: ArrayBufferView): void {
    native.cudaDownload(storage, dst);
  },
  downloadAsync(storage: DeviceStorage, dst: ArrayBufferView): Promise<void> {
    return native.cudaDownloadAsync(storage, dst);
  },
  alloc(bytes: number): DeviceStorage {
    return native.cudaAlloc(bytes);
  },
  copy(src: DeviceStorage): DeviceStorage {
    const dst = native.cudaAlloc(src.bytes);
    native.cudaCopy(src, dst, src.bytes);
    return dst;
  },
  ops: {
    mask, prune, check, transposableMask, sad, compress, decompress, sparseToCpu, sparseFromCpu, gemm, spmm, ...trainOps,
  } satisfies DeviceOps,
} satisfies DeviceBackend;

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
  return native.cudaPlanInfo();
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

/** Waits for all GPU work enqueued so far. */
export function synchronize(): void {
  requireCuda('synchronize');
  native.cudaSynchronize();
}

/** The native facts of a cuda SparseTensor: whether it has a cuSPARSELt form, its padded shape, or why not. */
export function sparseInfo(s: SparseTensor): Record<string, unknown> {
  checkSparse(s, 'sparse tensor');
  const h = sparseHandle(s, 'sparse tensor');
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
  return native.cudaBenchGemm(opts);
}
