/**
 * Devices other than the CPU plug in here. lib/cuda.ts registers the 'cuda' backend when the addon was built
 * with CUDA; op files (lib/mask.ts, lib/gemm.ts, …) send a tensor that lives on a device to that device's op.
 * Nothing here touches a GPU until an op or a transfer asks for it.
 */
import { NmSparseError } from './errors.js';
// Types only: this file stays free of runtime imports from the op files.
import type { Tensor, Shape } from './tensor.js';
import type { SparseTensor } from './compress.js';
import type { Pattern } from './pattern.js';
import type { DType } from './dtype.js';
import type { CheckResult, SadResult } from './mask.js';
import type { LayerNormGrads, LayerNormSaved, MaxPoolSaved, TrainPassBuffers, TrainPassResult, Window2d, XentResult } from './nn/elementwise.js';
import type { AttentionOptions, AttentionSaved } from './nn/attention.js';

export type Device = 'cpu' | 'cuda';

/** Device memory held by a tensor (a native DeviceBuffer handle). */
export interface DeviceStorage {
  readonly bytes: number;
  readonly disposed: boolean;
  dispose(): void;
}

type Out = { out?: Tensor };

/** The epilogue activations of the products (lib/gemm.ts ACTIVATIONS); gelu = x·Φ(x), the erf form. */
export type Activation = 'relu' | 'gelu';

/**
 * A dense product whose arguments lib/gemm.ts has validated, for every device in one place (docs/design.md §4):
 * [m, n] = op(a)·op(b) (+ bias[n] on every row), then the activation. linear(x, W) is a = x, b = W, transB.
 */
export interface GemmPlan {
  a: Tensor; b: Tensor; bias: Tensor | null;
  m: number; n: number; k: number; transA: boolean; transB: boolean;
  activation: Activation | null;
  /** The result's shape and dtype (the inputs' dtype; float32 for int8 inputs). */
  shape: Shape; dtype: DType;
  /** The caller's output, validated (shape, dtype, device, no memory shared with an input), or undefined. */
  out: Tensor | undefined;
}

/**
 * An N:M-sparse product whose arguments lib/spmm.ts has validated: W̃ [rows, cols] · b [cols, p] (+ bias[rows]),
 * or, when `linear`, x [p, cols] · W̃ᵀ → [p, rows] (+ bias[rows] on every row) with b = x; then the activation.
 */
export interface SpmmPlan {
  s: SparseTensor; b: Tensor; bias: Tensor | null;
  rows: number; cols: number; p: number; linear: boolean;
  activation: Activation | null;
  shape: Shape; dtype: DType;
  out: Tensor | undefined;
}

/**
 * The ops a device backend implements: the public function of the same name (lib/mask.ts, compress.ts, gemm.ts,
 * spmm.ts, nn/elementwise.ts, optim/) sends its tensors here when they live on the device. Tensor arguments are
 * on the device; the results are the public function's. The products (gemm, spmm) get one validated plan each.
 */
export interface DeviceOps extends DeviceTrainOps {
  mask(w: Tensor, p: Pattern, opts?: Out): Tensor;
  prune(w: Tensor, p: Pattern, opts?: Out): Tensor;
  check(w: Tensor, p: Pattern): CheckResult;
  transposableMask(w: Tensor, opts?: Out): Tensor;
  sad(a: Tensor, b: Tensor): SadResult;
  compress(w: Tensor, p: Pattern): SparseTensor;
  decompress(s: SparseTensor, opts?: Out): Tensor;
  /** The same SparseTensor on 'cpu': its portable form downloaded (exact, no recompression). */
  sparseToCpu(s: SparseTensor): SparseTensor;
  /** A 'cpu' SparseTensor on the device (portable form uploaded, the device form built there). */
  sparseFromCpu(s: SparseTensor): SparseTensor;
  /** The dense products (matmul, linear and their async forms), on validated arguments. */
  gemm(plan: GemmPlan): Tensor;
  /** The N:M-sparse products (nm.linear, S.matmul and their async forms), on validated arguments. */
  spmm(plan: SpmmPlan): Tensor;
}

/** The training ops of DeviceOps (lib/nn/elementwise.ts, lib/optim/). */
export interface DeviceTrainOps {
  biasAdd(y: Tensor, b: Tensor): Tensor;
  biasGrad(dy: Tensor, opts?: Out): Tensor;
  add(a: Tensor, b: Tensor, opts?: Out): Tensor;
  embeddingForward(ids: Tensor, table: Tensor, opts?: Out & { accumulate?: boolean }): Tensor;
  embeddingBackward(dy: Tensor, ids: Tensor, vocab: number, opts?: Out & { accumulate?: boolean }): Tensor;
  reluForward(x: Tensor, opts?: Out): Tensor;
  reluBackward(dy: Tensor, y: Tensor, opts?: Out): Tensor;
  geluForward(x: Tensor, opts?: Out): Tensor;
  geluBackward(dy: Tensor, x: Tensor, opts?: Out): Tensor;
  layerNormForward(x: Tensor, gamma: Tensor | null, beta: Tensor | null, eps: number,
    opts?: Out & { mean?: Tensor; rstd?: Tensor }): LayerNormSaved;
  layerNormBackward(dy: Tensor, x: Tensor, gamma: Tensor | null, mean: Tensor, rstd: Tensor, withBeta: boolean,
    opts?: Out & { dgamma?: Tensor; dbeta?: Tensor }): LayerNormGrads;
  softmaxCrossEntropy(logits: Tensor, labels: Int32Array, opts?: { labelSmoothing?: number; probs?: Tensor }): XentResult;
  /** `count`: the labelled rows, counted by the caller. */
  softmaxCrossEntropyBackward(probs: Tensor, labels: Int32Array, opts: Out & { labelSmoothing?: number; scale?: number; count: number }): Tensor;
  im2col(x: Tensor, w: Window2d, opts?: Out): Tensor;
  col2im(cols: Tensor, inputShape: Shape, w: Window2d, opts?: Out): Tensor;
  maxPoolForward(x: Tensor, w: Window2d, opts?: Out & { argmax?: Int32Array }): MaxPoolSaved;
  maxPoolBackward(dy: Tensor, argmax: Int32Array, inputShape: Shape, w: Window2d, opts?: Out): Tensor;
  dropout(x: Tensor, p: number, seed: number, offset: number, opts?: Out): Tensor;
  maskedScale(x: Tensor, mask: Tensor, alpha: number, opts?: Out): Tensor;
  maskedAdd(g: Tensor, w: Tensor, mask: Tensor, lambda: number): Tensor;
  nmMaskScale(w: Tensor, pattern: Pattern, alpha: number, opts?: { mask?: Tensor; out?: Tensor }): { mask: Tensor; out: Tensor };
  /** `mask` is validated (given or null); `select` false comes with a mask. */
  nmTrainPass(w: Tensor, pattern: Pattern, opts: { mask: Tensor | null; buffers: TrainPassBuffers | null; select: boolean; dtype: DType }): TrainPassResult;
  /** W̃ᵀ compressed 2:4, from a 16-bit W̃ with a transposable mask (validated). */
  nmTransposedForm(w16: Tensor): SparseTensor;
  /** x converted between float32, float16 and bfloat16 (the arguments validated). */
  cast(x: Tensor, dtype: DType, opts: Out): Tensor;
  sgdStep(p: Tensor, g: Tensor, buf: Tensor | null,
    o: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean; first: boolean }): void;
  adamwStep(p: Tensor, g: Tensor, m: Tensor, v: Tensor,
    o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number }): void;
  sumSquares(x: Tensor): number;
  scaleInplace(x: Tensor, s: number): Tensor;
  attentionForward(qkv: Tensor, heads: number, opts: AttentionOptions & { out?: Tensor; probs?: Tensor }): AttentionSaved;
  attentionBackward(dy: Tensor, qkv: Tensor, probs: Tensor, heads: number, opts: AttentionOptions & Out): Tensor;
}

/** A device backend: transfers, device memory, and its ops (those it lacks are E_UNSUPPORTED). */
export interface DeviceBackend {
  name: Device;
  /** Why the device cannot be used, or null when it can. Cheap after the first call. */
  unavailableReason(): string | null;
  upload(src: ArrayBufferView, dtypeCode: number): DeviceStorage;
  download(storage: DeviceStorage, dst: ArrayBufferView): void;
  downloadAsync(storage: DeviceStorage, dst: ArrayBufferView): Promise<void>;
  alloc(bytes: number): DeviceStorage;
  /** A new allocation holding a device-side copy of `src`. */
  copy(src: DeviceStorage): DeviceStorage;
  ops: Partial<DeviceOps>;
}

const backends = new Map<Device, DeviceBackend>();

export function registerBackend(b: DeviceBackend): void {
  backends.set(b.name, b);
}

export function isDevice(d: unknown): d is Device {
  return d === 'cpu' || d === 'cuda';
}

/** The backend of `device`, ready to use, or an E_DEVICE error saying exactly why it is not. */
export function backendFor(device: Device, arg = 'device'): DeviceBackend {
  const b = backends.get(device);
  if (!b) throw new NmSparseError('E_DEVICE', `${arg}: '${device}' is not available: this build of nmsparse has no ${device} backend`);
  const why = b.unavailableReason();
  if (why) throw new NmSparseError('E_DEVICE', `${arg}: '${device}' is not available: ${why}`);
  return b;
}

/** The device op `name`, or E_UNSUPPORTED when the device has none. */
export function deviceOp<K extends keyof DeviceOps>(device: Device, name: K): DeviceOps[K] {
  const op = backendFor(device).ops[name];
  if (!op) throw new NmSparseError('E_UNSUPPORTED', `${name}: not implemented on '${device}' tensors; move them with .to('cpu')`);
  return op;
}
