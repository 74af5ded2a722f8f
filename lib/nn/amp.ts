/**
 * Mixed-precision training (docs/design.md §7), the way PyTorch does it with torch.autocast and GradScaler,
 * limited to the products. Under autocast(precision, fn) the products of Linear and Conv2d layers (forward, dX, dW:
 * lib/nn/linalg.ts) round their operands to the 16-bit dtype, sum in float32, round the result to that dtype and
 * widen it back to float32 for the rest of the step: one cast each way. Master weights, gradients, optimizer state
 * and every elementwise op stay float32. A sparse weight's training pass then writes its compressed form in the
 * 16-bit dtype, so that a 2:4 weight on 'cuda' runs through cuSPARSELt (its 2:4 kernels take float16 / bfloat16).
 * float16 (5 exponent bits) needs loss scaling against underflowing gradients: GradScaler. bfloat16 has float32's
 * range and needs none.
 */
import { fail } from '../errors.js';
import { Optimizer, applyGradTerms, gradSumSquares, powerOfTwo, scaleGrads } from '../optim/optimizer.js';

export type Precision = 'float32' | 'bfloat16' | 'float16';
export const PRECISIONS: readonly Precision[] = ['float32', 'bfloat16', 'float16'];
/** The dtype of the products under a 16-bit precision. */
export type HalfPrecision = Exclude<Precision, 'float32'>;

export function checkPrecision(v: unknown, arg = 'precision'): Precision {
  if (!PRECISIONS.includes(v as Precision)) fail('E_VALUE', arg, v, `one of ${PRECISIONS.map((p) => `'${p}'`).join(', ')}`);
  return v as Precision;
}

let current: Precision = 'float32';

/** The precision of the products now: that of the innermost autocast() running, else float32. */
export const autocastPrecision = (): Precision => current;

/**
 * Runs fn with the products of the layers at `precision` (torch.autocast). A layer's backward uses the precision
 * of its forward, so the backward may run inside or outside. Synchronous: the precision is restored when fn returns.
 */
export function autocast<T>(precision: Precision, fn: () => T): T {
  const p = checkPrecision(precision);
  if (typeof fn !== 'function') fail('E_TYPE', 'fn', fn, 'a function to run under the autocast');
  const prev = current;
  current = p;
  try {
    return fn();
  } finally {
    current = prev;
  }
}

let lossScale = 1;

/**
 * The factor on the gradients of the backward running now: the `scale` given to the last loss backward
 * (SoftmaxCrossEntropy.backward(scale): GradScaler's scale under float16 loss scaling), 1 before any. Gradient
 * terms a recipe adds itself (SR-STE's) are multiplied by it, so that unscaling leaves them as they are.
 */
export const currentLossScale = (): number => lossScale;
/** Publishes the scale of the loss gradient a backward starts from (the loss's backward). */
export function setLossScale(scale: number): void { lossScale = scale; }

/** E_UNSUPPORTED naming `layer` when it runs under a 16-bit autocast it has no 16-bit products for. */
export function requireFloat32Products(layer: string, why: string): void {
  if (current !== 'float32') fail('E_UNSUPPORTED', 'precision', current, `'float32' for ${layer} (${why})`);
}

export interface GradScalerOptions {
  /** The first loss scale (default 65536 = 2¹⁶, as torch.cuda.amp.GradScaler). */
  initScale?: number;
  /** Factor on the scale after growthInterval steps in a row with finite gradients (default 2). */
  growthFactor?: number;
  /** Factor on the scale after a step with a non-finite gradient (default 0.5). */
  backoffFactor?: number;
  /** Default 2000. */
  growthInterval?: number;
}

/**
 * Dynamic loss scaling (torch.cuda.amp.GradScaler): the loss gradient is multiplied by `scale` before the backward
 * pass (the loss's backward(scale)), so that small float16 gradients do not flush to zero; step() divides the
 * gradients by it again and steps the optimizer, or skips the step when a gradient is not finite (an overflow) and
 * halves the scale. After growthInterval good steps in a row the scale doubles. The PyTorch pattern is all it
 * needs: `model.backward(loss.backward(scaler.scale)); scaler.step(opt)` (the loss's backward publishes the scale to
 * the recipes' own gradient terms, currentLossScale()).
 */
export class GradScaler {
  scale: number;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  /** Steps skipped so far (a non-finite gradient). */
  skipped = 0;
  #good = 0;

  constructor(opts: GradScalerOptions = {}) {
    const positive = (v: unknown, arg: string, min: number): number => {
      if (typeof v !== 'number' || !Number.isFinite(v) || !(v > min)) fail('E_VALUE', arg, v, `a finite number > ${min}`);
      return v;
    };
    this.scale = positive(opts.initScale ?? 65536, 'initScale', 0);
    this.growthFactor = positive(opts.growthFactor ?? 2, 'growthFactor', 1);
    const b = opts.backoffFactor ?? 0.5;
    if (typeof b !== 'number' || !(b > 0 && b < 1)) fail('E_VALUE', 'backoffFactor', b, 'a number in (0, 1)');
    this.backoffFactor = b;
    const g = opts.growthInterval ?? 2000;
    if (!Number.isSafeInteger(g) || g < 1) fail('E_VALUE', 'growthInterval', g, 'an integer >= 1');
    this.growthInterval = g;
  }

  /**
   * Unscales the optimizer's gradients and steps it (clipping the unscaled gradients to clipGradNorm first when
   * given), or skips the step if any gradient is not finite; then updates the scale. Returns whether it stepped.
   */
  step(optimizer: Optimizer, opts: { clipGradNorm?: number } = {}): boolean {
    if (!(optimizer instanceof Optimizer)) fail('E_TYPE', 'optimizer', optimizer, 'an Optimizer (optim.SGD, optim.AdamW, …)');
    const max = opts?.clipGradNorm;
    if (max && !(max > 0)) fail('E_VALUE', 'clipGradNorm', max, 'a number > 0 (0 or none: no clipping)');
    // Pending gradient terms (Parameter.term) stay fused into the step where unscaling is exact (a power-of-two
    // scale) and no norm is taken; else they are added now, before the norm and the unscaling, as the gradient's.
    if (max || !powerOfTwo(this.scale)) applyGradTerms(optimizer.params);
    const ss = gradSumSquares(optimizer.params);
    if (!Number.isFinite(ss)) {
      for (const p of optimizer.params) p.term = null;
      this.skipped++;
      this.#good = 0;
      this.scale *= this.backoffFactor;
      return false;
    }
    // One reduction serves the check and the clip (the unscaled norm is √Σg² / scale: one host sync per gradient
    // on 'cuda', not two), and unscaling and clipping are one pass (Optimizer.clipGradNorm's factor).
    const norm = Math.sqrt(ss) / this.scale;
    scaleGrads(optimizer.params, (max && norm > max ? max / (norm + 1e-6) : 1) / this.scale);
    optimizer.step();
    if (++this.#good >= this.growthInterval) {
      this.#good = 0;
      this.scale *= this.growthFactor;
    }
    return true;
  }
}
