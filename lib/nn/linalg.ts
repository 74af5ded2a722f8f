/**
 * The one place the training stack multiplies matrices. Every module calls these three functions, so switching
 * the implementation (a sparse forward, another backend) happens here and nowhere else. They run lib/gemm.ts
 * (the native GEMM on the CPU, the device's backend for tensors on a GPU), writing into the module's buffers.
 *   linearForward(x, W, b)  y  = x·Wᵀ + b     x [rows, in], W [out, in]
 *   matmulNN(a, b)          c  = a·b          a [m, k], b [k, n]     (dX = dY·W)
 *   matmulTN(a, b)          c  = aᵀ·b         a [k, m], b [k, n]     (dW = dYᵀ·X)
 */
import { linear, matmul } from '../gemm.js';
import type { Tensor } from '../tensor.js';

/** y = x·Wᵀ + bias. x [rows, in], W [out, in], bias [out] or null. */
export function linearForward(x: Tensor, w: Tensor, bias: Tensor | null, out?: Tensor): Tensor {
  return linear(x, w, bias, { out });
}

/** c = a·b. a [m, k], b [k, n]. */
export function matmulNN(a: Tensor, b: Tensor, out?: Tensor): Tensor {
  return matmul(a, b, { out });
}

/** c = aᵀ·b. a [k, m], b [k, n]. */
export function matmulTN(a: Tensor, b: Tensor, out?: Tensor): Tensor {
  return matmul(a, b, { transA: true, out });
}
