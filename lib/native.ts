/**
 * Loads the native addon (node-gyp-build: a local build in build/Release wins, then prebuilds/) and wraps every
 * function so that native errors, which carry a `code`, surface as NmSparseError. Importing this touches no GPU.
 * NMSPARSE_ADDON=/path/to/nmsparse.node loads that file instead (to test a build from another directory).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NmSparseError, type ErrorCode } from './errors.js';
import type { DeviceStorage } from './device.js';
import type { CudaProbe, GemmBenchOptions, GemmBenchResult, PlanInfo } from './cuda.js';

const require = createRequire(import.meta.url);

/** The package root: the nearest directory above this file that holds package.json. */
export const packageRoot: string = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('nmsparse: package.json not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
})();

function resolveAddon(): string {
  if (process.env.NMSPARSE_ADDON) return path.resolve(process.env.NMSPARSE_ADDON);
  return require('node-gyp-build').path(packageRoot) as string;
}

/** Path of the loaded .node file. */
export const addonPath: string = resolveAddon();

type NativeFn = (...args: never[]) => unknown;

function convert(e: unknown): unknown {
  const err = e as { code?: unknown; message?: string };
  if (err && typeof err.code === 'string' && err.code.startsWith('E_') && !(e instanceof NmSparseError))
    return new NmSparseError(err.code as ErrorCode, err.message ?? String(e), { cause: e });
  return e;
}

function wrap(fn: NativeFn): NativeFn {
  return (...args) => {
    let r;
    try {
      r = fn(...args);
    } catch (e) {
      throw convert(e);
    }
    return r instanceof Promise ? r.catch((e) => Promise.reject(convert(e))) : r;
  };
}

const raw = require(addonPath) as Record<string, unknown>;
const wrapped: Record<string, unknown> = {};
for (const [k, v] of Object.entries(raw)) wrapped[k] = typeof v === 'function' && !/^[A-Z]/.test(k) ? wrap(v as NativeFn) : v;

/**
 * The addon's functions, typed by {@link Addon}. The CUDA half exists only in a CUDA build (buildInfo().cuda):
 * lib/cuda.ts calls it only then. Classes (capitalised names) are not wrapped.
 */
export const native = wrapped as unknown as Addon;
export { convert as convertNativeError };

// ---- the addon's contract ----------------------------------------------------------------------------------------
// Each entry mirrors the reader calls of its native/napi/*.cc binding, in order (buffer_arg: a host buffer; int_arg:
// an integer; dtype_arg: a dtype code, lib/dtype.ts; CudaBuffer::Arg: device memory). The long calls take one
// options object instead, read by name (napi/args.h Options: a wrong type, a missing or an unknown key is an
// error naming options.<key>). test/native.test.ts checks that the loaded addon exports exactly these names.

/** Host memory: the bindings read the bytes of any TypedArray or ArrayBuffer (a uint8 mask is a Tensor's Storage). */
type Host = ArrayBufferView | ArrayBuffer;
/** A dtype code: the index of the dtype in lib/dtype.ts DTYPES (native/core/dtype.h). */
type DTypeCode = number;
/** An activation code: the index in lib/gemm.ts ACTIVATIONS (native/core/activation.h). */
type ActCode = number;
/** Device memory (native CudaBuffer). */
type CudaBuffer = DeviceStorage;
/** The device form of a SparseTensor (native CudaSparse). */
export interface CudaSparse extends DeviceStorage {
  info(): Record<string, unknown>;
}
/** -1 when every group has at most N non-zeros, else [index of the first group that has more, its non-zeros]. */
type CheckCode = -1 | [group: number, nonzeros: number];

/** An optional bias, given with its dtype code (the binding reads biasDtype only with a bias). */
type BiasOf<B> = { bias: B; biasDtype: DTypeCode } | { bias?: null; biasDtype?: never };

/**
 * gemm.cc: C[m, n] = op(A)·op(B) (+ bias[n]), then max(0, ·) when relu, float32 math; a Promise when async. packed: op(B) from gemmPackB for
 * ISA code packedIsa (required with packed), used instead of packing b while that ISA is the active one.
 */
export type NativeGemmOptions = {
  a: Host; aDtype: DTypeCode; b: Host; bDtype: DTypeCode; c: Host; cDtype: DTypeCode; m: number; n: number; k: number;
  transA: boolean; transB: boolean; async: boolean; relu?: boolean;
} & BiasOf<Host> & { packed?: Float32Array; packedIsa?: number };

/** gemm.cc gemmPackB: op(B) [k, n] packed into out (gemmPackedSize(n, k).floats) for the active ISA, code `isa`. */
export type NativeGemmPackOptions = { b: Host; bDtype: DTypeCode; n: number; k: number; transB: boolean; out: Float32Array; isa: number };

/**
 * mlp.cc mlpPlan: float32 Linear layers W [n, k], each k the previous n: dense (packed: W from gemmPackB for ISA
 * packedIsa) or N:M sparse (values, positions, nmN:nmM as spmm reads them; packed: W̃ from spmmPack).
 */
export type NativeMlpPlanOptions = { layers: (NativeMlpWeight & { bias: Float32Array | null; n: number; k: number; relu: boolean })[] };
export type NativeMlpWeight =
  | { w: Float32Array | Host; packed?: Float32Array; packedIsa?: number }
  | { values: Host; positions: Uint8Array; nmN: number; nmM: number; packed?: Float32Array };

/** spmm.cc: Y[rows, p] = W̃·op(B) (+ bias[rows]), W̃ in the portable form; out holds Y, or Yᵀ when transOut. */
export type NativeSpmmOptions = {
  values: Host; positions: Uint8Array; wDtype: DTypeCode; rows: number; cols: number; n: number; m: number; b: Host;
  bDtype: DTypeCode; p: number; out: Host; outDtype: DTypeCode; transB: boolean; transOut: boolean; async: boolean;
  /** W̃ as spmmPack wrote it: read instead of values/positions by the small batches that can. */
  packed?: Float32Array;
} & BiasOf<Host>;

/** spmm.cc spmmPack: a float32 N:4 W̃ into out (spmmPackedSize(rows, cols, n, m) floats), the row-interleaved copy spmm's small batches read. */
export type NativeSpmmPackOptions = { values: Host; positions: Uint8Array; rows: number; cols: number; n: number; m: number; out: Float32Array };

/** spmm.cc spmmT: out = W̃ᵀ·op(B) (or its transpose), W̃ a float32 [rows, cols] in the portable compressed form. */
export interface NativeSpmmTOptions {
  values: Host; positions: Uint8Array; rows: number; cols: number; n: number; m: number; b: Host; bDtype: DTypeCode; p: number;
  out: Host; outDtype: DTypeCode; transB: boolean; transOut: boolean;
}

/** The epilogue and output of the CUDA products (cuda_gemm.cc); out: null allocates. Int8 products' bias is float32. */
interface CudaEpilogue {
  bias?: CudaBuffer | null; activation?: ActCode; outDtype: DTypeCode; out?: CudaBuffer | null;
}
/** cudaSparseLinear: Y [p, rows] = x [p, cols] · W̃ᵀ (+ bias[rows]). */
export interface NativeCudaSparseLinearOptions extends CudaEpilogue { x: CudaBuffer; p: number; sparse: CudaSparse }
/** cudaSparseMatmul: Y [rows, p] = W̃ · b [cols, p] (+ bias[rows]). */
export interface NativeCudaSparseMatmulOptions extends CudaEpilogue { sparse: CudaSparse; b: CudaBuffer; p: number }
/** cudaMatmul: C [m, n] = op(A) · op(B) (+ bias[n]) through cuBLASLt. */
export interface NativeCudaMatmulOptions extends CudaEpilogue {
  a: CudaBuffer; b: CudaBuffer; dtype: DTypeCode; m: number; n: number; k: number; transA: boolean; transB: boolean;
}

/** An NHWC window as the bindings read it (train_args.h window_option): input [batch, h, w, c], kernel kh×kw. */
export interface NativeWindow {
  batch: number; h: number; w: number; c: number; kh: number; kw: number; strideH: number; strideW: number; padH: number; padW: number;
}
/** layerNormForward: y = (x − mean)·rstd (·gamma) (+ beta) per row of x [rows, cols]; mean, rstd [rows] saved for the backward. */
export interface NativeLayerNormForwardOptions<B> {
  x: B; gamma?: B | null; beta?: B | null; y: B; mean: B; rstd: B; rows: number; cols: number; eps: number;
}
/** layerNormBackward: dx [rows, cols], and dgamma / dbeta [cols] when given (the layer has them). */
export interface NativeLayerNormBackwardOptions<B> {
  dy: B; x: B; gamma?: B | null; mean: B; rstd: B; dx: B; dgamma?: B | null; dbeta?: B | null; rows: number; cols: number;
}
/** im2col: cols [batch·oh·ow, kh·kw·c] = the patches of x [batch, h, w, c]. */
export interface NativeIm2colOptions<B> extends NativeWindow { x: B; cols: B }
/** col2im: dx [batch, h, w, c] = the patch rows of cols summed back (im2col's adjoint). */
export interface NativeCol2imOptions<B> extends NativeWindow { cols: B; dx: B }
/** maxPoolForward: y [batch, oh, ow, c] and argmax, each maximum's flat index into x (a host Int32Array on every device). */
export interface NativeMaxPoolForwardOptions<B> extends NativeWindow { x: B; y: B; argmax: Int32Array }
/** maxPoolBackward: dx [batch, h, w, c] = dy scattered to argmax. */
export interface NativeMaxPoolBackwardOptions<B> extends NativeWindow { dy: B; argmax: Int32Array; dx: B }
/** nmMaskScale: mask = the N:M mask of w [rows, cols] (uint8), eff = w ⊙ (mask + (1 − mask)·alpha). */
export interface NativeNmMaskScaleOptions<B> { w: B; rows: number; cols: number; n: number; m: number; alpha: number; mask: B; eff: B }
/** Causal self-attention's shape and dropout (train_args.h attention_option): probabilities dropped with p, keyed by (seed, offset). */
export interface NativeAttentionShape { batch: number; t: number; heads: number; headDim: number; p: number; seed: number; offset: number }
/** attentionForward: out [batch, t, heads·headDim] from qkv [batch, t, 3·heads·headDim]; probs [batch, heads, t, t] saved. */
export interface NativeAttentionForwardOptions<B> extends NativeAttentionShape { qkv: B; out: B; probs: B }
/** attentionBackward: dqkv from dout; overwrites probs with the scores' gradient. */
export interface NativeAttentionBackwardOptions<B> extends NativeAttentionShape { dout: B; qkv: B; probs: B; dqkv: B }
/** blasSgemm: float32 C [m, n] = op(A) · op(B) through cblas_sgemm (the CPU benchmark's peer), synchronous. */
export interface NativeBlasSgemmOptions { a: Host; b: Host; c: Host; m: number; n: number; k: number; transA: boolean; transB: boolean }
/** The dense shape of a portable compressed N:M matrix: w [rows, cols] of `dtype`, N kept in each M along a row. */
export interface NativeNmShape { dtype: DTypeCode; rows: number; cols: number; n: number; m: number }
/** nmCompress: the kept values and their packed positions (nmPositionBytes of them) of w, already N:M sparse. */
export interface NativeNmCompressOptions extends NativeNmShape { w: Host; values: Host; positions: Uint8Array }
/** nmDecompress: out [rows, cols] = the dense matrix of values and positions (zeros elsewhere). */
export interface NativeNmDecompressOptions extends NativeNmShape { values: Host; positions: Uint8Array; out: Host }

/** sgdStep: p, g (and buf, null without momentum) of n float32 updated in place, as PyTorch's SGD. */
export interface NativeSgdStepOptions<B> {
  p: B; g: B; buf: B | null; n: number; lr: number; momentum: number; dampening: number; weightDecay: number;
  nesterov: boolean; first: boolean;
}
/** adamwStep: p, m and v of n float32 updated in place from g, as PyTorch's AdamW (step counted from 1). */
export interface NativeAdamwStepOptions<B> {
  p: B; g: B; m: B; v: B; n: number; lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number;
}
/** The SR-STE term fused into the CPU steps (optim.cc): λ·(1 − mask)·p added to the gradient; lambda read only with a mask. */
export interface NativeSrSteTerm { mask?: Host | null; lambda?: number }
/** nmTrainPass: mask (selected from |w| or as given), eff = w ⊙ mask (null: not written), values and positions in one pass. */
export interface NativeNmTrainPassOptions {
  w: Host; rows: number; cols: number; n: number; m: number; mask: Host; select: boolean; countSad: boolean;
  eff: Host | null; values: Host; positions: Uint8Array;
}
/** cudaNmTrainPass: the pass on the device; the SAD to the 8-byte counter `sad` (null: not counted); eff16 for a 16-bit dtype only. */
export interface NativeCudaNmTrainPassOptions {
  w: CudaBuffer; rows: number; cols: number; n: number; m: number; mask: CudaBuffer; select: boolean; eff: CudaBuffer;
  sad: CudaBuffer | null; dtype: DTypeCode; eff16?: CudaBuffer | null;
}
/** cudaNmFromPortable: a host portable compressed form (values, positions) uploaded, with its cuSPARSELt form added. */
export interface NativeCudaNmFromPortableOptions extends NativeNmShape { values: Host; positions: Uint8Array }
/**
 * The training kernels (elementwise.cc, optim.cc, attention.cc; cuda_train.cc takes the same arguments) over buffers
 * of type B: float32 tensors, uint8 masks; labels and max-pool indices are host Int32Arrays on every device. The calls
 * with many numbers take one options object (Native*Options: fields read by name, unknown ones rejected).
 */
interface TrainFns<B> {
  biasAdd(y: B, b: B, rows: number, cols: number): void;
  biasGrad(dy: B, rows: number, cols: number, db: B): void;
  add(a: B, b: B, y: B, n: number): void;
  /** Token ids are float32 integers in [0, vocab) (checked on the CPU; a CUDA kernel writes NaN rows for bad ones). */
  embeddingForward(ids: B, table: B, out: B, rows: number, vocab: number, dim: number, accumulate: boolean): void;
  embeddingBackward(dy: B, ids: B, dtable: B, rows: number, vocab: number, dim: number, accumulate: boolean): void;
  reluForward(x: B, y: B, n: number): void;
  reluBackward(dy: B, y: B, dx: B, n: number): void;
  geluForward(x: B, y: B, n: number): void;
  geluBackward(dy: B, x: B, dx: B, n: number): void;
  layerNormForward(options: NativeLayerNormForwardOptions<B>): void;
  layerNormBackward(options: NativeLayerNormBackwardOptions<B>): void;
  softmaxXentForward(logits: B, labels: Int32Array, probs: B, rows: number, cols: number, labelSmoothing: number):
    [lossSum: number, correct: number, counted: number];
  softmaxXentBackward(probs: B, labels: Int32Array, dlogits: B, rows: number, cols: number, labelSmoothing: number,
    scale: number): void;
  im2col(options: NativeIm2colOptions<B>): void;
  col2im(options: NativeCol2imOptions<B>): void;
  maxPoolForward(options: NativeMaxPoolForwardOptions<B>): void;
  maxPoolBackward(options: NativeMaxPoolBackwardOptions<B>): void;
  dropout(x: B, y: B, n: number, p: number, seed: number, offset: number): void;
  maskedScale(x: B, mask: B, alpha: number, y: B, n: number): void;
  maskedAdd(g: B, w: B, mask: B, lambda: number, n: number): void;
  nmMaskScale(options: NativeNmMaskScaleOptions<B>): void;
  sgdStep(options: NativeSgdStepOptions<B>): void;
  adamwStep(options: NativeAdamwStepOptions<B>): void;
  sumSquares(x: B, n: number): number;
  scaleInplace(x: B, s: number, n: number): void;
  // attention.cc / attention.cu
  attentionForward(options: NativeAttentionForwardOptions<B>): void;
  attentionBackward(options: NativeAttentionBackwardOptions<B>): void;
}

/** The functions of every build (native/napi/*.cc except cuda_*.cc). */
export interface CpuAddon extends TrainFns<Host> {
  // runtime.cc
  setNumThreads(n: number): void;
  numThreads(): number;
  buildInfo(): { cuda: boolean; napiVersion: number; version: string; sourceHash: string };
  /** `bytes` zeros in native, reference-counted memory that async ops pin while they run (napi/storage.cc). */
  allocBuffer(bytes: number): ArrayBuffer;
  /** malloc_trim(0) on glibc: the free pages of every malloc arena back to the system; whether any went (napi/storage.cc). */
  trimHostMemory(): boolean;
  enumTables(): { dtype: string[]; activation: string[] };
  // gemm.cc
  gemm(options: NativeGemmOptions): Promise<void> | undefined;
  gemmPackedSize(n: number, k: number): { floats: number; isa: number };
  gemmPackB(options: NativeGemmPackOptions): void;
  cpuIsa(name?: string): { active: string; best: string };
  // mlp.cc
  mlpPlan(options: NativeMlpPlanOptions): { handle: unknown; inFeatures: number; outFeatures: number };
  mlpForward(plan: { handle: unknown }, first: number, last: number, x: Float32Array, m: number, out: Float32Array, async: boolean): Promise<void> | undefined;
  // spmm.cc
  spmm(options: NativeSpmmOptions): Promise<void> | undefined;
  spmmPackedSize(rows: number, cols: number, n: number, m: number): number;
  spmmPack(options: NativeSpmmPackOptions): void;
  spmmT(options: NativeSpmmTOptions): void;
  // blas_peer.cc
  blasPeer(): { available: boolean; path?: string; error?: string; config?: string; corename?: string; threads?: number };
  blasSgemm(options: NativeBlasSgemmOptions): void;
  // mask.cc
  nmMask(w: Host, dtype: DTypeCode, rows: number, cols: number, n: number, m: number, out: Host): void;
  nmPrune(w: Host, dtype: DTypeCode, rows: number, cols: number, n: number, m: number, out: Host): void;
  nmCheck(w: Host, dtype: DTypeCode, rows: number, cols: number, n: number, m: number): CheckCode;
  transposableMask(w: Host, dtype: DTypeCode, rows: number, cols: number, out: Host): void;
  maskSad(a: Host, b: Host): number;
  // compress.cc
  nmPositionBytes(rows: number, cols: number, n: number, m: number): number;
  nmCompress(options: NativeNmCompressOptions): void;
  nmDecompress(options: NativeNmDecompressOptions): void;
  // convert.cc
  convert(src: Host, srcDtype: DTypeCode, dst: Host, dstDtype: DTypeCode, count: number): void;
  transpose2d(src: Host, dtype: DTypeCode, batch: number, rows: number, cols: number, dst: Host): void;
  // optim.cc: the CPU steps also take the fused SR-STE term (their cuda twins do not: an unknown option there)
  sgdStep(options: NativeSgdStepOptions<Host> & NativeSrSteTerm): void;
  adamwStep(options: NativeAdamwStepOptions<Host> & NativeSrSteTerm): void;
  // elementwise.cc: the sparse training step's mask, w ⊙ m and its compressed form in one pass → SAD (its CUDA twin,
  // cudaNmTrainPass, takes other options)
  nmTrainPass(options: NativeNmTrainPassOptions): number;
}

/** The names of the CUDA twins of CPU bindings: cudaBiasAdd for biasAdd. */
type CudaNames<T> = { [K in keyof T & string as `cuda${Capitalize<K>}`]: T[K] };

/** The functions of a CUDA build (native/napi/cuda_*.cc): the CPU arguments with device memory for tensors. */
export interface CudaAddon extends CudaNames<TrainFns<CudaBuffer>> {
  // cuda_device.cc
  CudaBuffer: abstract new (...args: never[]) => CudaBuffer;
  CudaSparse: abstract new (...args: never[]) => CudaSparse;
  cudaInfo(): CudaProbe;
  /** The locations cuSPARSELt and cuBLASLt are looked for, in order (native/cuda/dynlib.h). */
  cudaLibrarySearch(): { cusparselt: string[]; cublaslt: string[] };
  cudaAlloc(bytes: number, zero?: boolean): CudaBuffer;
  cudaUpload(src: Host): CudaBuffer;
  cudaDownload(buf: CudaBuffer, dst: ArrayBufferView): void;
  cudaDownloadAsync(buf: CudaBuffer, dst: ArrayBufferView): Promise<void>;
  cudaCopy(src: CudaBuffer, dst: CudaBuffer, bytes: number): void;
  cudaSynchronize(): void;
  cudaMemStats(trim?: boolean): { liveBytes: number; liveBuffers: number; freeBytes: number; totalBytes: number; poolReserved: number; poolUsed: number };
  // cuda_gemm.cc
  cudaSparseLinear(options: NativeCudaSparseLinearOptions): CudaBuffer;
  cudaSparseMatmul(options: NativeCudaSparseMatmulOptions): CudaBuffer;
  cudaMatmul(options: NativeCudaMatmulOptions): CudaBuffer;
  cudaPlanInfo(): PlanInfo[];
  cudaClearPlans(): void;
  cudaBenchNativeLoop(sparse: CudaSparse, x: CudaBuffer, p: number, bias: CudaBuffer | null, iters: number):
    { path: string; iters: number; msPerCallGpu: number; usPerCallHost: number };
  cudaBenchGemm(options: GemmBenchOptions): GemmBenchResult;
  // cuda_nm.cc
  cudaNmMask(w: CudaBuffer, dtype: DTypeCode, rows: number, cols: number, n: number, m: number, out: CudaBuffer | null): CudaBuffer;
  cudaNmPrune(w: CudaBuffer, dtype: DTypeCode, rows: number, cols: number, n: number, m: number, out: CudaBuffer | null): CudaBuffer;
  cudaNmCheck(w: CudaBuffer, dtype: DTypeCode, rows: number, cols: number, n: number, m: number): CheckCode;
  cudaTransposableMask(w: CudaBuffer, dtype: DTypeCode, rows: number, cols: number, out: CudaBuffer | null): CudaBuffer;
  cudaMaskSad(a: CudaBuffer, b: CudaBuffer, count: number): number;
  cudaNmCompress(w: CudaBuffer, dtype: DTypeCode, rows: number, cols: number, n: number, m: number): CudaSparse;
  cudaNmFromPortable(options: NativeCudaNmFromPortableOptions): CudaSparse;
  cudaNmDecompress(sparse: CudaSparse, out: CudaBuffer | null): CudaBuffer;
  cudaNmDownloadPortable(sparse: CudaSparse, values: Host, positions: Uint8Array): void;
  // cuda_train.cc: nmTrainPass on the device → the step's compressed weight; the SAD goes to the 8-byte counter `sad`
  cudaNmTrainPass(options: NativeCudaNmTrainPassOptions): CudaSparse;
  /** W̃ᵀ of a 16-bit pass's W ⊙ m [rows, cols] with a transposable 2:4 mask, compressed: [cols, rows] 2:4. */
  cudaNmTransposedTrainForm(eff16: CudaBuffer, dtype: DTypeCode, rows: number, cols: number): CudaSparse;
  // cuda_convert.cc: convert's twin for float32 / float16 / bfloat16 device buffers
  cudaConvert(src: CudaBuffer, srcDtype: DTypeCode, dst: CudaBuffer, dstDtype: DTypeCode, count: number): void;
}

/** The whole addon as lib/ sees it; the CudaAddon half is present only when buildInfo().cuda. */
export interface Addon extends CpuAddon, CudaAddon {}

const names = <T>(o: Record<keyof T, true>): string[] => Object.keys(o).sort();
/** The exported names, each list checked by tsc to be exactly the keys of its interface. */
export const addonNames: { cpu: string[]; cuda: string[] } = {
  cpu: names<CpuAddon>({
    setNumThreads: true, numThreads: true, buildInfo: true, allocBuffer: true, trimHostMemory: true, enumTables: true, gemm: true,
    gemmPackedSize: true, gemmPackB: true, cpuIsa: true, mlpPlan: true, mlpForward: true, spmm: true,
    spmmPackedSize: true, spmmPack: true,
    spmmT: true, blasPeer: true, blasSgemm: true, nmMask: true, nmPrune: true, nmCheck: true, transposableMask: true,
    maskSad: true, nmPositionBytes: true, nmCompress: true, nmDecompress: true, convert: true, transpose2d: true,
    nmTrainPass: true, biasAdd: true,
    biasGrad: true, reluForward: true, reluBackward: true, geluForward: true, geluBackward: true, layerNormForward: true,
    layerNormBackward: true, softmaxXentForward: true, softmaxXentBackward: true, im2col: true, col2im: true,
    maxPoolForward: true, maxPoolBackward: true, dropout: true, maskedScale: true, maskedAdd: true, nmMaskScale: true,
    sgdStep: true, adamwStep: true, sumSquares: true, scaleInplace: true, add: true, embeddingForward: true,
    embeddingBackward: true, attentionForward: true, attentionBackward: true,
  } satisfies Record<keyof CpuAddon, true>),
  cuda: names<CudaAddon>({
    CudaBuffer: true, CudaSparse: true, cudaInfo: true, cudaLibrarySearch: true, cudaAlloc: true, cudaUpload: true, cudaDownload: true,
    cudaDownloadAsync: true, cudaCopy: true, cudaSynchronize: true, cudaMemStats: true, cudaSparseLinear: true,
    cudaSparseMatmul: true, cudaMatmul: true, cudaPlanInfo: true, cudaClearPlans: true, cudaBenchNativeLoop: true,
    cudaBenchGemm: true, cudaNmMask: true, cudaNmPrune: true, cudaNmCheck: true, cudaTransposableMask: true,
    cudaMaskSad: true, cudaNmCompress: true, cudaNmFromPortable: true, cudaNmDecompress: true,
    cudaNmDownloadPortable: true, cudaNmTrainPass: true, cudaConvert: true, cudaNmTransposedTrainForm: true, cudaBiasAdd: true, cudaBiasGrad: true, cudaReluForward: true, cudaReluBackward: true,
    cudaGeluForward: true, cudaGeluBackward: true, cudaLayerNormForward: true, cudaLayerNormBackward: true,
    cudaSoftmaxXentForward: true, cudaSoftmaxXentBackward: true, cudaIm2col: true, cudaCol2im: true,
    cudaMaxPoolForward: true, cudaMaxPoolBackward: true, cudaDropout: true, cudaMaskedScale: true, cudaMaskedAdd: true,
    cudaNmMaskScale: true, cudaSgdStep: true, cudaAdamwStep: true, cudaSumSquares: true, cudaScaleInplace: true,
    cudaAdd: true, cudaEmbeddingForward: true, cudaEmbeddingBackward: true, cudaAttentionForward: true,
    cudaAttentionBackward: true,
  } satisfies Record<keyof CudaAddon, true>),
};
