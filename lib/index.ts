/**
 * nmsparse: N:M structured sparsity for Node.js.
 *
 *   import { nm, randn, matmul } from 'nmsparse';
 *   const w = randn([4096, 4096], { seed: 1 });
 *   const s = nm.compress(w, '2:4');          // pruned to 2:4 and compressed (0.53x the bytes)
 *   const y = nm.linear(x, s);                 // x·W̃ᵀ straight from the compressed form
 *
 * Importing registers the 'cuda' backend without touching a GPU; backendInfo() says whether it is usable.
 */
import { native } from './native.js';
import './cuda.js';

export { NmSparseError, type ErrorCode } from './errors.js';
export { DTYPES, type DType, type Storage } from './dtype.js';
export { type Device, type DeviceStorage } from './device.js';
export { parsePattern, type Pattern } from './pattern.js';
export { Tensor, tensor, zeros, ones, full, randn, rand, type Shape, type Nested, type TensorOptions, type RandomOptions } from './tensor.js';
export { SparseTensor } from './compress.js';
export { type CheckResult, type SadResult, type PatternArg } from './mask.js';
export { Rng } from './random.js';
export { matmul, matmulAsync, linear, linearAsync, PackedWeight, type Activation, type MatmulOptions, type LinearOptions } from './gemm.js';
export { type SparseLinearOptions, type SparseMatmulOptions } from './spmm.js';
export { backendInfo, formatBackendInfo, type BackendInfo, type LibraryInfo } from './backend-info.js';
export { planInfo, type PlanInfo } from './cuda.js';

/** N:M operations: `nm.mask(w, '2:4')`, `nm.compress`, `nm.linear(x, S, bias)` = x·W̃ᵀ + b from a compressed weight S (PyTorch's Linear layout), … */
export * as nm from './nm.js';

/** Training: modules, optimizers, recipes, data, the Trainer (see README "Training"). */
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
export * as recipes from './recipes/index.js';
export * as train from './train/index.js';
export { loadMnist, mnistSplit, Batches, type Dataset, type Batch } from './data/mnist.js';
export { loadBrown, brownCorpus, splitDocuments, CharVocab, TextBatches, TextWindows, type BrownDocument, type TextCorpus } from './data/brown.js';
export { CharNgram } from './data/ngram.js';

/** Model files (safetensors, PyTorch layout, N:M metadata) and serving. */
export * as io from './io/index.js';
export {
  InferenceModel, startServer, type InferenceOptions, type ModelInfo, type LayerInfo, type BatcherStats, type ServerOptions, type RunningServer,
  type ServerStats,
} from './serve/index.js';

/** Size of the CPU thread pool (defaults to the cores this process may run on: its CPU affinity, e.g. a container's cpuset). */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}
export function numThreads(): number {
  return native.numThreads() as number;
}
