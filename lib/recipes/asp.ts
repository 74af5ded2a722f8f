/**
 * ASP (NVIDIA apex Automatic SParsity): train dense, compute the N:M mask once from |W| (one shot), prune
 * W ← W ⊙ m, then retrain with the mask fixed: the gradient is g ⊙ m and W ← W ⊙ m after every optimizer step,
 * so pruned weights stay exactly 0 (the apex optimizer patch). By default the first half of the steps is the
 * dense phase, and the learning-rate schedule restarts for the sparse retraining ("repeat the training session
 * with the same hyper-parameters"), each phase getting its own full schedule.
 */
import { Recipe, fraction, type RecipeOptions, type SparseWeight } from './recipe.js';
import { maskedScale } from '../nn/elementwise.js';
import type { Tensor } from '../tensor.js';
import type { Pattern } from '../pattern.js';

export interface AspOptions extends Omit<RecipeOptions, 'interval'> {
  /** Fraction of the steps trained dense before the one-shot prune (default 0.5). Alias of denseWarmup. */
  denseFraction?: number;
  /** Restart the learning-rate schedule for the sparse phase (default true). */
  restartSchedule?: boolean;
}

export class ASP extends Recipe {
  readonly name = 'asp' as const;
  readonly restartSchedule: boolean;
  constructor(opts: AspOptions = {}) {
    super({ denseWarmup: fraction(opts.denseFraction ?? opts.denseWarmup ?? 0.5, 'denseFraction'), denseFinetune: opts.denseFinetune, sparseKernels: opts.sparseKernels, mask: opts.mask });
    this.restartSchedule = opts.restartSchedule ?? true;
  }
  // The mask is computed once, at the first sparse step, and kept.
  protected override refreshDue(s: SparseWeight, p: Pattern): boolean { return s.mask === null || s.maskPattern === null || s.maskPattern.n !== p.n; }
  protected override onRefresh(s: SparseWeight): boolean {
    maskedScale(s.weight, s.mask!, 0, { out: s.weight });
    return true;
  }
  override weightGrad(s: SparseWeight, g: Tensor): void { this.scaleByMask(s, g); }
  override afterUpdate(s: SparseWeight): void {
    if (s.active && s.mask) maskedScale(s.weight, s.mask, 0, { out: s.weight });
  }
  override lrSegment(step: number): { step: number; total: number } {
    const cut = this.sparseStart;
    if (!this.restartSchedule || cut === 0 || !this.totalSteps) return super.lrSegment(step);
    return step < cut ? { step, total: cut } : { step: step - cut, total: this.totalSteps - cut };
  }
  override describe(): Record<string, unknown> {
    return { ...super.describe(), restartSchedule: this.restartSchedule };
  }
}
