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
 * Given a HalfProducts (the layer's forward ran under a 16-bit autocast, lib/nn/amp.ts) they multiply 16-bit
 * operands: x, W, dY cast to that dtype (W: the training pass's 16-bit copy when there is one), float32 sums, the
 * result rounded to the dtype (as cuBLASLt / cuSPARSELt write it) and cast back to float32; the bias is added in
 * float32 after. The 16-bit x and W of the forward are kept for the backward, dY's cast serves dW and dX.
 */
import { linear, matmul } from '../gemm.js';
import { linearInputGrad, sparseLinear } from '../spmm.js';
import type { SparseTensor } from '../compress.js';
import type { CudaSparse } from '../native.js';
import type { Shape, Tensor } from '../tensor.js';
import type { HalfPrecision } from './amp.js';
import { biasAdd, cast } from './elementwise.js';
import { timed } from './profile.js';
import { NmSparseError } from '../errors.js';

/**
 * A layer's 16-bit products: their dtype, the layer's buffers, and the operands its forward rounded; wT, set by the
 * layer, makes W̃ᵀ compressed (null without a transposable 2:4 mask) for an N:M input gradient, called only when
 * that product will run; sparseForward: whether the forward ran as the N:M product.
 */
export class HalfProducts {
  x: Tensor | null = null;
  w: Tensor | null = null;
  dy: Tensor | null = null;
  wT: (() => SparseTensor | null) | null = null;
  sparseForward = false;
  constructor(readonly dtype: HalfPrecision, readonly buffer: (key: string, shape: Shape, like: Tensor, dtype: HalfPrecision) => Tensor) {}
  /** t cast to the dtype, into the layer's buffer `key`. */
  round(t: Tensor, key: string): Tensor { return cast(t, this.dtype, { out: this.buffer(key, t.shape, t, this.dtype) }); }
}

/** y16 widened to float32 into `out` (a new tensor without one), plus the bias. */
function widen(y16: Tensor, bias: Tensor | null, out?: Tensor): Tensor {
  const y = cast(y16, 'float32', { out });
  return bias ? biasAdd(y, bias) : y;
}

/**
 * y = x·Wᵀ + bias. x [rows, in], W [out, in], bias [out] or null; S = W in compressed form (the N:M product).
 * On the CPU S is used for layers at least nmKernelMinWidth.forward wide. On 'cuda' S is used where it has a
 * cuSPARSELt form (nmTrainPass makes one for float32 1:M and for float16/bfloat16 2:4 and sparser; float32 2:4
 * cannot have one, cuSPARSELt's float32 kernels take 1:2 pairs), and the plan cache then picks cuSPARSELt or
 * cuBLASLt per shape by measurement, float32 in TF32 as nm.linear on 'cuda'; without one the product is W ⊙ m
 * through the dense GEMM. With `half`, S (when given) has the 16-bit dtype and w16 is its dense W ⊙ m.
 */
export function linearForward(x: Tensor, w: Tensor | null, bias: Tensor | null, out?: Tensor, s?: SparseTensor | null,
  half?: HalfProducts | null, w16?: Tensor | null): Tensor {
  const sparse = s && (s.device === 'cpu' ? wide(s.shape, nmKernelMinWidth.forward) : hasSparseForm(s));
  if (!half) return timed('forward', () => (sparse ? sparseLinear(x, s, bias, { out }) : linear(x, dense(w), bias, { out })));
  return timed('forward', () => {
    const x16 = half.x = half.round(x, 'x16');
    half.sparseForward = !!sparse;
    // w16 (the training pass's 16-bit W ⊙ m, of which s is the compressed form) or W rounded here.
    const w16d = half.w = w16 ?? half.round(dense(w), 'w16');
    half.dy = null;
    const y16 = half.buffer('y16', [x.shape[0], w16d.shape[0]], x, half.dtype);
    return widen(sparse ? sparseLinear(x16, s, null, { out: y16 }) : linear(x16, w16d, null, { out: y16 }), bias, out);
  });
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
 * (at 4096² a write of 64 MB a step). On 'cuda' the dense W ⊙ m is always used (dX is dense there), and so it is
 * under a 16-bit autocast (the 16-bit dX reads the pass's 16-bit W ⊙ m, rounded from it).
 */
export function nmCovers(shape: readonly number[], device: string, inputGrad: boolean, half: boolean): boolean {
  return !half && device === 'cpu' && wide(shape, nmKernelMinWidth.forward) && (!inputGrad || wide(shape, nmKernelMinWidth.inputGrad));
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
export function inputGrad(dy: Tensor, w: Tensor | null, s: SparseTensor | null, out?: Tensor, half?: HalfProducts | null): Tensor {
  if (half) {
    // With W̃ᵀ compressed (a transposable 2:4 mask), dY·W̃ = dY·(W̃ᵀ)ᵀ is the N:M product (on 'cuda' the plan cache
    // picks cuSPARSELt or cuBLASLt per shape by measurement, as for the forward); else the dense 16-bit product
    // (spmm_t reads float32 weights).
    // W̃ᵀ is compressed only for a product that reads it: on the CPU a wide enough layer; on 'cuda' one whose
    // forward had a cuSPARSELt form (without, cuSPARSELt is not loaded and W̃ᵀ would have none either). The CPU
    // width is nmKernelMinWidth.forward's, not .inputGrad's: this product is the forward's kernel (spmm on W̃ᵀ,
    // min(out, in) the same), not spmm_t, which .inputGrad was measured for.
    const w16 = half.w!;
    const cpu = w16.device === 'cpu';
    const wT = (cpu ? wide(w16.shape, nmKernelMinWidth.forward) : half.sparseForward) ? half.wT?.() ?? null : null;
    const sparse = wT && (cpu || hasSparseForm(wT));
    return timed('inputGrad', () => {
      const dy16 = half.dy ?? (half.dy = half.round(dy, 'dy16'));
      const dx16 = half.buffer('dx16', [dy.shape[0], w16.shape[1]], dy, half.dtype);
      return widen(sparse ? sparseLinear(dy16, wT, null, { out: dx16 }) : matmul(dy16, w16, { out: dx16 }), null, out);
    });
  }
  const sparse = s && s.device === 'cpu' && wide(s.shape, nmKernelMinWidth.inputGrad);
  return timed('inputGrad', () => (sparse ? linearInputGrad(dy, s, { out }) : matmul(dy, dense(w), { out })));
}

/** c = aᵀ·b. a [k, m], b [k, n]. With `half`: a is dY (cast here) and b the forward's input (its 16-bit copy). */
export function matmulTN(a: Tensor, b: Tensor, out?: Tensor, half?: HalfProducts | null): Tensor {
  if (!half) return timed('weightGrad', () => matmul(a, b, { transA: true, out }));
  return timed('weightGrad', () => {
    const dy16 = half.dy ?? (half.dy = half.round(a, 'dy16'));
    return widen(matmul(dy16, half.x!, { transA: true, out: half.buffer('dw16', [a.shape[1], b.shape[1]], a, half.dtype) }), null, out);
  });
}
