/**
 * The recipe interface (docs/design.md §6). A recipe sees each sparse weight W at three moments:
 *   forwardWeight  the effective weight used in the forward pass:  W, or W ⊙ (m + (1 − m)·α) with m an N:M mask
 *   weightGrad     the gradient handed to the dense W, from the gradient g of the effective weight (in place)
 *   afterUpdate    after the optimizer step (ASP re-applies its mask there)
 * and the schedule: the trainer calls plan(totalSteps) once and setStep(step) before every step.
 *
 * Every recipe here is the same machine with different knobs, which keeps them comparable:
 *   patternAt(s)  the N:M pattern of the forward at the current step, or null for a dense forward;
 *   alphaAt()     the factor on pruned weights (0 = a binary mask);
 *   refresh       when the mask is recomputed from |W| (every `interval` steps, or once);
 *   gradient      what the dense W receives: g (STE), g + λ(1 − m)⊙W (SR-STE), g ⊙ (m + (1 − m)α) (autodiff).
 * Common options: a dense warm-up fraction and a dense fine-tune fraction of the steps, and the mask refresh
 * interval. One recipe instance serves every sparse layer of a network; per-layer state lives in SparseWeight.
 */
import { fail } from '../errors.js';
import { mask as nmMask, sad as nmSad, transposableMask } from '../mask.js';
import { SUPPORTED_M, parsePattern, patternString, type Pattern } from '../pattern.js';
import type { Tensor } from '../tensor.js';
import type { DType } from '../dtype.js';
import { maskedAdd, maskedScale, nmMaskScale, nmTrainPass, nmTransposedForm, type TrainPassBuffers, type TrainPassResult } from '../nn/elementwise.js';
import type { SparseTensor } from '../compress.js';
import { timed } from '../nn/profile.js';
import { autocastPrecision, currentLossScale } from '../nn/amp.js';
import type { Parameter } from '../nn/module.js';
import { applyGradTerms } from '../optim/optimizer.js';

export type RecipeName = 'dense' | 'ste' | 'srste' | 'asp' | 'mask-decay' | 'structure-decay';
export const RECIPE_NAMES: readonly RecipeName[] = ['dense', 'ste', 'srste', 'asp', 'mask-decay', 'structure-decay'];

export interface RecipeOptions {
  /** Fraction of the steps trained dense before the sparse phase (default 0). */
  denseWarmup?: number;
  /** Fraction of the steps trained dense after the sparse phase (default 0: the network ends N:M sparse). */
  denseFinetune?: number;
  /** Mask refresh interval in steps (default 1: every step, as SR-STE's official code). */
  interval?: number;
  /**
   * Whether a forward that is exactly N:M on the CPU runs the N:M kernels (default true): the forward product
   * from the compressed weight and the input gradient skipping the pruned weights. false multiplies the masked
   * dense weight through the dense GEMM (same results up to the order of the sums).
   */
  sparseKernels?: boolean;
  /**
   * 'rowwise' (default): N:M along each row. 'transposable': at 2:4, in every 4×4 tile 2 kept per row and per
   * column (nm.transposableMask), so that W̃ᵀ is 2:4 too and the backward product to the input can run 2:4
   * (cuSPARSELt); the weight needs rows and columns divisible by 4. Other patterns stay row-wise.
   */
  mask?: MaskKind;
}

export type MaskKind = 'rowwise' | 'transposable';
export const MASK_KINDS: readonly MaskKind[] = ['rowwise', 'transposable'];

/** 'dense' is the dense recipe's only phase. */
export type Phase = 'dense-warmup' | 'sparse' | 'dense-finetune' | 'dense';

/** The N:M state of one sparse weight, viewed as [rows, cols] with groups of M along cols. */
export class SparseWeight {
  /** The mask the forward pass uses (uint8, 1 = kept), or null before the first sparse step. */
  mask: Tensor | null = null;
  /** The pattern `mask` was computed with (it differs from `pattern` during structure decay). */
  maskPattern: Pattern | null = null;
  /** Step (within the sparse phase) of the last mask refresh. */
  lastRefresh = -Infinity;
  /** Mask refreshes so far. */
  updates = 0;
  /** α and forward FLOPs density of the last forward (1 for a dense forward or while α > 0). */
  alpha = 1;
  density = 1;
  /** Whether the last forward used a mask. */
  active = false;
  /**
   * The compressed form of the last forward's weight when it was exactly N:M on the kernels (the N:M products of
   * the layer read it: in training forward and backward on the CPU, the forward on 'cuda' where it has a
   * cuSPARSELt form; in evaluation the forward on the CPU where the layer asked for no dense weight), else null.
   */
  compressed: SparseTensor | null = null;
  /**
   * Under a 16-bit autocast (lib/nn/amp.ts) the training forward's weight rounded to that dtype when `compressed`
   * is set (the dense operand of the layer's 16-bit products; `compressed` then has that dtype too), else null.
   */
  halfWeight: Tensor | null = null;
  /**
   * With `halfWeight` and a transposable 2:4 mask: W̃ᵀ compressed in that dtype (nmTransposedForm), from which the
   * layer's input gradient runs as an N:M product, once that asked for it (transposedForm()); else null. Made anew
   * each step.
   */
  compressedT: SparseTensor | null = null;
  #transposable = false;
  #sad: number | (() => number) = 0;
  #pass: TrainPassBuffers | null = null;
  #evalPass: TrainPassBuffers | null = null;
  #spare: Tensor | null = null;
  #effective: Tensor | null = null;
  #evalMask: Tensor | null = null;

  constructor(
    readonly param: Parameter,
    /** The target pattern. */
    readonly pattern: Pattern,
    readonly recipe: Recipe,
    /** Name for logs and checkpoints. */
    public name = 'weight',
    /**
     * The length of the runs of the last dimension that a group must not cross: the whole last dimension for a
     * Linear, the input channels for a Conv2d (whose last dimension is kh·kw·in). Patterns with an M that does
     * not divide it cannot run on this weight.
     */
    readonly groupExtent = param.shape[param.shape.length - 1],
    /** Columns of the [rows, cols] view the layer multiplies with (a Conv2d: kh·kw·in). */
    readonly cols = param.shape[param.shape.length - 1],
  ) {
    if (cols % groupExtent !== 0 || param.size % cols !== 0) fail('E_SHAPE', 'cols', cols, `a multiple of groupExtent ${groupExtent} that divides the weight`);
    if (groupExtent % pattern.m !== 0)
      fail('E_SHAPE', `${name}`, param.value, `a last dimension divisible by m = ${pattern.m} for ${patternString(pattern)} sparsity`);
    if (recipe.mask === 'transposable' && (this.rows % 4 !== 0 || cols % 4 !== 0))
      fail('E_SHAPE', `${name}`, param.value, `a weight whose [rows, cols] = [${this.rows}, ${cols}] are multiples of 4 for a transposable mask (keep this layer dense or row-wise)`);
  }

  /** Whether a pattern can run on this weight (M supported and dividing the group extent). */
  supports(p: Pattern): boolean { return SUPPORTED_M.includes(p.m) && this.groupExtent % p.m === 0; }

  /** Mask entries that changed at the last refresh (the step's SAD; 0 where not counted). On 'cuda' read from the GPU when asked. */
  get stepSad(): number {
    if (typeof this.#sad === 'function') this.#sad = this.#sad();
    return this.#sad;
  }

  get rows(): number { return this.param.size / this.cols; }
  /** The dense weight as [rows, cols] (shares storage). */
  get weight(): Tensor { return this.param.value.reshape([this.rows, this.cols]); }
  /** The gradient as [rows, cols] (shares storage). */
  get grad(): Tensor { return this.param.grad.reshape([this.rows, this.cols]); }

  /** The buffer that holds the effective weight. */
  effectiveBuffer(): Tensor {
    const w = this.param.value;
    if (!this.#effective || this.#effective.device !== w.device) this.#effective = w.reshape([this.rows, this.cols]).clone();
    return this.#effective;
  }
  /** A scratch mask for evaluation, so that evaluating never changes the training state. */
  evalMaskBuffer(): Tensor {
    if (!this.#evalMask || this.#evalMask.device !== this.param.value.device) this.#evalMask = this.targetMask();
    return this.#evalMask;
  }

  /**
   * Selects the transposable 2:4 mask of the current W into `mask` (nm.transposableMask), counting in stepSad the
   * entries that changed.
   */
  selectTransposable(): void {
    const next = transposableMask(this.weight, { out: this.#spare ?? undefined });
    this.#sad = this.mask ? nmSad(this.mask, next).changed : 0;
    this.#spare = this.mask;
    this.mask = next;
  }

  /**
   * The buffers of the one-pass refresh (nmTrainPass, in the autocast's dtype), kept across steps; W ⊙ m, or null
   * unless `dense`.
   */
  trainPass(p: Pattern, select: boolean, dense: boolean): Tensor | null {
    const r = this.#runPass(this.#pass, this.mask, p, select, dense, autocastPrecision());
    this.#pass = r.buffers;
    this.mask = r.mask;
    this.halfWeight = r.buffers.out16 ?? null;
    // The previous step's W̃ᵀ: its products are enqueued already, so freeing it is stream-ordered on 'cuda'.
    this.compressedT?.dispose();
    this.compressedT = null;
    this.#transposable = this.recipe.transposable(p);
    if (select) this.#sad = () => r.sad;
    return dense ? r.buffers.out : null;
  }

  /**
   * compressedT, compressed on the step's first call (by the input gradient that reads it: a layer with no input
   * gradient, or one whose product would not read it, pays nothing); null without a 16-bit transposable pass.
   */
  transposedForm(): SparseTensor | null {
    if (!this.compressedT && this.halfWeight && this.#transposable) this.compressedT = nmTransposedForm(this.halfWeight);
    return this.compressedT;
  }

  /**
   * The evaluation forward's compressed weight (into `compressed`, float32, from buffers of its own, so that
   * evaluating never changes the training state): W ⊙ the held mask, or, when `fresh`, a mask selected from |W| in
   * the evaluation scratch (transposable where the recipe's masks are).
   */
  evalPass(p: Pattern, fresh: boolean, transposable: boolean): void {
    const mask = !fresh ? this.mask! : transposable ? transposableMask(this.weight, { out: this.evalMaskBuffer() }) : this.evalMaskBuffer();
    this.#evalPass = this.#runPass(this.#evalPass, mask, p, fresh && !transposable, false, 'float32').buffers;
  }

  #runPass(old: TrainPassBuffers | null, mask: Tensor | null, p: Pattern, select: boolean, dense: boolean, dtype: DType): TrainPassResult {
    const r = nmTrainPass(this.weight, p, { mask, buffers: old, select, dense, dtype });
    // Buffers not carried over (the pattern or the precision changed, e.g. a structure-decay frame; on 'cuda' the
    // compressed weight every step, while `out` is reused in a new buffers object): free them now, not at GC (on
    // 'cuda' they are device memory V8 does not weigh). The last step's backward, their only reader, is done.
    if (old && old !== r.buffers) {
      const kept: unknown[] = Object.values(r.buffers);
      for (const t of [old.out, old.sparse, old.out16, old.values32]) if (t && !kept.includes(t)) t.dispose();
    }
    this.compressed = r.buffers.sparse;
    return r;
  }

  /**
   * The effective weight for this step's forward pass, as [rows, cols]; with `dense` false (the layer's products
   * read only `compressed`: lib/nn/linalg.ts nmCovers), null where the forward is exactly N:M on the kernels.
   */
  forwardWeight(training: boolean): Tensor;
  forwardWeight(training: boolean, dense: boolean): Tensor | null;
  forwardWeight(training: boolean, dense = true): Tensor | null {
    // A term still pending from the last backward reads the mask this pass may rewrite in place: add it to the
    // gradient first, as it was before the optimizer took it on the fly.
    if (training && this.param.term) applyGradTerms([this.param]);
    return timed('mask', () => this.recipe.forwardWeight(this, training, dense));
  }
  /** Turns the gradient of the effective weight (already in param.grad) into the gradient for the dense W. */
  backward(): void { timed('recipe', () => this.recipe.weightGrad(this, this.grad)); }
  afterUpdate(): void { timed('recipe', () => this.recipe.afterUpdate(this)); }

  /** The target-pattern mask of the current dense W (what SAD compares), in `out` when given. */
  targetMask(out?: Tensor): Tensor {
    return this.recipe.transposable(this.pattern) ? transposableMask(this.weight, { out }) : nmMask(this.weight, this.pattern, { out });
  }
  /** The weight the network deploys: W ⊙ m with the target pattern (N:M sparse by construction). */
  deployWeight(): Tensor { return this.recipe.deployWeight(this); }
}

export abstract class Recipe {
  abstract readonly name: RecipeName;
  readonly denseWarmup: number;
  readonly denseFinetune: number;
  readonly interval: number;
  readonly sparseKernels: boolean;
  readonly mask: MaskKind;
  /** Steps in the whole run (0 until plan() is called: then the run is treated as all sparse, unbounded). */
  totalSteps = 0;
  /** The current step (0-based), set by the trainer before each step. */
  step = 0;

  constructor(opts: RecipeOptions = {}) {
    this.denseWarmup = fraction(opts.denseWarmup ?? 0, 'denseWarmup');
    this.denseFinetune = fraction(opts.denseFinetune ?? 0, 'denseFinetune');
    if (this.denseWarmup + this.denseFinetune > 1)
      fail('E_VALUE', 'denseWarmup + denseFinetune', this.denseWarmup + this.denseFinetune, 'at most 1');
    this.interval = positiveInt(opts.interval ?? 1, 'interval');
    if (opts.sparseKernels !== undefined && typeof opts.sparseKernels !== 'boolean') fail('E_TYPE', 'sparseKernels', opts.sparseKernels, 'a boolean');
    this.sparseKernels = opts.sparseKernels ?? true;
    this.mask = oneOf(opts.mask ?? 'rowwise', MASK_KINDS, 'mask');
  }

  /** Whether masks at pattern p are transposable ones. */
  transposable(p: Pattern): boolean { return this.mask === 'transposable' && p.n === 2 && p.m === 4; }

  /** Fixes the length of the run. Call once before training. */
  plan(totalSteps: number): void {
    if (!Number.isSafeInteger(totalSteps) || totalSteps < 1) fail('E_VALUE', 'totalSteps', totalSteps, 'an integer >= 1');
    this.totalSteps = totalSteps;
    this.step = 0;
  }
  setStep(step: number): void {
    if (!Number.isSafeInteger(step) || step < 0) fail('E_VALUE', 'step', step, 'an integer >= 0');
    this.step = step;
  }

  get sparseStart(): number { return this.totalSteps ? Math.round(this.denseWarmup * this.totalSteps) : 0; }
  get sparseEnd(): number { return this.totalSteps ? this.totalSteps - Math.round(this.denseFinetune * this.totalSteps) : Infinity; }
  /** Steps in the sparse phase (Infinity before plan()). */
  get sparseSteps(): number { return this.sparseEnd - this.sparseStart; }
  /**
   * The step counted from the start of the sparse phase (negative during the warm-up). Not held inside the run:
   * after the last update (step = totalSteps) a mask refresh is due again, so evaluating the finished network
   * uses masks of its final weights.
   */
  get sparseStep(): number { return this.step - this.sparseStart; }
  /** The step, held inside the run (the trainer evaluates at step = totalSteps, after the last update). */
  protected get clampedStep(): number { return this.totalSteps ? Math.min(this.step, this.totalSteps - 1) : this.step; }

  phase(): Phase {
    const s = this.clampedStep;
    return s < this.sparseStart ? 'dense-warmup' : s >= this.sparseEnd ? 'dense-finetune' : 'sparse';
  }
  /** Whether the forward pass at the current step uses N:M masks. */
  isSparse(): boolean { return this.phase() === 'sparse'; }

  // ---- the knobs ----
  /** The forward pattern of `s` at the current step, or null for a dense forward. */
  protected patternAt(s: SparseWeight): Pattern | null { return this.isSparse() ? s.pattern : null; }
  /** The factor on pruned weights at the current step (0: a binary mask). */
  protected alphaAt(): number { return 0; }
  /** Whether the mask must be recomputed from |W| before this step's forward. */
  protected refreshDue(s: SparseWeight, p: Pattern): boolean {
    return s.mask === null || !samePattern(s.maskPattern, p) || this.sparseStep - s.lastRefresh >= this.interval;
  }
  /** Called once a refreshed mask is in s.mask; returns true when it changed W (ASP prunes W there). */
  protected onRefresh(_s: SparseWeight): boolean { return false; }

  /**
   * The effective weight of `s` for the forward pass at the current step, as [rows, cols]. With `dense` false, a
   * forward that is exactly N:M on the kernels writes only the compressed form (s.compressed) and returns null.
   */
  forwardWeight(s: SparseWeight, training: boolean): Tensor;
  forwardWeight(s: SparseWeight, training: boolean, dense: boolean): Tensor | null;
  forwardWeight(s: SparseWeight, training: boolean, dense = true): Tensor | null {
    const p = this.patternAt(s);
    const w = s.weight;
    s.compressed = null;
    if (training) { s.halfWeight = null; s.compressedT?.dispose(); s.compressedT = null; }
    if (p === null) {
      if (training) { s.active = false; s.alpha = 1; s.density = 1; }
      return w;
    }
    const alpha = this.alphaAt();
    if (training) { s.active = true; s.alpha = alpha; s.density = alpha === 0 ? p.n / p.m : 1; }
    const transposable = this.transposable(p);
    if (!training && !dense && alpha === 0 && this.sparseKernels) {
      s.evalPass(p, this.refreshDue(s, p), transposable);
      return null;
    }
    if (training && alpha === 0 && this.sparseKernels) {
      // Exactly N:M: mask, W ⊙ m, its compressed form and the SAD in one pass (nmTrainPass, on the CPU or 'cuda').
      if (!this.refreshDue(s, p)) return s.trainPass(p, false, dense);
      const out = transposable ? (s.selectTransposable(), s.trainPass(p, false, dense)) : s.trainPass(p, true, dense);
      s.maskPattern = p;
      s.lastRefresh = this.sparseStep;
      s.updates++;
      return this.onRefresh(s) ? s.trainPass(p, false, dense) : out;
    }
    if (!this.refreshDue(s, p)) return maskedScale(w, s.mask!, alpha, { out: s.effectiveBuffer() });
    // A refresh: mask and effective weight in one pass (into the layer's buffers).
    const buf = training ? (s.mask && s.mask.device === w.device ? s.mask : undefined) : s.evalMaskBuffer();
    let r: { mask: Tensor; out: Tensor };
    if (transposable) {
      const mask = transposableMask(w, { out: buf });
      r = { mask, out: maskedScale(w, mask, alpha, { out: s.effectiveBuffer() }) };
    } else r = nmMaskScale(w, p, alpha, { mask: buf, out: s.effectiveBuffer() });
    if (training) {
      s.mask = r.mask;
      s.maskPattern = p;
      s.lastRefresh = this.sparseStep;
      s.updates++;
      if (this.onRefresh(s)) return maskedScale(w, s.mask, alpha, { out: s.effectiveBuffer() });
    }
    return r.out;
  }

  /**
   * The N:M weight the network deploys, as a new tensor: the evaluation forward weight when it is already binary
   * with the target pattern (the usual case at the end of a run), else W ⊙ (the target mask of |W|).
   */
  deployWeight(s: SparseWeight): Tensor {
    const p = this.patternAt(s);
    if (p && samePattern(p, s.pattern) && this.alphaAt() === 0) return this.forwardWeight(s, false).clone();
    return maskedScale(s.weight, s.targetMask(), 0);
  }

  /** Turns g, the gradient of the effective weight, into the gradient for the dense W (in place). Default: STE. */
  weightGrad(_s: SparseWeight, _g: Tensor): void {}
  /** After the optimizer step. */
  afterUpdate(_s: SparseWeight): void {}

  /** The step and length the learning-rate schedule sees (ASP restarts it for the sparse retraining). */
  lrSegment(step: number): { step: number; total: number } { return { step, total: this.totalSteps }; }

  /** The options that define this run, for logs and reports. */
  describe(): Record<string, unknown> {
    return { recipe: this.name, denseWarmup: this.denseWarmup, denseFinetune: this.denseFinetune, interval: this.interval, mask: this.mask };
  }

  /**
   * SR-STE term, shared by STE-family recipes: g += λ·(1 − m)⊙W while a mask is active (times the loss scale). On
   * the CPU it is left pending on the parameter (Parameter.term) and the optimizer's step reads it on the fly: no
   * pass of its own over W, m and g. On 'cuda' it is added here.
   */
  protected addRefinedTerm(s: SparseWeight, g: Tensor, lambda: number): void {
    s.param.term = null;
    if (lambda === 0 || !s.active || !s.mask) return;
    if (g.device === 'cpu') s.param.term = { mask: s.mask, lambda: lambda * currentLossScale() };
    else maskedAdd(g, s.weight, s.mask, lambda * currentLossScale());
  }
  /** autodiff through W ⊙ (m + (1 − m)α): g ⊙= (m + (1 − m)α) while a mask is active. */
  protected scaleByMask(s: SparseWeight, g: Tensor): void {
    if (s.active && s.mask) maskedScale(g, s.mask, s.alpha, { out: g });
  }
}

export const samePattern = (a: Pattern | null, b: Pattern | null): boolean => !!a && !!b && a.n === b.n && a.m === b.m;

export function fraction(v: unknown, arg: string): number {
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail('E_VALUE', arg, v, 'a fraction in [0, 1]');
  return v;
}
export function positiveInt(v: unknown, arg: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail('E_VALUE', arg, v, 'an integer >= 1');
  return v;
}
export function finiteNonNegative(v: unknown, arg: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail('E_VALUE', arg, v, 'a finite number >= 0');
  return v;
}
export function oneOf<T extends string>(v: unknown, allowed: readonly T[], arg: string): T {
  if (!allowed.includes(v as T)) fail('E_VALUE', arg, v, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`);
  return v as T;
}
export { parsePattern };
