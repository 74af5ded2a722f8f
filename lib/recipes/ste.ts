/**
 * STE: the forward uses W ⊙ m with m the top-N |W| of each group of M, recomputed every `interval` steps (every
 * step by default); the gradient of the effective weight reaches the dense W unmasked (straight-through).
 * SR-STE (srste.ts) is this with λ_W > 0.
 */
import { Recipe, finiteNonNegative, type RecipeOptions, type SparseWeight } from './recipe.js';
import type { Tensor } from '../tensor.js';

export interface SteOptions extends RecipeOptions {
  /** λ_W of the sparse-refined term g + λ_W·(1 − m)⊙W (0 for plain STE). */
  lambda?: number;
}

export class STE extends Recipe {
  readonly name: 'ste' | 'srste' = 'ste';
  readonly lambda: number;
  constructor(opts: SteOptions = {}) {
    super(opts);
    this.lambda = finiteNonNegative(opts.lambda ?? 0, 'lambda');
  }
  override weightGrad(s: SparseWeight, g: Tensor): void {
    this.addRefinedTerm(s, g, this.lambda);
  }
  override describe(): Record<string, unknown> {
    return { ...super.describe(), lambda: this.lambda };
  }
}
