/**
 * The one place the training stack multiplies matrices. Every module calls these three functions, so switching
 * the implementation (the N:M kernels, another backend) happens here and nowhere else. They run lib/gemm.ts (the
 * native GEMM on the CPU, the device's backend for tensors on a GPU) or, for a weight that is exactly N:M this
 * step, lib/spmm.ts (native/cpu/spmm.cc; on 'cuda' cuSPARSELt through the plan cache), writing into the module's
 * buffers.
 *   linearForward(x, W, b, S)  y  = x·Wᵀ + b     x [rows, in], W [out, in]; from S, W's compressed form, if given
 *   inputGrad(dY, W, S)        dX = dY·W         dY [rows, out]; from S (its kept values only) if given (CPU)
 *   matmulTN(a, b)             c  = aᵀ·b         a [k, m], b [k, n]     (dW = dYᵀ·X, dense: the STE needs all of it)
 * W may be null where nmCovers says S serves every product of the layer (the pass then skips writing W ⊙ m).
 */
import { linear, matmul } from '../gemm.js';
import { linearInputGrad, sparseLinear } from '../spmm.js';
import type { SparseTensor } from '../compress.js';
import type { CudaSparse } from '../native.js';
import type { Tensor } from '../tensor.js';
import { timed } from './profile.js';
import { NmSparseError } from '../errors.js';

/**
 * y = x·Wᵀ + bias. x [rows, in], W [out, in], bias [out] or null; S = W in compressed form (the N:M product).
 * On the CPU S is used for layers at least nmKernelMinWidth.forward wide. On 'cuda' S is used where it has a
 * cuSPARSELt form (nmTrainPass makes one for float32 1:M; float32 2:4 cannot have one, cuSPARSELt's float32
 * kernels take 1:2 pairs), and the plan cache then picks cuSPARSELt or cuBLASLt per shape by measurement, both in
 * TF32 as nm.linear on 'cuda'; without one the product is W ⊙ m through the dense float32 GEMM.
 */
export function linearForward(x: Tensor, w: Tensor | null, bias: Tensor | null, out?: Tensor, s?: SparseTensor | null): Tensor {
  const sparse = s && (s.device === 'cpu' ? wide(s.shape, nmKernelMinWidth.forward) : hasSparseForm(s));
  return timed('forward', () => (sparse ? sparseLinear(x, s, bias, { out }) : linear(x, dense(w), bias, { out })));
}

const wide = (shape: readonly number[], min: number): boolean => Math.min(shape[0], shape[shape.length - 1]) >= min;

/** The dense weight of a product that does not run from the compressed form (never null there, by nmCovers). */
function dense(w: Tensor | null): Tensor {
  if (!w) throw new NmSparseError('E_INTERNAL', 'a dense product without the dense weight (nmCovers and the products disagree)');
  return w;
}

/**
 * Whether the N:M products of a layer with weight [out, in] on `device` run from the compressed form alone: the
 * forward, and dX when `inputGrad` (the layer needs its input's gradient). Then nmTrainPass need not write W ⊙ m
 * (at 4096² a write of 64 MB a step). On 'cuda' the dense W ⊙ m is always used (dX is dense there).
 */
export function nmCovers(shape: readonly number[], device: string, inputGrad: boolean): boolean {
  return device === 'cpu' && wide(shape, nmKernelMinWidth.forward) && (!inputGrad || wide(shape, nmKernelMinWidth.inputGrad));
}

/**
 * The narrowest weight (the smaller of out and in) whose products run through the N:M kernels; narrower, they run
 * dense on W ⊙ m (the same result within rounding). Forward, by bench train on the Zen 3 (bench/results/train-*):
 * at widths 128-512 (the character GPT) the N:M forward took 1.25x the dense GEMM's time; the MLPs' layers (784 and
 * wider) gain. dX, after spmm_t's AVX-512 rework, on the Zen 5
 * (one process, interleaved, medians, batch 256-1024, 2:4 and 1:4, AVX-512 and forced AVX2) 0.6-0.9x the GEMM's
 * time at 512² and 0.5-0.8x at 768², but 1.2-1.7x at 128×512 (out × in, 4096 rows).
 * Mutable for tests and benchmarks (0: every N:M layer).
 */
export const nmKernelMinWidth = { forward: 784, inputGrad: 512 };

/** Whether a device SparseTensor has a cuSPARSELt form (native CudaSparse info()). */
const hasSparseForm = (s: SparseTensor): boolean => (s.handle as CudaSparse).info().cusparselt === true;

/**
 * dX = dY·W. dY [rows, out], W [out, in]; S: W in compressed form, the weight of this step's N:M forward. On 'cuda'
 * always the dense float32 GEMM: W̃ is N:M along `in`, not along `out` as a cuSPARSELt operand here must be, and
 * W̃ᵀ of a transposable 2:4 mask is 2:4, not the 1:2 pairs cuSPARSELt's float32 kernels take (docs/design.md §7).
 */
export function inputGrad(dy: Tensor, w: Tensor | null, s: SparseTensor | null, out?: Tensor): Tensor {
  const sparse = s && s.device === 'cpu' && wide(s.shape, nmKernelMinWidth.inputGrad);
  return timed('inputGrad', () => (sparse ? linearInputGrad(dy, s, { out }) : matmul(dy, dense(w), { out })));
}

/** c = aᵀ·b. a [k, m], b [k, n]. */
export function matmulTN(a: Tensor, b: Tensor, out?: Tensor): Tensor {
  return timed('weightGrad', () => matmul(a, b, { transA: true, out }));
}
