/**
 * N:M operations, imported as the `nm` namespace: `nm.mask(w, '2:4')`, `nm.compress(w, '2:4')`, and
 * `nm.linear(x, S, bias)` = x·W̃ᵀ + b from a compressed weight S (PyTorch's Linear layout).
 * A module rather than an object literal, so that a consumer's declaration emit can name `typeof nm.mask`.
 */
export { mask, prune, check, assertNM, transposableMask, sad } from './mask.js';
export { compress } from './compress.js';
export {
  sparseLinear as linear, sparseLinearAsync as linearAsync, sparseMatmul as matmul, sparseMatmulAsync as matmulAsync,
} from './spmm.js';
