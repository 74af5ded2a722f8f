/**
 * nmsparse: N:M structured sparsity for Node.js.
 *   import { nm, randn } from 'nmsparse';
 *   const w = randn([512, 1024], { seed: 1 });
 *   const s = nm.compress(w, '2:4');
 */
import { native } from './native.js';
import { mask, prune, check, assertNM, transposableMask, sad } from './mask.js';
import { compress } from './compress.js';

export { NmSparseError, type ErrorCode } from './errors.js';
export { DTYPES, type DType } from './dtype.js';
export { type Device } from './device.js';
export { parsePattern, type Pattern } from './pattern.js';
export { Tensor, tensor, zeros, ones, full, randn, rand, type Shape, type TensorOptions } from './tensor.js';
export { SparseTensor } from './compress.js';
export { type CheckResult, type SadResult } from './mask.js';
export { Rng } from './random.js';

/** N:M operations. */
export const nm = { mask, prune, check, assertNM, compress, transposableMask, sad };

/** Size of the CPU thread pool (defaults to the number of cores). */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}
export function numThreads(): number {
  return native.numThreads() as number;
}
