/**
 * Pruning-mask decay (Kao et al. 2022, arXiv 2209.07617; AQT `sparsity.py`, and PGF's MDGF, arXiv 2402.04744):
 * the forward uses W ⊙ (m + (1 − m)·α), so pruned weights still act, scaled by α, which decays to 0.
 *   'step-linear'  α_k = max(1 − k·w, 0), k = ⌊t / interval⌋ the number of mask updates so far (AQT)
 *   'linear'       α_t = max(1 − c·t, 0)                                                   (PGF)
 *   'exp'          α_t = exp(−c·t)                                                         (PGF)
 * t counts steps from the start of the sparse phase. The gradient to the dense W is autodiff through the
 * product, g ⊙ (m + (1 − m)α) (AQT), or the full g (gradient 'ste', PGF). The last `binaryFraction` of the sparse
 * phase uses the binary mask (α = 0), like PGF's fine-tune frames, so the run ends N:M sparse.
 *
 * Defaults scale to the run: the official constants (w with 1000-step intervals, c = 2e-4) assume 10⁵-step runs
 * and would leave α near 1 after a few MNIST epochs. By default α reaches 0 (step-linear, linear) or 10⁻³ (exp)
 * when the binary part begins: w = 1/8 with interval = decay steps / 8 (AQT caps k at 8), c = 1/decay steps
 * (linear) or ln(1000)/decay steps (exp). Pass `coefficient` (and `interval`) to use fixed values instead.
 */
import { Recipe, finiteNonNegative, fraction, oneOf, positiveInt, type RecipeOptions, type SparseWeight } from './recipe.js';
import { fail } from '../errors.js';
import type { Tensor } from '../tensor.js';

export type AlphaSchedule = 'step-linear' | 'linear' | 'exp';
export const ALPHA_SCHEDULES: readonly AlphaSchedule[] = ['step-linear', 'linear', 'exp'];
export type DecayGradient = 'autodiff' | 'ste';

export interface MaskDecayOptions extends RecipeOptions {
  /** α schedule (default 'step-linear', the Kao et al. / AQT recipe). */
  alpha?: AlphaSchedule;
  /** Gradient to the dense W (default 'autodiff' for step-linear, as AQT; 'ste' for linear and exp, as PGF). */
  gradient?: DecayGradient;
  /** w (step-linear) or c (linear, exp). Default: scaled to the run (see above). */
  coefficient?: number;
  /** Final fraction of the sparse phase with α = 0 (default 0.2). */
  binaryFraction?: number;
}

export class MaskDecay extends Recipe {
  readonly name = 'mask-decay' as const;
  readonly schedule: AlphaSchedule;
  readonly gradient: DecayGradient;
  readonly binaryFraction: number;
  readonly #coefficient: number | undefined;
  readonly #interval: number | undefined;

  constructor(opts: MaskDecayOptions = {}) {
    super(opts);
    this.schedule = oneOf(opts.alpha ?? 'step-linear', ALPHA_SCHEDULES, 'alpha');
    this.gradient = oneOf(opts.gradient ?? (this.schedule === 'step-linear' ? 'autodiff' : 'ste'), ['autodiff', 'ste'] as const, 'gradient');
    this.binaryFraction = fraction(opts.binaryFraction ?? 0.2, 'binaryFraction');
    this.#coefficient = opts.coefficient === undefined ? undefined : finiteNonNegative(opts.coefficient, 'coefficient');
    this.#interval = opts.interval === undefined ? undefined : positiveInt(opts.interval, 'interval');
  }

  /** Steps of the sparse phase over which α decays (the rest is binary). */
  get decaySteps(): number {
    if (!this.totalSteps) fail('E_VALUE', 'mask-decay', this.totalSteps, 'a planned run: call recipe.plan(totalSteps) first');
    return Math.max(1, Math.floor(this.sparseSteps * (1 - this.binaryFraction)));
  }
  /** Mask refresh interval in steps: given, or decay steps / 8 for step-linear, else 1 (every step). */
  get refreshInterval(): number {
    if (this.#interval !== undefined) return this.#interval;
    return this.schedule === 'step-linear' ? Math.max(1, Math.floor(this.decaySteps / 8)) : 1;
  }
  /** w or c. */
  get coefficient(): number {
    if (this.#coefficient !== undefined) return this.#coefficient;
    if (this.schedule === 'step-linear') return 1 / 8;
    return this.schedule === 'linear' ? 1 / this.decaySteps : Math.log(1000) / this.decaySteps;
  }

  /** α at sparse step t (0 from the binary part on). */
  alphaAtStep(t: number): number {
    if (t >= this.decaySteps) return 0;
    const c = this.coefficient;
    switch (this.schedule) {
      case 'step-linear': return Math.max(1 - Math.floor(t / this.refreshInterval) * c, 0);
      case 'linear': return Math.max(1 - c * t, 0);
      case 'exp': return Math.exp(-c * t);
    }
  }

  protected override alphaAt(): number { return this.alphaAtStep(this.sparseStep); }
  protected override refreshDue(s: SparseWeight): boolean {
    return s.mask === null || this.sparseStep - s.lastRefresh >= this.refreshInterval;
  }
  override weightGrad(s: SparseWeight, g: Tensor): void {
    if (this.gradient === 'autodiff') this.scaleByMask(s, g);
  }
  override describe(): Record<string, unknown> {
    const planned = this.totalSteps > 0;
    return {
      ...super.describe(), alpha: this.schedule, gradient: this.gradient, binaryFraction: this.binaryFraction,
      coefficient: planned ? this.coefficient : this.#coefficient, interval: planned ? this.refreshInterval : this.#interval,
    };
  }
}
